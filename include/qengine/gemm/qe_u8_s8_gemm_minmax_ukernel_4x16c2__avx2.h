/* u8 × s8 → u8/s8, 4 rows × 16 columns, K in pairs, AVX2, EXACT, requantized in registers:
 * the K loop of qe_u8_s8_gemm_ukernel_4x16c2__avx2 (int16 operands, vpmaddwd + vpaddd, no
 * saturating step), then per accumulator the operations of qe_gemm_epilogue__avx2 (hence of
 * qe_requantize, numerics.md epilogue (b)) in the same order — + col_bias (wrapping int32),
 * cvtepi32_ps, × multiplier, max lo − z_y, min hi − z_y, cvtps_epi32 (half to even under the
 * default MXCSR), + z_y — and the narrowing packs, two rows at a time. The int32 tile never goes
 * to memory and the separate epilogue pass over it disappears (at N = 64 it re-read 4 bytes per
 * output for 4·K MACs). Callers use it only when a_zp is NULL and z_w = 0 (qe_gemm_can_fuse).
 *
 * Narrowing: q = rhe(v) + z_y lies in [lo, hi] ⊂ the output type, so packs_epi32 and then
 * packus_epi16 / packs_epi16 never saturate; they only gather bytes. The tile does not say u8
 * or s8, and need not: [lo, hi] lies in the output type, so with lo ≥ 0 and hi > 127 (only u8
 * can) the unsigned pack is exact, and otherwise [lo, hi] ⊂ [−128, 127] and the signed one is;
 * either way the byte is y mod 256, the output's bits. For two rows
 * A, B (column halves 0, 1) the packs leave 4-byte groups ordered
 * A0lo A1lo B0lo B1lo | A0hi A1hi B0hi B1hi, which one vpermd puts back in row order.
 * Columns past nr (< 16): bias and multiplier are read from zero-padded copies and the row goes
 * through a 16-byte buffer, so nothing outside the arrays is read or written.
 */
#ifndef QE_U8_S8_GEMM_MINMAX_UKERNEL_4X16C2__AVX2_H
#define QE_U8_S8_GEMM_MINMAX_UKERNEL_4X16C2__AVX2_H

#include "qe_u8_s8_gemm_ukernel_4x16c2__avx2.h"

#if QE_HAVE_X86_SIMD
/* one accumulator pair (columns 0..7, 8..15) → int32 q = rhe(·) + z_y, through the setup's state */
#define QE_AVX2_REQUANT_HALF(x, h)                                                             \
    _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(             \
        _mm256_cvtepi32_ps(_mm256_add_epi32((x), bias[h])), mult[h]), vlo), vhi)), vzp)

