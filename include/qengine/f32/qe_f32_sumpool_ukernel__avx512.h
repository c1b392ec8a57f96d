/* FP32 window sums for average pooling, AVX-512, 32 pixels per step (qe_f32_dwconv_params.h). */
#ifndef QE_F32_SUMPOOL_UKERNEL__AVX512_H
#define QE_F32_SUMPOOL_UKERNEL__AVX512_H

#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_sumpool_ukernel__avx512(size_t n, size_t ntaps,
                                                                const float *x,
                                                                const ptrdiff_t *off, float *y) {
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512 a0 = _mm512_loadu_ps(x + off[0] + j), a1 = _mm512_loadu_ps(x + off[0] + j + 16);
        for (size_t t = 1; t < ntaps; t++) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + off[t] + j));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + off[t] + j + 16));
        }
        _mm512_storeu_ps(y + j, a0);
        _mm512_storeu_ps(y + j + 16, a1);
    }
    for (; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 a = _mm512_maskz_loadu_ps(m, x + off[0] + j);
        for (size_t t = 1; t < ntaps; t++)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, x + off[t] + j));
        _mm512_mask_storeu_ps(y + j, m, a);
    }
}

#endif
#endif
