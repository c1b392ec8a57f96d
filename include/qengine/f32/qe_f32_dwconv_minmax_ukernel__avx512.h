/* FP32 depthwise convolution, AVX-512: 64 pixels per step (4 independent FMA chains share each
 * tap's weight broadcast), then 16 at a time, the tail masked (qe_f32_dwconv_params.h). */
#ifndef QE_F32_DWCONV_MINMAX_UKERNEL__AVX512_H
#define QE_F32_DWCONV_MINMAX_UKERNEL__AVX512_H

#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_dwconv_minmax_ukernel__avx512(
        size_t n, size_t ntaps, const float *x, const ptrdiff_t *off, const float *w, float bias,
        float *y, const qe_f32_minmax *p) {
    const __m512 lo = _mm512_set1_ps(p->lo), hi = _mm512_set1_ps(p->hi);
    const __m512 vb = _mm512_set1_ps(bias);
    size_t j = 0;
    for (; j + 64 <= n; j += 64) {
        __m512 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
        for (size_t t = 0; t < ntaps; t++) {
            const float *b = x + off[t] + j;
            const __m512 wt = _mm512_set1_ps(w[t]);
            a0 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(b), a0);
            a1 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(b + 16), a1);
            a2 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(b + 32), a2);
            a3 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(b + 48), a3);
        }
        _mm512_storeu_ps(y + j, _mm512_min_ps(hi, _mm512_max_ps(lo, a0)));
        _mm512_storeu_ps(y + j + 16, _mm512_min_ps(hi, _mm512_max_ps(lo, a1)));
        _mm512_storeu_ps(y + j + 32, _mm512_min_ps(hi, _mm512_max_ps(lo, a2)));
        _mm512_storeu_ps(y + j + 48, _mm512_min_ps(hi, _mm512_max_ps(lo, a3)));
    }
    for (; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 a = vb;
        for (size_t t = 0; t < ntaps; t++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(w[t]), _mm512_maskz_loadu_ps(m, x + off[t] + j), a);
        _mm512_mask_storeu_ps(y + j, m, _mm512_min_ps(hi, _mm512_max_ps(lo, a)));
    }
}

#endif
#endif
