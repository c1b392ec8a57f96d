/* FP32 convolution microkernel, AVX2 + FMA: 6 output channels × 16 pixels, 12 ymm accumulators
 * (+ 2 pixel vectors + 1 broadcast = 15 of the 16 registers). Interface and numerics:
 * qe_f32_conv_params.h; vmaskmov does not fault on masked-off lanes. */
#ifndef QE_F32_CONV_MINMAX_UKERNEL_6X16__AVX2_H
#define QE_F32_CONV_MINMAX_UKERNEL_6X16__AVX2_H

#include "../qe_target.h"
#include "qe_f32_conv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static inline __m256i qe_f32_lanes_below__avx2(size_t n, size_t base) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int lim = n <= base ? 0 : n - base >= 8 ? 8 : (int)(n - base);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lim), idx);
}

QE_TARGET_AVX2 static void qe_f32_conv_minmax_ukernel_6x16__avx2(
        size_t mr, size_t nc, size_t k, const float *w, const float *x, const ptrdiff_t *off,
        const float *bias, float *y, size_t ldy, const qe_f32_minmax *p) {
    enum { MR = 6 };
    const __m256i m0 = qe_f32_lanes_below__avx2(nc, 0), m1 = qe_f32_lanes_below__avx2(nc, 8);
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm256_set1_ps(bias && (size_t)r < mr ? bias[r] : 0.0f);
        acc[r][1] = acc[r][0];
    }
    for (size_t i = 0; i < k; i++, w += MR) {
        const float *b = x + off[i];
        const __m256 b0 = _mm256_maskload_ps(b, m0);
        const __m256 b1 = _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 a = _mm256_broadcast_ss(w + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    const __m256 lo = _mm256_set1_ps(p->lo), hi = _mm256_set1_ps(p->hi);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if ((size_t)r >= mr) break;
        _mm256_maskstore_ps(y + r * ldy, m0, _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][0])));
        _mm256_maskstore_ps(y + r * ldy + 8, m1, _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][1])));
    }
}

#endif
#endif
