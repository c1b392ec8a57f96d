/* u8 × s8 → u8/s8, 12 rows × 32 columns, K in groups of 4, AVX-512 VNNI, A read in place
 * through row pointers (qe_u8_s8_igemm_ukernel_12x32c4__avx512vnni.h) and requantized in
 * registers exactly as qe_u8_s8_gemm_minmax_ukernel_12x32c4__avx512vnni (same operations, same
 * order: bit-identical to the packed kernel and to the scalar epilogue). The static int8 conv and
 * the 1×1 conv as GEMM: neither the im2col nor the A packing pass, nor the int32 tile.
 */
#ifndef QE_U8_S8_IGEMM_MINMAX_UKERNEL_12X32C4__AVX512VNNI_H
#define QE_U8_S8_IGEMM_MINMAX_UKERNEL_12X32C4__AVX512VNNI_H

#include "qe_u8_s8_gemm_minmax_ukernel_12x32c4__avx512vnni.h"

#if QE_HAVE_X86_SIMD
#define QE_VNNI_IREQUANT_BODY(MRV)                                                             \
    do {                                                                                       \
        QE_VNNI_ACCUMULATE_INDIRECT(MRV)                                                       \
        QE_VNNI_REQUANT_STORE(MRV)                                                             \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_igemm_minmax_ukernel_12x32c4__avx512vnni(size_t mr, size_t ks, size_t kc,
                                                              const uint8_t *const *a,
                                                              const void *w,
                                                              const qe_gemm_requant_tile *q) {
    const int8_t *pw = (const int8_t *)w;
    QE_VNNI_REQUANT_SETUP(q);
    switch (mr) {
    case 1: QE_VNNI_IREQUANT_BODY(1); break;
    case 2: QE_VNNI_IREQUANT_BODY(2); break;
    case 3: QE_VNNI_IREQUANT_BODY(3); break;
    case 4: QE_VNNI_IREQUANT_BODY(4); break;
    case 5: QE_VNNI_IREQUANT_BODY(5); break;
    case 6: QE_VNNI_IREQUANT_BODY(6); break;
    case 7: QE_VNNI_IREQUANT_BODY(7); break;
    case 8: QE_VNNI_IREQUANT_BODY(8); break;
    case 9: QE_VNNI_IREQUANT_BODY(9); break;
    case 10: QE_VNNI_IREQUANT_BODY(10); break;
    case 11: QE_VNNI_IREQUANT_BODY(11); break;
    default: QE_VNNI_IREQUANT_BODY(12); break;
    }
}
#undef QE_VNNI_IREQUANT_BODY
#endif

#endif
