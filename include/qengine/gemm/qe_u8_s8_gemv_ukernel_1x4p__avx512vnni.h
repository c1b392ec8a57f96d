/* One activation row × up to 4 packed 32-column W panels (128 outputs), AVX-512 VNNI.
 *
 * The batch-1 recurrent step is a GEMV that streams R once per step. The GEMM microkernel
 * with mr = 1 spends a broadcast per two vpdpbusd and covers one panel at a time; here one
 * broadcast of 4 activation bytes feeds 2·np vpdpbusd over np panels read as np independent
 * streams, and the 2·np accumulators are independent chains. Integer sums are exact, so this
 * equals the GEMM microkernel bit for bit (tested through the LSTM/GRU outputs).
 * a: K-group g's 4 bytes at a + g·a_stride (the GEMM's packed-A row). w: first panel, panels
 * wpanel bytes apart, layout [kg][32][4] (qe_gemm_pack.h). c: int32 [np·32].
 */
#ifndef QE_U8_S8_GEMV_UKERNEL_1X4P__AVX512VNNI_H
#define QE_U8_S8_GEMV_UKERNEL_1X4P__AVX512VNNI_H

#include <string.h>
#include "../qe_target.h"

#if QE_HAVE_X86_SIMD
#ifndef QE_GEMV_PF
#define QE_GEMV_PF 256
#endif
/* QE_GEMV_VNNI_ACCUMULATE leaves the np·32 dot products in acc[0..NP)[0..1]; the kernel below
 * stores them, the dequantizing twin (qe_u8_s8_gemv_dequant_ukernel_1x4p__avx512vnni.h) applies
 * the F32 epilogue to them in registers. */
#define QE_GEMV_VNNI_ACCUMULATE(NP)                                                          \
        __m512i acc[NP][2];                                                                  \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)                                 \
            acc[p][0] = acc[p][1] = _mm512_setzero_si512();                                  \
        for (size_t g = 0; g < kg; g++) {                                                    \
            int32_t a4;                                                                      \
            memcpy(&a4, pa + g * a_stride, 4);                                               \
            const __m512i va = _mm512_set1_epi32(a4);                                        \
            _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) {                           \
                const int8_t *wp = pw + p * wpanel + g * 128;                                \
                _mm_prefetch((const char *)wp + QE_GEMV_PF, _MM_HINT_T0);                    \
                _mm_prefetch((const char *)wp + QE_GEMV_PF + 64, _MM_HINT_T0);               \
                acc[p][0] = _mm512_dpbusd_epi32(acc[p][0], va, _mm512_loadu_si512(wp));      \
                acc[p][1] = _mm512_dpbusd_epi32(acc[p][1], va, _mm512_loadu_si512(wp + 64)); \
            }                                                                                \
        }

#define QE_GEMV_VNNI_BODY(NP)                                                                \
    do {                                                                                     \
        QE_GEMV_VNNI_ACCUMULATE(NP)                                                          \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) {                               \
            _mm512_storeu_si512(c + 32 * p, acc[p][0]);                                      \
            _mm512_storeu_si512(c + 32 * p + 16, acc[p][1]);                                 \
        }                                                                                    \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_gemv_ukernel_1x4p__avx512vnni(size_t np, size_t kg, const void *a,
                                                   size_t a_stride, const void *w,
                                                   size_t wpanel, int32_t *c) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    switch (np) {
    case 1: QE_GEMV_VNNI_BODY(1); break;
    case 2: QE_GEMV_VNNI_BODY(2); break;
    case 3: QE_GEMV_VNNI_BODY(3); break;
    default: QE_GEMV_VNNI_BODY(4); break;
    }
}
#undef QE_GEMV_VNNI_BODY
#endif

#endif
