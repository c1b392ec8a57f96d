/* FP32 max pooling, AVX-512, 16 pixels per vector, two vectors per step; NaN lanes tracked in
 * a mask (vmaxps alone would drop a NaN that meets a number). qe_f32_dwconv_params.h. */
#ifndef QE_F32_MAXPOOL_UKERNEL__AVX512_H
#define QE_F32_MAXPOOL_UKERNEL__AVX512_H

#include <math.h>
#include "../qe_target.h"
#include "qe_f32_dwconv_params.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static inline __m512 qe_f32_maxpool16__avx512(
        __mmask16 m, size_t ntaps, const float *x, const ptrdiff_t *off) {
    __m512 acc = _mm512_maskz_loadu_ps(m, x + off[0]);
    __mmask16 nan = _mm512_cmp_ps_mask(acc, acc, _CMP_UNORD_Q);
    for (size_t t = 1; t < ntaps; t++) {
        const __m512 v = _mm512_maskz_loadu_ps(m, x + off[t]);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        acc = _mm512_max_ps(v, acc);
    }
    return _mm512_mask_mov_ps(acc, nan, _mm512_set1_ps(NAN));
}

QE_TARGET_AVX512VNNI static void qe_f32_maxpool_ukernel__avx512(size_t n, size_t ntaps,
                                                                const float *x,
                                                                const ptrdiff_t *off, float *y) {
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        _mm512_storeu_ps(y + j, qe_f32_maxpool16__avx512(0xFFFF, ntaps, x + j, off));
        _mm512_storeu_ps(y + j + 16, qe_f32_maxpool16__avx512(0xFFFF, ntaps, x + j + 16, off));
    }
    for (; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(y + j, m, qe_f32_maxpool16__avx512(m, ntaps, x + j, off));
    }
}

#endif
#endif
