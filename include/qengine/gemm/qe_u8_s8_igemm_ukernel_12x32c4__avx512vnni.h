/* u8 × s8 → int32 tile, 12 rows × 32 columns, K in groups of 4, AVX-512 VNNI, A read in place:
 * the K loop of qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni with each row's 4-byte broadcasts
 * taken from the caller's rows through pointers (QE_VNNI_ACCUMULATE_INDIRECT) instead of from a
 * packed A panel. For a GEMM the pointers are the rows of A (ks = 1); for a convolution they are
 * the receptive-field segments of each output pixel, one per tap (an indirection buffer,
 * XNNPACK's igemm), so neither needs the pass that packs A: at N = 64 (two W panels) that pass
 * cost a fifth of the GEMM. W is packed as for the plain kernel; its K-groups past ks·kc
 * (the kpad zeros) are never read.
 *
 *   igemm(mr ≤ 12, ks taps, kc K-groups per tap, a [ks][12] row pointers (4·kc readable bytes
 *         each; rows ≥ mr unread), W panel, q: int32 out with the column terms of the INT32
 *         epilogue (qe_gemm_params.h), so the GEMM's int32 result skips the tile round trip)
 */
#ifndef QE_U8_S8_IGEMM_UKERNEL_12X32C4__AVX512VNNI_H
#define QE_U8_S8_IGEMM_UKERNEL_12X32C4__AVX512VNNI_H

#include "qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni.h"

#if QE_HAVE_X86_SIMD
#define QE_VNNI_IBODY(MRV)                                                                     \
    do {                                                                                       \
        QE_VNNI_ACCUMULATE_INDIRECT(MRV)                                                       \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++)                                 \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)                                \
                _mm512_mask_storeu_epi32(out + i * ldc + 16 * h, km[h],                        \
                                         _mm512_add_epi32(acc[i][h], cterm[h]));               \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_igemm_ukernel_12x32c4__avx512vnni(size_t mr, size_t ks, size_t kc,
                                                       const uint8_t *const *a, const void *w,
                                                       const qe_gemm_int32_tile *q) {
    const int8_t *pw = (const int8_t *)w;
    int32_t *out = q->out;
    const size_t ldc = q->ldc;
    const uint32_t bits = q->nr >= 32 ? 0xffffffffu : (1u << q->nr) - 1u;
    const __mmask16 km[2] = {(__mmask16)(bits & 0xffff), (__mmask16)(bits >> 16)};
    __m512i cterm[2];
    for (int h = 0; h < 2; h++) {
        cterm[h] = q->col_bias ? _mm512_maskz_loadu_epi32(km[h], q->col_bias + 16 * h)
                               : _mm512_setzero_si512();
        if (q->colsum)
            cterm[h] = _mm512_sub_epi32(cterm[h], _mm512_mullo_epi32(
                _mm512_set1_epi32(q->a_zp), _mm512_maskz_loadu_epi32(km[h], q->colsum + 16 * h)));
    }
    switch (mr) {
    case 1: QE_VNNI_IBODY(1); break;
    case 2: QE_VNNI_IBODY(2); break;
    case 3: QE_VNNI_IBODY(3); break;
    case 4: QE_VNNI_IBODY(4); break;
    case 5: QE_VNNI_IBODY(5); break;
    case 6: QE_VNNI_IBODY(6); break;
    case 7: QE_VNNI_IBODY(7); break;
    case 8: QE_VNNI_IBODY(8); break;
    case 9: QE_VNNI_IBODY(9); break;
    case 10: QE_VNNI_IBODY(10); break;
    case 11: QE_VNNI_IBODY(11); break;
    default: QE_VNNI_IBODY(12); break;
    }
}
#undef QE_VNNI_IBODY
#endif

#endif
