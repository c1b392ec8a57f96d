/* AVX2 twin of qe_f32_gates__scalar.h: same operations, same order, 8 lanes; tails go to the
 * scalar twin, which is bit-identical. */
#ifndef QE_F32_GATES_AVX2_H
#define QE_F32_GATES_AVX2_H

#include "../qe_target.h"
#include "qe_f32_gates__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static inline __m256 qe_vexp__avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(QE_EXP_LO)), _mm256_set1_ps(QE_EXP_HI));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(QE_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(QE_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(QE_LN2_LO)));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(QE_EXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QE_EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QE_EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QE_EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QE_EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QE_EXP_P5));
    p = _mm256_add_ps(_mm256_mul_ps(p, r2), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

QE_TARGET_AVX2 static inline __m256 qe_vsigmoid__avx2(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = qe_vexp__avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

QE_TARGET_AVX2 static inline __m256 qe_vtanh__avx2(__m256 x) {
    const __m256 lim = _mm256_set1_ps(QE_TANH_CLAMP);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = qe_vexp__avx2(_mm256_add_ps(x, x));
    return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}

QE_TARGET_AVX2 static void qe_f32_vsigmoid__avx2(size_t n, const float* x, float* y) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, qe_vsigmoid__avx2(_mm256_loadu_ps(x + j)));
    qe_f32_vsigmoid__scalar(n - j, x + j, y + j);
}

QE_TARGET_AVX2 static void qe_f32_vtanh__avx2(size_t n, const float* x, float* y) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, qe_vtanh__avx2(_mm256_loadu_ps(x + j)));
    qe_f32_vtanh__scalar(n - j, x + j, y + j);
}

QE_TARGET_AVX2 static void qe_f32_lstm_cell__avx2(
        size_t n, const float* gi, const float* go, const float* gf, const float* gc,
        float* c, float* h) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 i = qe_vsigmoid__avx2(_mm256_loadu_ps(gi + j));
        const __m256 o = qe_vsigmoid__avx2(_mm256_loadu_ps(go + j));
        const __m256 f = qe_vsigmoid__avx2(_mm256_loadu_ps(gf + j));
        const __m256 ct = qe_vtanh__avx2(_mm256_loadu_ps(gc + j));
        const __m256 cn = _mm256_add_ps(_mm256_mul_ps(f, _mm256_loadu_ps(c + j)),
                                        _mm256_mul_ps(i, ct));
        _mm256_storeu_ps(c + j, cn);
        _mm256_storeu_ps(h + j, _mm256_mul_ps(o, qe_vtanh__avx2(cn)));
    }
    qe_f32_lstm_cell__scalar(n - j, gi + j, go + j, gf + j, gc + j, c + j, h + j);
}

QE_TARGET_AVX2 static void qe_f32_gru_zr__avx2(size_t n, float* gz, float* gr) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        _mm256_storeu_ps(gz + j, qe_vsigmoid__avx2(_mm256_loadu_ps(gz + j)));
        _mm256_storeu_ps(gr + j, qe_vsigmoid__avx2(_mm256_loadu_ps(gr + j)));
    }
    qe_f32_gru_zr__scalar(n - j, gz + j, gr + j);
}

QE_TARGET_AVX2 static void qe_f32_gru_h__avx2(
        size_t n, const float* z, const float* r, const float* xh, const float* rh,
        const float* hprev, float* h) {
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(xh + j);
        if (r) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(r + j), _mm256_loadu_ps(rh + j)));
        const __m256 ht = qe_vtanh__avx2(a);
        const __m256 zz = _mm256_loadu_ps(z + j);
        _mm256_storeu_ps(h + j, _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, zz), ht),
                                              _mm256_mul_ps(zz, _mm256_loadu_ps(hprev + j))));
    }
    qe_f32_gru_h__scalar(n - j, z + j, r ? r + j : NULL, xh + j, rh + j, hprev + j, h + j);
}

#endif
#endif
