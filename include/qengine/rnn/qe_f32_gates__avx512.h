/* AVX-512 twin of qe_f32_gates__scalar.h: same operations, same order, 16 lanes; tails masked. */
#ifndef QE_F32_GATES_AVX512_H
#define QE_F32_GATES_AVX512_H

#include "../qe_target.h"
#include "qe_f32_gates__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static inline __m512 qe_vexp__avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(QE_EXP_LO)), _mm512_set1_ps(QE_EXP_HI));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(QE_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(QE_LN2_HI)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(QE_LN2_LO)));
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(QE_EXP_P0);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QE_EXP_P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QE_EXP_P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QE_EXP_P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QE_EXP_P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QE_EXP_P5));
    p = _mm512_add_ps(_mm512_mul_ps(p, r2), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

QE_TARGET_AVX512VNNI static inline __m512 qe_vsigmoid__avx512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = qe_vexp__avx512(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(one, _mm512_add_ps(one, e));
}

QE_TARGET_AVX512VNNI static inline __m512 qe_vtanh__avx512(__m512 x) {
    const __m512 lim = _mm512_set1_ps(QE_TANH_CLAMP);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = qe_vexp__avx512(_mm512_add_ps(x, x));
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

#define QE_TAILMASK16(n, j) ((__mmask16)((n) - (j) >= 16 ? 0xFFFF : ((1u << ((n) - (j))) - 1)))

QE_TARGET_AVX512VNNI static void qe_f32_vsigmoid__avx512(size_t n, const float* x, float* y) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        _mm512_mask_storeu_ps(y + j, m, qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, x + j)));
    }
}

QE_TARGET_AVX512VNNI static void qe_f32_vtanh__avx512(size_t n, const float* x, float* y) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        _mm512_mask_storeu_ps(y + j, m, qe_vtanh__avx512(_mm512_maskz_loadu_ps(m, x + j)));
    }
}

QE_TARGET_AVX512VNNI static void qe_f32_lstm_cell__avx512(
        size_t n, const float* gi, const float* go, const float* gf, const float* gc,
        float* c, float* h) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        const __m512 i = qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gi + j));
        const __m512 o = qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, go + j));
        const __m512 f = qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gf + j));
        const __m512 ct = qe_vtanh__avx512(_mm512_maskz_loadu_ps(m, gc + j));
        const __m512 cn = _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, c + j)),
                                        _mm512_mul_ps(i, ct));
        _mm512_mask_storeu_ps(c + j, m, cn);
        _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, qe_vtanh__avx512(cn)));
    }
}

QE_TARGET_AVX512VNNI static void qe_f32_gru_zr__avx512(size_t n, float* gz, float* gr) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        _mm512_mask_storeu_ps(gz + j, m, qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gz + j)));
        _mm512_mask_storeu_ps(gr + j, m, qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gr + j)));
    }
}

QE_TARGET_AVX512VNNI static void qe_f32_gru_h__avx512(
        size_t n, const float* z, const float* r, const float* xh, const float* rh,
        const float* hprev, float* h) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        __m512 a = _mm512_maskz_loadu_ps(m, xh + j);
        if (r) a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, r + j),
                                                  _mm512_maskz_loadu_ps(m, rh + j)));
        const __m512 ht = qe_vtanh__avx512(a);
        const __m512 zz = _mm512_maskz_loadu_ps(m, z + j);
        const __m512 hn = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, zz), ht),
                                        _mm512_mul_ps(zz, _mm512_maskz_loadu_ps(m, hprev + j)));
        _mm512_mask_storeu_ps(h + j, m, hn);
    }
}

#endif
#endif
