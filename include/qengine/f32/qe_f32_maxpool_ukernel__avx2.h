/* FP32 max pooling, AVX2, 8 pixels per vector; NaN lanes tracked (qe_f32_dwconv_params.h). */
#ifndef QE_F32_MAXPOOL_UKERNEL__AVX2_H
#define QE_F32_MAXPOOL_UKERNEL__AVX2_H

#include <math.h>
#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"
#include "qe_f32_conv_minmax_ukernel_6x16__avx2.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_maxpool_ukernel__avx2(size_t n, size_t ntaps, const float *x,
                                                        const ptrdiff_t *off, float *y) {
    for (size_t j = 0; j < n; j += 8) {
        const __m256i m = qe_f32_lanes_below__avx2(n - j, 0);
        __m256 acc = _mm256_maskload_ps(x + off[0] + j, m);
        __m256 nan = _mm256_cmp_ps(acc, acc, _CMP_UNORD_Q);
        for (size_t t = 1; t < ntaps; t++) {
            const __m256 v = _mm256_maskload_ps(x + off[t] + j, m);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            acc = _mm256_max_ps(v, acc);
        }
        _mm256_maskstore_ps(y + j, m, _mm256_blendv_ps(acc, _mm256_set1_ps(NAN), nan));
    }
}

#endif
#endif
