/* FP32 depthwise convolution, AVX2 + FMA: 32 pixels per step (4 chains), then 8, the tail
 * through vmaskmov (qe_f32_dwconv_params.h). */
#ifndef QE_F32_DWCONV_MINMAX_UKERNEL__AVX2_H
#define QE_F32_DWCONV_MINMAX_UKERNEL__AVX2_H

#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"
#include "qe_f32_conv_minmax_ukernel_6x16__avx2.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_dwconv_minmax_ukernel__avx2(
        size_t n, size_t ntaps, const float *x, const ptrdiff_t *off, const float *w, float bias,
        float *y, const qe_f32_minmax *p) {
    const __m256 lo = _mm256_set1_ps(p->lo), hi = _mm256_set1_ps(p->hi);
    const __m256 vb = _mm256_set1_ps(bias);
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
        for (size_t t = 0; t < ntaps; t++) {
            const float *b = x + off[t] + j;
            const __m256 wt = _mm256_broadcast_ss(w + t);
            a0 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(b), a0);
            a1 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(b + 8), a1);
            a2 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(b + 16), a2);
            a3 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(b + 24), a3);
        }
        _mm256_storeu_ps(y + j, _mm256_min_ps(hi, _mm256_max_ps(lo, a0)));
        _mm256_storeu_ps(y + j + 8, _mm256_min_ps(hi, _mm256_max_ps(lo, a1)));
        _mm256_storeu_ps(y + j + 16, _mm256_min_ps(hi, _mm256_max_ps(lo, a2)));
        _mm256_storeu_ps(y + j + 24, _mm256_min_ps(hi, _mm256_max_ps(lo, a3)));
    }
    for (; j < n; j += 8) {
        const __m256i m = qe_f32_lanes_below__avx2(n - j, 0);
        __m256 a = vb;
        for (size_t t = 0; t < ntaps; t++)
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + t), _mm256_maskload_ps(x + off[t] + j, m),
                                a);
        _mm256_maskstore_ps(y + j, m, _mm256_min_ps(hi, _mm256_max_ps(lo, a)));
    }
}

#endif
#endif
