/* A packing for the AVX2 4-row, K-pair, int16 kernels (qe_u8_s8_gemm_*ukernel_4x16c2__avx2):
 * four u8 source rows, `len` values each, become the panel layout of qe_gemm_pack.h
 *   dst[(j·4 + i)·2 + q] = (int16) src[i][2j + q]        j < ceil(len/2), i < 4, q < 2
 * (a value past len is 0). The source rows are interleaved 2 bytes at a time while still u8
 * (16-bit then 32-bit unpacks: a 4 × 8 transpose of byte pairs) and only then zero-extended
 * (vpmovzxbw), so 16 values of 4 rows cost 4 loads, 8 unpacks, 4 widenings and 4 stores.
 * The element-by-element loop this replaces (an index division per value) took as long as the
 * GEMM itself on ResNet-18's 3×3 convolutions (4.3 ms of im2col next to 1.7 ms of kernel at
 * 56×56×64). Pure data movement: no arithmetic on the values, so exactness is not at stake.
 */
#ifndef QE_U8_PACK_A_4C2__AVX2_H
#define QE_U8_PACK_A_4C2__AVX2_H

#include <stdint.h>
#include <string.h>
#include "../qe_target.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2
static void qe_u8_pack_a_4c2__avx2(const uint8_t *const src[4], size_t len, int16_t *dst) {
    const uint8_t *s0 = src[0], *s1 = src[1], *s2 = src[2], *s3 = src[3];
    size_t k = 0;
    for (; k + 16 <= len; k += 16, dst += 64) {
        const __m128i a0 = _mm_loadu_si128((const __m128i *)(s0 + k));
        const __m128i a1 = _mm_loadu_si128((const __m128i *)(s1 + k));
        const __m128i a2 = _mm_loadu_si128((const __m128i *)(s2 + k));
        const __m128i a3 = _mm_loadu_si128((const __m128i *)(s3 + k));
        const __m128i t0 = _mm_unpacklo_epi16(a0, a1), t1 = _mm_unpackhi_epi16(a0, a1);
        const __m128i t2 = _mm_unpacklo_epi16(a2, a3), t3 = _mm_unpackhi_epi16(a2, a3);
        _mm256_storeu_si256((__m256i *)dst, _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(t0, t2)));
        _mm256_storeu_si256((__m256i *)(dst + 16), _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(t0, t2)));
        _mm256_storeu_si256((__m256i *)(dst + 32), _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(t1, t3)));
        _mm256_storeu_si256((__m256i *)(dst + 48), _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(t1, t3)));
    }
    if (k + 8 <= len) {
        const __m128i a0 = _mm_loadl_epi64((const __m128i *)(s0 + k));
        const __m128i a1 = _mm_loadl_epi64((const __m128i *)(s1 + k));
        const __m128i a2 = _mm_loadl_epi64((const __m128i *)(s2 + k));
        const __m128i a3 = _mm_loadl_epi64((const __m128i *)(s3 + k));
        const __m128i t0 = _mm_unpacklo_epi16(a0, a1), t2 = _mm_unpacklo_epi16(a2, a3);
        _mm256_storeu_si256((__m256i *)dst, _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(t0, t2)));
        _mm256_storeu_si256((__m256i *)(dst + 16), _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(t0, t2)));
        k += 8;
        dst += 32;
    }
    for (; k < len; k += 2, dst += 8) {
        for (int i = 0; i < 4; i++) {
            dst[2 * i] = src[i][k];
            dst[2 * i + 1] = k + 1 < len ? src[i][k + 1] : 0;
        }
    }
}
#endif

#endif
