/* AVX-512 twin of qe_f32_gates__scalar.h: same operations, same order, 16 lanes; tails masked.
 *
 * One exp is a chain of ~25 dependent operations, and the FP pipes hold only a few dozen
 * waiting ones: computed one vector at a time, an LSTM cell ran at ~145 cycles per 16 units
 * against a throughput bound of ~90 (58 multiplies, 82 add-pipe operations, 5 divisions). The
 * cell therefore evaluates its exps in lockstep (QE_VEXP_N__AVX512: the same operations on N
 * vectors, interleaved operation by operation, ~120 cycles): each lane still sees exactly the
 * scalar sequence, so the bits do not change. */
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

/* x[0..N) = exp(x[0..N)): qe_vexp__avx512 on N vectors, operation by operation. */
#define QE_VEXP_N__AVX512(N, x)                                                                 \
    do {                                                                                        \
        __m512 n_[N], r_[N], r2_[N], p_[N];                                                     \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) x[u] = _mm512_min_ps(              \
            _mm512_max_ps(x[u], _mm512_set1_ps(QE_EXP_LO)), _mm512_set1_ps(QE_EXP_HI));         \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) n_[u] = _mm512_roundscale_ps(      \
            _mm512_mul_ps(x[u], _mm512_set1_ps(QE_LOG2E)),                                      \
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);                                     \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            r_[u] = _mm512_sub_ps(x[u], _mm512_mul_ps(n_[u], _mm512_set1_ps(QE_LN2_HI)));       \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            r_[u] = _mm512_sub_ps(r_[u], _mm512_mul_ps(n_[u], _mm512_set1_ps(QE_LN2_LO)));      \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) r2_[u] = _mm512_mul_ps(r_[u], r_[u]); \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) p_[u] = _mm512_add_ps(             \
            _mm512_mul_ps(_mm512_set1_ps(QE_EXP_P0), r_[u]), _mm512_set1_ps(QE_EXP_P1));        \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            p_[u] = _mm512_add_ps(_mm512_mul_ps(p_[u], r_[u]), _mm512_set1_ps(QE_EXP_P2));      \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            p_[u] = _mm512_add_ps(_mm512_mul_ps(p_[u], r_[u]), _mm512_set1_ps(QE_EXP_P3));      \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            p_[u] = _mm512_add_ps(_mm512_mul_ps(p_[u], r_[u]), _mm512_set1_ps(QE_EXP_P4));      \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++)                                    \
            p_[u] = _mm512_add_ps(_mm512_mul_ps(p_[u], r_[u]), _mm512_set1_ps(QE_EXP_P5));      \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) p_[u] = _mm512_add_ps(             \
            _mm512_add_ps(_mm512_mul_ps(p_[u], r2_[u]), r_[u]), _mm512_set1_ps(1.0f));          \
        _Pragma("GCC unroll 16") for (int u = 0; u < N; u++) x[u] = _mm512_mul_ps(              \
            p_[u], _mm512_castsi512_ps(_mm512_slli_epi32(                                       \
                       _mm512_add_epi32(_mm512_cvtps_epi32(n_[u]), _mm512_set1_epi32(127)), 23))); \
    } while (0)

