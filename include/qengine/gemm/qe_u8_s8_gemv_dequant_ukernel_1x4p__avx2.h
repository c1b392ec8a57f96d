/* One activation row × up to 4 packed 16-column W panels → f32, AVX2, dequantized in registers:
 * the K loop of qe_u8_s8_gemv_ukernel_1x4p__avx2, then the F32 epilogue on each accumulator as
 * the 4×16 dequantizing kernel does it (qe_dequant8__avx2), so it equals gemv +
 * qe_gemm_epilogue__avx2 bit for bit. The batch-1 LSTM/GRU step: every R panel goes straight
 * from the dot products into the gate pre-activations. q->nr ≤ np·16 columns are written; row 0
 * reads a_zp[0] / a_scale[0].
 */
#ifndef QE_U8_S8_GEMV_DEQUANT_UKERNEL_1X4P__AVX2_H
#define QE_U8_S8_GEMV_DEQUANT_UKERNEL_1X4P__AVX2_H

#include "qe_u8_s8_gemv_ukernel_1x4p__avx2.h"
#include "qe_u8_s8_gemm_dequant_ukernel_4x16c2__avx2.h"

#if QE_HAVE_X86_SIMD
#define QE_GEMV_AVX2_DEQUANT_BODY(NP)                                                        \
    do {                                                                                     \
        QE_GEMV_AVX2_ACCUMULATE(NP)                                                          \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)                                 \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                            \
                const size_t j = 16 * (size_t)p + 8 * (size_t)h;                             \
                const int left = q->nr > j ? (int)(q->nr - j < 8 ? q->nr - j : 8) : 0;       \
                const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);         \
                qe_dequant8__avx2(acc[p][h], za,                                             \
                                  _mm256_maskload_epi32((const int *)q->colsum + j, k), sa,  \
                                  _mm256_maskload_ps(q->w_scale + j, k),                     \
                                  q->bias ? q->bias + j : NULL, q->accumulate, q->out + j, k); \
            }                                                                                \
    } while (0)

QE_TARGET_AVX2
static void qe_u8_s8_gemv_dequant_ukernel_1x4p__avx2(size_t np, size_t kg, const void *a,
                                                     size_t a_stride, const void *w,
                                                     size_t wpanel,
                                                     const qe_gemm_dequant_tile *q) {
    const uint8_t *pa = (const uint8_t *)a;
    const char *pw = (const char *)w;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i za = _mm256_set1_epi32(q->a_zp ? q->a_zp[0] : 0);
    const __m256 sa = _mm256_set1_ps(q->a_scale[0]);
    switch (np) {
    case 1: QE_GEMV_AVX2_DEQUANT_BODY(1); break;
    case 2: QE_GEMV_AVX2_DEQUANT_BODY(2); break;
    case 3: QE_GEMV_AVX2_DEQUANT_BODY(3); break;
    default: QE_GEMV_AVX2_DEQUANT_BODY(4); break;
    }
}
#undef QE_GEMV_AVX2_DEQUANT_BODY
#endif

#endif
