/* QAdd, AVX-512: 16 elements per step, masked tail; operations in the scalar kernel's order. */
#ifndef QE_U8_VADD_MINMAX_UKERNEL__AVX512_H
#define QE_U8_VADD_MINMAX_UKERNEL__AVX512_H

#include "../qe_target.h"
#include "qe_eltwise_params.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI
static void qe_u8_vadd_minmax_ukernel__avx512(size_t n, const uint8_t *a, const uint8_t *b,
                                              uint8_t *y, const qe_u8_binary_params *p) {
    const __m512i za = _mm512_set1_epi32(p->a_zp), zb = _mm512_set1_epi32(p->b_zp);
    const __m512 ma = _mm512_set1_ps(p->a_mult), mb = _mm512_set1_ps(p->b_mult);
    const __m512 vlo = _mm512_set1_ps((float)(p->lo - p->zp));
    const __m512 vhi = _mm512_set1_ps((float)(p->hi - p->zp));
    const __m512i vzp = _mm512_set1_epi32(p->zp);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512i xa = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, a + i)), za);
        const __m512i xb = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, b + i)), zb);
        const __m512 va = _mm512_mul_ps(_mm512_cvtepi32_ps(xa), ma);
        const __m512 vb = _mm512_mul_ps(_mm512_cvtepi32_ps(xb), mb);
        __m512 v = _mm512_add_ps(va, vb);
        v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
        const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
        _mm_mask_storeu_epi8(y + i, k, _mm512_cvtepi32_epi8(q));
    }
}
#endif

#endif
