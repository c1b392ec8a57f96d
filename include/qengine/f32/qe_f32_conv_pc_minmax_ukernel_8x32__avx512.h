/* FP32 convolution, transposed tile, AVX-512: 8 pixels × 32 output channels, 16 zmm
 * accumulators. Per reduction index: two weight-panel loads, eight pixel broadcasts (one X'
 * pointer per pixel), 16 FMAs. The accumulators go through a stack tile to the NCHW output
 * (channel-major): a few hundred cycles per tile, under 3 % of the tile's FMAs at k ≥ 576.
 * Interface and numerics: qe_f32_conv_params.h. */
#ifndef QE_F32_CONV_PC_MINMAX_UKERNEL_8X32__AVX512_H
#define QE_F32_CONV_PC_MINMAX_UKERNEL_8X32__AVX512_H

#include "../qe_target.h"
#include "qe_f32_conv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_conv_pc_minmax_ukernel_8x32__avx512(
        size_t mr, size_t nc, size_t k, const float *const *x, const ptrdiff_t *off,
        const float *w, const float *bias, float *y, size_t ldy, int rowmajor,
        const qe_f32_minmax *p) {
    enum { MR = 8, NR = 32 };
    const __mmask16 m0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    const float *xr[MR];
    __m512 acc[MR][2];
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        xr[r] = x[r];
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    for (size_t i = 0; i < k; i++, w += NR) {
        const ptrdiff_t o = off[i];
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(xr[r][o]);
            acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
        }
    }
    const __m512 lo = _mm512_set1_ps(p->lo), hi = _mm512_set1_ps(p->hi);
    if (rowmajor) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            if ((size_t)r >= mr) break;
            _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][0])));
            _mm512_mask_storeu_ps(y + r * ldy + 16, m1,
                                  _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][1])));
        }
        return;
    }
    float tile[MR][NR] __attribute__((aligned(64)));
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm512_store_ps(tile[r], _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][0])));
        _mm512_store_ps(tile[r] + 16, _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][1])));
    }
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < mr; r++) y[c * ldy + r] = tile[r][c];
}

#endif
#endif