/* the parts of sigmoid and tanh around their exp (qe_vsigmoid__avx512, qe_vtanh__avx512) */
QE_TARGET_AVX512VNNI QE_INLINE __m512 qe_sigmoid_pre__avx512(__m512 x) {
    return _mm512_sub_ps(_mm512_setzero_ps(), x);
}
QE_TARGET_AVX512VNNI QE_INLINE __m512 qe_sigmoid_post__avx512(__m512 e) {
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
QE_TARGET_AVX512VNNI QE_INLINE __m512 qe_tanh_pre__avx512(__m512 x) {
    const __m512 lim = _mm512_set1_ps(QE_TANH_CLAMP);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    return _mm512_add_ps(x, x);
}
QE_TARGET_AVX512VNNI QE_INLINE __m512 qe_tanh_post__avx512(__m512 e) {
    const __m512 one = _mm512_set1_ps(1.0f);
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
    size_t j = 0;
    /* 32 units at a time: the 8 gate exps in lockstep, then the 2 of tanh(c) */
    for (; j + 32 <= n; j += 32) {
        __m512 x[8], y[2], o[2];
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            const size_t k = j + 16 * u;
            x[4 * u] = qe_sigmoid_pre__avx512(_mm512_loadu_ps(gi + k));
            x[4 * u + 1] = qe_sigmoid_pre__avx512(_mm512_loadu_ps(go + k));
            x[4 * u + 2] = qe_sigmoid_pre__avx512(_mm512_loadu_ps(gf + k));
            x[4 * u + 3] = qe_tanh_pre__avx512(_mm512_loadu_ps(gc + k));
        }
        QE_VEXP_N__AVX512(8, x);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            const size_t k = j + 16 * u;
            const __m512 i = qe_sigmoid_post__avx512(x[4 * u]);
            o[u] = qe_sigmoid_post__avx512(x[4 * u + 1]);
            const __m512 f = qe_sigmoid_post__avx512(x[4 * u + 2]);
            const __m512 ct = qe_tanh_post__avx512(x[4 * u + 3]);
            const __m512 cn = _mm512_add_ps(_mm512_mul_ps(f, _mm512_loadu_ps(c + k)),
                                            _mm512_mul_ps(i, ct));
            _mm512_storeu_ps(c + k, cn);
            y[u] = qe_tanh_pre__avx512(cn);
        }
        QE_VEXP_N__AVX512(2, y);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++)
            _mm512_storeu_ps(h + j + 16 * u, _mm512_mul_ps(o[u], qe_tanh_post__avx512(y[u])));
    }
    for (; j < n; j += 16) {
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
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {   /* z and r of 32 units: 4 exps in lockstep */
        __m512 x[4];
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            x[2 * u] = qe_sigmoid_pre__avx512(_mm512_loadu_ps(gz + j + 16 * u));
            x[2 * u + 1] = qe_sigmoid_pre__avx512(_mm512_loadu_ps(gr + j + 16 * u));
        }
        QE_VEXP_N__AVX512(4, x);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            _mm512_storeu_ps(gz + j + 16 * u, qe_sigmoid_post__avx512(x[2 * u]));
            _mm512_storeu_ps(gr + j + 16 * u, qe_sigmoid_post__avx512(x[2 * u + 1]));
        }
    }
    for (; j < n; j += 16) {
        const __mmask16 m = QE_TAILMASK16(n, j);
        _mm512_mask_storeu_ps(gz + j, m, qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gz + j)));
        _mm512_mask_storeu_ps(gr + j, m, qe_vsigmoid__avx512(_mm512_maskz_loadu_ps(m, gr + j)));
    }
}

QE_TARGET_AVX512VNNI static void qe_f32_gru_h__avx512(
        size_t n, const float* z, const float* r, const float* xh, const float* rh,
        const float* hprev, float* h) {
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {   /* the tanh of 32 units: 2 exps in lockstep */
        __m512 x[2];
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            const size_t k = j + 16 * u;
            __m512 a = _mm512_loadu_ps(xh + k);
            if (r) a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_loadu_ps(r + k), _mm512_loadu_ps(rh + k)));
            x[u] = qe_tanh_pre__avx512(a);
        }
        QE_VEXP_N__AVX512(2, x);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) {
            const size_t k = j + 16 * u;
            const __m512 ht = qe_tanh_post__avx512(x[u]);
            const __m512 zz = _mm512_loadu_ps(z + k);
            const __m512 hn = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(one, zz), ht),
                                            _mm512_mul_ps(zz, _mm512_loadu_ps(hprev + k)));
            _mm512_storeu_ps(h + k, hn);
        }
    }
    for (; j < n; j += 16) {
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
