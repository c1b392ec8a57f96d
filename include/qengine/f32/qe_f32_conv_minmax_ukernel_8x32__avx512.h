/* FP32 convolution microkernel, AVX-512: 8 output channels × 32 pixels, 16 zmm accumulators.
 * Per reduction index: two (masked) pixel loads, eight weight broadcasts, 16 FMAs; on Zen 4 this
 * runs at the one-zmm-FMA-per-cycle peak from L1/L2 (interface: qe_f32_conv_params.h). */
#ifndef QE_F32_CONV_MINMAX_UKERNEL_8X32__AVX512_H
#define QE_F32_CONV_MINMAX_UKERNEL_8X32__AVX512_H

#include "../qe_target.h"
#include "qe_f32_conv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_conv_minmax_ukernel_8x32__avx512(
        size_t mr, size_t nc, size_t k, const float *w, const float *x, const ptrdiff_t *off,
        const float *bias, float *y, size_t ldy, const qe_f32_minmax *p) {
    enum { MR = 8 };
    const __mmask16 m0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm512_set1_ps(bias && (size_t)r < mr ? bias[r] : 0.0f);
        acc[r][1] = acc[r][0];
    }
    for (size_t i = 0; i < k; i++, w += MR) {
        const float *b = x + off[i];
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(w[r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    const __m512 lo = _mm512_set1_ps(p->lo), hi = _mm512_set1_ps(p->hi);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if ((size_t)r >= mr) break;
        _mm512_mask_storeu_ps(y + r * ldy, m0, _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][0])));
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1,
                              _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][1])));
    }
}

#endif
#endif
