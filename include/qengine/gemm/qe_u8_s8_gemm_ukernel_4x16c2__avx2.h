/* u8 × s8 → int32 tile, 4 rows × 16 columns, K in pairs, AVX2, EXACT.
 *
 * vpmaddubsw would add two u8·s8 products in saturating int16 (2·255·128 > 32767) and silently
 * lose exactness. Here both operands are int16 already (packing zero-extends A and sign-extends
 * W), and vpmaddwd adds two int16·int16 products into int32: |255·128·2| < 2^31, exact.
 * The price is twice the bytes per MAC and 16 instead of 32 MACs per instruction, so this path
 * runs at about half the speed of the 8-bit one.
 * Per K-pair: two 32-byte W loads, per row one 32-bit broadcast (a[k], a[k+1]) and two
 * vpmaddwd + vpaddd. With mr ≤ 2 two accumulator sets alternate over K-pairs.
 */
#ifndef QE_U8_S8_GEMM_UKERNEL_4X16C2__AVX2_H
#define QE_U8_S8_GEMM_UKERNEL_4X16C2__AVX2_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_params.h"

#if QE_HAVE_X86_SIMD
#define QE_AVX2_MR 4

/* The K loop: acc[0..MRV)[2] = the tile's rows (KS accumulator sets summed), pa/pw advanced.
 * Shared with the fused requantizing twin (qe_u8_s8_gemm_minmax_ukernel_4x16c2__avx2.h). */
#define QE_AVX2_ACCUMULATE(MRV, KS)                                                            \
        __m256i acc[KS * MRV][2];                                                              \
        _Pragma("GCC unroll 4") for (int s = 0; s < KS; s++)                                   \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRV; i++)                                  \
            acc[s * MRV + i][0] = acc[s * MRV + i][1] = _mm256_setzero_si256();                \
        for (size_t g = 0; g < kg; g += KS) { /* kg: a multiple of 4 (kpad) */                 \
            _Pragma("GCC unroll 4") for (int s = 0; s < KS; s++) {                             \
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)pw);                    \
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)(pw + 16));             \
                _Pragma("GCC unroll 4") for (int i = 0; i < MRV; i++) {                        \
                    int32_t a2;                                                                \
                    memcpy(&a2, pa + 2 * i, 4);                                                \
                    const __m256i va = _mm256_set1_epi32(a2);                                  \
                    acc[s * MRV + i][0] =                                                      \
                        _mm256_add_epi32(acc[s * MRV + i][0], _mm256_madd_epi16(va, b0));      \
                    acc[s * MRV + i][1] =                                                      \
                        _mm256_add_epi32(acc[s * MRV + i][1], _mm256_madd_epi16(va, b1));      \
                }                                                                              \
                pa += 2 * QE_AVX2_MR;                                                          \
                pw += 32;                                                                      \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRV; i++)                                  \
            _Pragma("GCC unroll 4") for (int s = 1; s < KS; s++) {                             \
                acc[i][0] = _mm256_add_epi32(acc[i][0], acc[s * MRV + i][0]);                  \
                acc[i][1] = _mm256_add_epi32(acc[i][1], acc[s * MRV + i][1]);                  \
            }

#define QE_AVX2_BODY(MRV, KS)                                                                  \
    do {                                                                                       \
        QE_AVX2_ACCUMULATE(MRV, KS)                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRV; i++) {                                \
            __m256i *ci = (__m256i *)(c + 16 * i);                                             \
            if (acc_in) {                                                                      \
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_loadu_si256(ci));               \
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_loadu_si256(ci + 1));           \
            }                                                                                  \
            _mm256_storeu_si256(ci, acc[i][0]);                                                \
            _mm256_storeu_si256(ci + 1, acc[i][1]);                                            \
        }                                                                                      \
    } while (0)

QE_TARGET_AVX2
static void qe_u8_s8_gemm_ukernel_4x16c2__avx2(size_t mr, size_t kg, const void *a,
                                               const void *w, int32_t *c, int acc_in) {
    const int16_t *pa = (const int16_t *)a;
    const int16_t *pw = (const int16_t *)w;
    switch (mr) {
    case 1: QE_AVX2_BODY(1, 4); break;
    case 2: QE_AVX2_BODY(2, 2); break;
    case 3: QE_AVX2_BODY(3, 1); break;
    default: QE_AVX2_BODY(4, 1); break;
    }
}
#undef QE_AVX2_BODY
#endif

#endif
