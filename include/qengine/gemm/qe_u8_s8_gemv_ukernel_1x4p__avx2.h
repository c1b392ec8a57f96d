/* One activation row × up to 4 packed 16-column W panels (64 outputs), AVX2, exact.
 *
 * Same reasoning as the VNNI twin (qe_u8_s8_gemv_ukernel_1x4p__avx512vnni.h) on the exact AVX2
 * packing: W pre-widened to int16 in K-pairs ([kg][16][2]), A zero-extended to int16, and
 * vpmaddwd + vpaddd, never the saturating vpmaddubsw.
 * a: K-pair g's two int16 at a + g·a_stride bytes. c: int32 [np·16].
 */
#ifndef QE_U8_S8_GEMV_UKERNEL_1X4P__AVX2_H
#define QE_U8_S8_GEMV_UKERNEL_1X4P__AVX2_H

#include <string.h>
#include "../qe_target.h"

#if QE_HAVE_X86_SIMD
#define QE_GEMV_AVX2_BODY(NP)                                                                \
    do {                                                                                     \
        __m256i acc[NP][2];                                                                  \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)                                 \
            acc[p][0] = acc[p][1] = _mm256_setzero_si256();                                  \
        for (size_t g = 0; g < kg; g++) {                                                    \
            int32_t a2;                                                                      \
            memcpy(&a2, pa + g * a_stride, 4);                                               \
            const __m256i va = _mm256_set1_epi32(a2);                                        \
            _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) {                           \
                const __m256i *wp = (const __m256i *)(pw + p * wpanel + g * 64);             \
                acc[p][0] = _mm256_add_epi32(acc[p][0],                                      \
                                             _mm256_madd_epi16(va, _mm256_loadu_si256(wp))); \
                acc[p][1] = _mm256_add_epi32(                                                \
                    acc[p][1], _mm256_madd_epi16(va, _mm256_loadu_si256(wp + 1)));           \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) {                               \
            _mm256_storeu_si256((__m256i *)(c + 16 * p), acc[p][0]);                         \
            _mm256_storeu_si256((__m256i *)(c + 16 * p + 8), acc[p][1]);                     \
        }                                                                                    \
    } while (0)

QE_TARGET_AVX2
static void qe_u8_s8_gemv_ukernel_1x4p__avx2(size_t np, size_t kg, const void *a,
                                             size_t a_stride, const void *w, size_t wpanel,
                                             int32_t *c) {
    const uint8_t *pa = (const uint8_t *)a;
    const char *pw = (const char *)w;
    switch (np) {
    case 1: QE_GEMV_AVX2_BODY(1); break;
    case 2: QE_GEMV_AVX2_BODY(2); break;
    case 3: QE_GEMV_AVX2_BODY(3); break;
    default: QE_GEMV_AVX2_BODY(4); break;
    }
}
#undef QE_GEMV_AVX2_BODY
#endif

#endif
