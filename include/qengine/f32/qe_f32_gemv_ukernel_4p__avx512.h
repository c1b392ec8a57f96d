/* FP32 GEMV over up to 4 weight panels of 32 columns, AVX-512: 8 independent accumulator chains
 * (4 panels × 2 zmm) hide the FMA latency; the weights stream once (bandwidth-bound).
 * Interface and numerics: qe_f32_gemv_ukernel_4p__scalar.h. */
#ifndef QE_F32_GEMV_UKERNEL_4P__AVX512_H
#define QE_F32_GEMV_UKERNEL_4P__AVX512_H

#include "../qe_target.h"
#include "qe_f32_gemv_ukernel_4p__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_gemv_ukernel_4p__avx512(size_t np, size_t k,
                                                                const float *x, const float *w,
                                                                size_t pstride,
                                                                const float *bias, float *y) {
    enum { NR = 32 };
    if (np == 4) {
        __m512 acc[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            acc[v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
        const float *w0 = w, *w1 = w + pstride, *w2 = w + 2 * pstride, *w3 = w + 3 * pstride;
        for (size_t i = 0; i < k; i++) {
            const __m512 a = _mm512_set1_ps(x[i]);
            const size_t o = i * NR;
            acc[0] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w0 + o), acc[0]);
            acc[1] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w0 + o + 16), acc[1]);
            acc[2] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w1 + o), acc[2]);
            acc[3] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w1 + o + 16), acc[3]);
            acc[4] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w2 + o), acc[4]);
            acc[5] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w2 + o + 16), acc[5]);
            acc[6] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w3 + o), acc[6]);
            acc[7] = _mm512_fmadd_ps(a, _mm512_loadu_ps(w3 + o + 16), acc[7]);
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) _mm512_storeu_ps(y + 16 * v, acc[v]);
        return;
    }
    for (size_t p = 0; p < np; p++) {
        const float *wp = w + p * pstride;
        __m512 a0 = bias ? _mm512_loadu_ps(bias + p * NR) : _mm512_setzero_ps();
        __m512 a1 = bias ? _mm512_loadu_ps(bias + p * NR + 16) : _mm512_setzero_ps();
        for (size_t i = 0; i < k; i++) {
            const __m512 a = _mm512_set1_ps(x[i]);
            a0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(wp + i * NR), a0);
            a1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(wp + i * NR + 16), a1);
        }
        _mm512_storeu_ps(y + p * NR, a0);
        _mm512_storeu_ps(y + p * NR + 16, a1);
    }
}

#endif
#endif
