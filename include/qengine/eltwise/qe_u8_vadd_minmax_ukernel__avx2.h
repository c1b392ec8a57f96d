/* QAdd, AVX2: 8 elements per step, tail by the scalar kernel; operations in its order. */
#ifndef QE_U8_VADD_MINMAX_UKERNEL__AVX2_H
#define QE_U8_VADD_MINMAX_UKERNEL__AVX2_H

#include <string.h>
#include "../qe_target.h"
#include "qe_eltwise_params.h"
#include "qe_u8_vadd_minmax_ukernel__scalar.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2
static void qe_u8_vadd_minmax_ukernel__avx2(size_t n, const uint8_t *a, const uint8_t *b,
                                            uint8_t *y, const qe_u8_binary_params *p) {
    const __m256i za = _mm256_set1_epi32(p->a_zp), zb = _mm256_set1_epi32(p->b_zp);
    const __m256 ma = _mm256_set1_ps(p->a_mult), mb = _mm256_set1_ps(p->b_mult);
    const __m256 vlo = _mm256_set1_ps((float)(p->lo - p->zp));
    const __m256 vhi = _mm256_set1_ps((float)(p->hi - p->zp));
    const __m256i vzp = _mm256_set1_epi32(p->zp);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        int64_t a8, b8;
        memcpy(&a8, a + i, 8);
        memcpy(&b8, b + i, 8);
        const __m256i xa = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(a8)), za);
        const __m256i xb = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(b8)), zb);
        const __m256 va = _mm256_mul_ps(_mm256_cvtepi32_ps(xa), ma);
        const __m256 vb = _mm256_mul_ps(_mm256_cvtepi32_ps(xb), mb);
        __m256 v = _mm256_add_ps(va, vb);
        v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
        const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
        const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(q16, q16));
    }
    qe_u8_vadd_minmax_ukernel__scalar(n - i, a + i, b + i, y + i, p);
}
#endif

#endif
