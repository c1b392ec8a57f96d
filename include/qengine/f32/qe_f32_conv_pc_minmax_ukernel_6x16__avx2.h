/* FP32 convolution, transposed tile, AVX2 + FMA: 6 pixels × 16 output channels, 12 ymm
 * accumulators; through a stack tile to the NCHW output. Interface: qe_f32_conv_params.h. */
#ifndef QE_F32_CONV_PC_MINMAX_UKERNEL_6X16__AVX2_H
#define QE_F32_CONV_PC_MINMAX_UKERNEL_6X16__AVX2_H

#include "../qe_target.h"
#include "qe_f32_conv_params.h"
#include "qe_f32_conv_minmax_ukernel_6x16__avx2.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_conv_pc_minmax_ukernel_6x16__avx2(
        size_t mr, size_t nc, size_t k, const float *const *x, const ptrdiff_t *off,
        const float *w, const float *bias, float *y, size_t ldy, int rowmajor,
        const qe_f32_minmax *p) {
    enum { MR = 6, NR = 16 };
    const __m256i m0 = qe_f32_lanes_below__avx2(nc, 0), m1 = qe_f32_lanes_below__avx2(nc, 8);
    const float *xr[MR];
    __m256 acc[MR][2];
    const __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
    const __m256 b1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        xr[r] = x[r];
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    for (size_t i = 0; i < k; i++, w += NR) {
        const ptrdiff_t o = off[i];
        const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 a = _mm256_broadcast_ss(xr[r] + o);
            acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
        }
    }
    const __m256 lo = _mm256_set1_ps(p->lo), hi = _mm256_set1_ps(p->hi);
    if (rowmajor) {
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            if ((size_t)r >= mr) break;
            _mm256_maskstore_ps(y + r * ldy, m0, _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][0])));
            _mm256_maskstore_ps(y + r * ldy + 8, m1,
                                _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][1])));
        }
        return;
    }
    float tile[MR][NR] __attribute__((aligned(32)));
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_store_ps(tile[r], _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][0])));
        _mm256_store_ps(tile[r] + 8, _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][1])));
    }
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < mr; r++) y[c * ldy + r] = tile[r][c];
}

#endif
#endif
