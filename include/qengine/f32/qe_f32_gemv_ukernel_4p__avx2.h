/* FP32 GEMV over up to 4 weight panels of 16 columns, AVX2 + FMA: 8 ymm accumulator chains.
 * Interface and numerics: qe_f32_gemv_ukernel_4p__scalar.h. */
#ifndef QE_F32_GEMV_UKERNEL_4P__AVX2_H
#define QE_F32_GEMV_UKERNEL_4P__AVX2_H

#include "../qe_target.h"
#include "qe_f32_gemv_ukernel_4p__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_gemv_ukernel_4p__avx2(size_t np, size_t k, const float *x,
                                                        const float *w, size_t pstride,
                                                        const float *bias, float *y) {
    enum { NR = 16 };
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
        acc[v] = bias && (size_t)(v / 2) < np ? _mm256_loadu_ps(bias + 8 * v)
                                              : _mm256_setzero_ps();
    if (np == 4) {
        const float *w0 = w, *w1 = w + pstride, *w2 = w + 2 * pstride, *w3 = w + 3 * pstride;
        for (size_t i = 0; i < k; i++) {
            const __m256 a = _mm256_broadcast_ss(x + i);
            const size_t o = i * NR;
            acc[0] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w0 + o), acc[0]);
            acc[1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w0 + o + 8), acc[1]);
            acc[2] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w1 + o), acc[2]);
            acc[3] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w1 + o + 8), acc[3]);
            acc[4] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w2 + o), acc[4]);
            acc[5] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w2 + o + 8), acc[5]);
            acc[6] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w3 + o), acc[6]);
            acc[7] = _mm256_fmadd_ps(a, _mm256_loadu_ps(w3 + o + 8), acc[7]);
        }
    } else {
        for (size_t p = 0; p < np; p++) {
            const float *wp = w + p * pstride;
            for (size_t i = 0; i < k; i++) {
                const __m256 a = _mm256_broadcast_ss(x + i);
                acc[2 * p] = _mm256_fmadd_ps(a, _mm256_loadu_ps(wp + i * NR), acc[2 * p]);
                acc[2 * p + 1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(wp + i * NR + 8),
                                                 acc[2 * p + 1]);
            }
        }
    }
    for (size_t v = 0; v < 2 * np; v++) _mm256_storeu_ps(y + 8 * v, acc[v]);
}

#endif
#endif
