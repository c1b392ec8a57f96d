/* FP32 window sums for average pooling, AVX2, 8 pixels per vector (qe_f32_dwconv_params.h). */
#ifndef QE_F32_SUMPOOL_UKERNEL__AVX2_H
#define QE_F32_SUMPOOL_UKERNEL__AVX2_H

#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"
#include "qe_f32_conv_minmax_ukernel_6x16__avx2.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_sumpool_ukernel__avx2(size_t n, size_t ntaps, const float *x,
                                                        const ptrdiff_t *off, float *y) {
    for (size_t j = 0; j < n; j += 8) {
        const __m256i m = qe_f32_lanes_below__avx2(n - j, 0);
        __m256 a = _mm256_maskload_ps(x + off[0] + j, m);
        for (size_t t = 1; t < ntaps; t++) a = _mm256_add_ps(a, _mm256_maskload_ps(x + off[t] + j, m));
        _mm256_maskstore_ps(y + j, m, a);
    }
}

#endif
#endif