QE_TARGET_AVX2
static inline __m256i qe_avx2_requant_2rows(__m256i a0, __m256i a1, __m256i b0, __m256i b1,
                                            int is_u8) {
    const __m256i x0 = _mm256_packs_epi32(a0, a1), x1 = _mm256_packs_epi32(b0, b1);
    const __m256i y = is_u8 ? _mm256_packus_epi16(x0, x1) : _mm256_packs_epi16(x0, x1);
    return _mm256_permutevar8x32_epi32(y, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

QE_TARGET_AVX2
static inline void qe_avx2_store_row16(char *out, __m128i v, size_t nr) {
    if (nr >= 16) {
        _mm_storeu_si128((__m128i *)out, v);
    } else {
        char b[16];
        _mm_storeu_si128((__m128i *)b, v);
        memcpy(out, b, nr);
    }
}

QE_TARGET_AVX2
static inline void qe_avx2_requant_cols(const qe_gemm_requant_tile *q, __m256i bias[2],
                                        __m256 mult[2]) {
    const size_t nr = q->nr;
    if (nr >= 16) {
        for (int h = 0; h < 2; h++) {
            bias[h] = q->col_bias ? _mm256_loadu_si256((const __m256i *)(q->col_bias + 8 * h))
                                  : _mm256_setzero_si256();
            mult[h] = _mm256_loadu_ps(q->multiplier + 8 * h);
        }
    } else {
        int32_t cb[16] = {0};
        float mu[16] = {0};
        if (q->col_bias) memcpy(cb, q->col_bias, nr * sizeof(int32_t));
        memcpy(mu, q->multiplier, nr * sizeof(float));
        for (int h = 0; h < 2; h++) {
            bias[h] = _mm256_loadu_si256((const __m256i *)(cb + 8 * h));
            mult[h] = _mm256_loadu_ps(mu + 8 * h);
        }
    }
}

#define QE_AVX2_REQUANT_STORE(MRV)                                                             \
        _Pragma("GCC unroll 2") for (int i = 0; i + 1 < MRV; i += 2) {                         \
            const __m256i y = qe_avx2_requant_2rows(                                           \
                QE_AVX2_REQUANT_HALF(acc[i][0], 0), QE_AVX2_REQUANT_HALF(acc[i][1], 1),        \
                QE_AVX2_REQUANT_HALF(acc[i + 1][0], 0), QE_AVX2_REQUANT_HALF(acc[i + 1][1], 1), \
                is_u8);                                                                        \
            qe_avx2_store_row16(out + i * ldc, _mm256_castsi256_si128(y), nr);                 \
            qe_avx2_store_row16(out + (i + 1) * ldc, _mm256_extracti128_si256(y, 1), nr);      \
        }                                                                                      \
        if (MRV % 2) {                                                                         \
            const __m256i a0 = QE_AVX2_REQUANT_HALF(acc[MRV - 1][0], 0);                       \
            const __m256i a1 = QE_AVX2_REQUANT_HALF(acc[MRV - 1][1], 1);                       \
            const __m256i y = qe_avx2_requant_2rows(a0, a1, a0, a1, is_u8);                    \
            qe_avx2_store_row16(out + (MRV - 1) * ldc, _mm256_castsi256_si128(y), nr);         \
        }

/* the column state is set up after the K loop: set up before it, its 7 vectors stayed live
 * across the loop next to 12 loop registers (4 rows, K = 576, L1-resident panels: best of 200
 * runs 122 GOPS vs 130 GOPS after the loop; the int32 kernel's 132-138) */
#define QE_AVX2_REQUANT_BODY(MRV, KS)                                                          \
    do {                                                                                       \
        QE_AVX2_ACCUMULATE(MRV, KS)                                                            \
        __m256i bias[2];                                                                       \
        __m256 mult[2];                                                                        \
        qe_avx2_requant_cols(q, bias, mult);                                                   \
        const __m256 vlo = _mm256_set1_ps((float)(q->lo - q->out_zp));                         \
        const __m256 vhi = _mm256_set1_ps((float)(q->hi - q->out_zp));                         \
        const __m256i vzp = _mm256_set1_epi32(q->out_zp);                                      \
        QE_AVX2_REQUANT_STORE(MRV)                                                             \
    } while (0)

QE_TARGET_AVX2
static void qe_u8_s8_gemm_minmax_ukernel_4x16c2__avx2(size_t mr, size_t kg, const void *a,
                                                      const void *w,
                                                      const qe_gemm_requant_tile *q) {
    const int16_t *pa = (const int16_t *)a;
    const int16_t *pw = (const int16_t *)w;
    char *out = (char *)q->out;
    const size_t ldc = q->ldc, nr = q->nr;
    const int is_u8 = q->lo >= 0 && q->hi > 127;
    switch (mr) {
    case 1: QE_AVX2_REQUANT_BODY(1, 4); break;
    case 2: QE_AVX2_REQUANT_BODY(2, 2); break;
    case 3: QE_AVX2_REQUANT_BODY(3, 1); break;
    default: QE_AVX2_REQUANT_BODY(4, 1); break;
    }
}
#undef QE_AVX2_REQUANT_BODY
#undef QE_AVX2_REQUANT_STORE
#undef QE_AVX2_REQUANT_HALF
#endif

#endif
