/* u8 × s8 → f32, 4 rows × 16 columns, K in pairs, AVX2, dequantized in registers: the K loop of
 * qe_u8_s8_gemm_ukernel_4x16c2__avx2 (exact, vpmaddwd), then per accumulator the F32 branch of
 * qe_gemm_epilogue__avx2 (hence of qe_gemm_epilogue__scalar) in the same order: − z_a·colsum
 * (wrapping int32), cvtepi32_ps, × (s_a·s_w), + bias, out + y. Bit-identical to ukernel +
 * epilogue; it saves the int32 tile's store and reload and the epilogue's second pass over out
 * (12.5 % of a batched LSTM step on the Zen 3 VM, BENCHMARKS.md "Serving"). A tile narrower than
 * 16 columns (the last panel) loads and stores its columns through masks.
 */
#ifndef QE_U8_S8_GEMM_DEQUANT_UKERNEL_4X16C2__AVX2_H
#define QE_U8_S8_GEMM_DEQUANT_UKERNEL_4X16C2__AVX2_H

#include "qe_u8_s8_gemm_ukernel_4x16c2__avx2.h"

#if QE_HAVE_X86_SIMD
/* 8 columns of one row: acc → out, the operations of qe_gemm_epilogue__avx2 (F32) */
QE_TARGET_AVX2 QE_INLINE void qe_dequant8__avx2(__m256i acc, __m256i za, __m256i cs, __m256 sa,
                                                __m256 ws, const float *bias, int accumulate,
                                                float *out, __m256i km) {
    acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(za, cs));
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(sa, ws));
    if (bias) y = _mm256_add_ps(y, _mm256_maskload_ps(bias, km));
    if (accumulate) y = _mm256_add_ps(_mm256_maskload_ps(out, km), y);
    _mm256_maskstore_ps(out, km, y);
}

#define QE_AVX2_DEQUANT_BODY(MRV, KS)                                                          \
    do {                                                                                       \
        QE_AVX2_ACCUMULATE(MRV, KS)                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRV; i++) {                                \
            const size_t ri = i * q->row_step;                                                 \
            const __m256i za = _mm256_set1_epi32(q->a_zp ? q->a_zp[ri] : 0);                   \
            const __m256 sa = _mm256_set1_ps(q->a_scale[ri]);                                  \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)                                \
                qe_dequant8__avx2(acc[i][h], za, cs[h], sa, ws[h],                             \
                                  q->bias ? q->bias + 8 * h : NULL, q->accumulate,             \
                                  q->out + i * q->ldc + 8 * h, km[h]);                         \
        }                                                                                      \
    } while (0)

QE_TARGET_AVX2
static void qe_u8_s8_gemm_dequant_ukernel_4x16c2__avx2(size_t mr, size_t kg, const void *a,
                                                       const void *w,
                                                       const qe_gemm_dequant_tile *q) {
    const int16_t *pa = (const int16_t *)a;
    const int16_t *pw = (const int16_t *)w;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int nr = q->nr >= 16 ? 16 : (int)q->nr;
    __m256i km[2], cs[2];
    __m256 ws[2];
    for (int h = 0; h < 2; h++) {   /* lanes of the columns that exist: −1 */
        km[h] = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8 * h), lane);
        cs[h] = _mm256_maskload_epi32((const int *)q->colsum + 8 * h, km[h]);
        ws[h] = _mm256_maskload_ps(q->w_scale + 8 * h, km[h]);
    }
    switch (mr) {
    case 1: QE_AVX2_DEQUANT_BODY(1, 4); break;
    case 2: QE_AVX2_DEQUANT_BODY(2, 2); break;
    case 3: QE_AVX2_DEQUANT_BODY(3, 1); break;
    default: QE_AVX2_DEQUANT_BODY(4, 1); break;
    }
}
#undef QE_AVX2_DEQUANT_BODY
#endif

#endif
