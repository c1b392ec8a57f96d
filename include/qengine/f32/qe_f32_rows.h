/* Row-wise float32 Softmax and LayerNormalization over the last, contiguous axis.
 *
 * Why compiled: in small transformers these ops run on a few thousand values per call, where
 * NumPy's reductions along a short last axis cost more than the arithmetic (np.max over
 * [1, 4, 32, 32] along its last axis took 13 us, the whole softmax 27 us; the LayerNorm of a
 * [1, 32, 64] activation 23 us).
 *
 * Same bits on every CPU: the exps are the gate math's (qe_f32_gates__*.h: one polynomial, the
 * same float operations on every ISA, no FMA), the maximum and the final scaling are exact
 * elementwise operations, and the sums run in one fixed order (eight double accumulators,
 * j mod 8) whatever the ISA; a NaN result is the one NaN (NAN) on every CPU. Double sums make
 * the statistics at least as accurate as NumPy's float32 pairwise sums; results agree with
 * NumPy to float rounding, not bit for bit.
 */
#ifndef QE_F32_ROWS_H
#define QE_F32_ROWS_H

#include <math.h>
#include <stddef.h>

#include "../qe_cpu.h"
#include "../rnn/qe_f32_gates__avx2.h"
#include "../rnn/qe_f32_gates__avx512.h"
#include "../rnn/qe_f32_gates__scalar.h"

/* sum of x[0..n) in double, eight accumulators over j mod 8: one order on every CPU, and eight
 * independent chains instead of one long one */
static double qe_sum8__scalar(size_t n, const float* x) {
    double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) s[k] += x[j + k];
    for (; j < n; j++) s[0] += x[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* the maximum of x[0..n) (n > 0), or NaN when one is NaN: eight chains, the result does not
 * depend on their order */
static float qe_max8__scalar(size_t n, const float* x) {
    float m[8];
    int nan = 0;
    for (int k = 0; k < 8; k++) m[k] = x[0];
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
            const float v = x[j + k];
            m[k] = v > m[k] ? v : m[k];
            nan |= v != v;
        }
    for (; j < n; j++) {
        m[0] = x[j] > m[0] ? x[j] : m[0];
        nan |= x[j] != x[j];
    }
    for (int k = 1; k < 8; k++) m[0] = m[k] > m[0] ? m[k] : m[0];
    return nan ? NAN : m[0];
}

/* y[j] = exp(x[j] - m), 0 where x[j] - m < QE_EXP_LO (exp's range: -inf masks give exactly 0) */
static void qe_f32_exp_shift__scalar(size_t n, const float* x, float m, float* y) {
    for (size_t j = 0; j < n; j++) {
        const float t = x[j] - m;
        y[j] = t < QE_EXP_LO ? 0.0f : qe_expf__scalar(t);
    }
}

#ifdef QE_HAVE_X86_SIMD
QE_TARGET_AVX2 static double qe_sum8__avx2(size_t n, const float* x) {
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();   /* lanes j mod 8 = 0-3, 4-7 */
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm_loadu_ps(x + j)));
        b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm_loadu_ps(x + j + 4)));
    }
    double s[8];
    _mm256_storeu_pd(s, a);
    _mm256_storeu_pd(s + 4, b);
    for (; j < n; j++) s[0] += x[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

QE_TARGET_AVX2 static float qe_max8__avx2(size_t n, const float* x) {
    __m256 m = _mm256_set1_ps(x[0]), nan = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        m = _mm256_max_ps(m, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    float r[8];
    _mm256_storeu_ps(r, m);
    for (; j < n; j++) {
        if (x[j] != x[j]) return NAN;
        r[0] = x[j] > r[0] ? x[j] : r[0];
    }
    for (int k = 1; k < 8; k++) r[0] = r[k] > r[0] ? r[k] : r[0];
    return _mm256_movemask_ps(nan) ? NAN : r[0];
}

QE_TARGET_AVX2 static void qe_f32_exp_shift__avx2(size_t n, const float* x, float m, float* y) {
    const __m256 vm = _mm256_set1_ps(m), lo = _mm256_set1_ps(QE_EXP_LO);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm);
        const __m256 keep = _mm256_cmp_ps(t, lo, _CMP_NLT_UQ);
        _mm256_storeu_ps(y + j, _mm256_and_ps(keep, qe_vexp__avx2(t)));
    }
    qe_f32_exp_shift__scalar(n - j, x + j, m, y + j);
}

QE_TARGET_AVX512VNNI static double qe_sum8__avx512(size_t n, const float* x) {
    __m512d a = _mm512_setzero_pd();                                 /* lane k: j mod 8 = k */
    size_t j = 0;
    for (; j + 8 <= n; j += 8) a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm256_loadu_ps(x + j)));
    double s[8];
    _mm512_storeu_pd(s, a);
    for (; j < n; j++) s[0] += x[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

QE_TARGET_AVX512VNNI static float qe_max8__avx512(size_t n, const float* x) {
    __m512 m = _mm512_set1_ps(x[0]);
    __mmask16 nan = 0;
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 in = QE_TAILMASK16(n, j);
        const __m512 v = _mm512_maskz_loadu_ps(in, x + j);
        m = _mm512_mask_max_ps(m, in, m, v);
        nan |= _mm512_mask_cmp_ps_mask(in, v, v, _CMP_UNORD_Q);
    }
    return nan ? NAN : _mm512_reduce_max_ps(m);
}

QE_TARGET_AVX512VNNI static void qe_f32_exp_shift__avx512(size_t n, const float* x, float m,
                                                          float* y) {
    /* 4 vectors in lockstep (one exp alone is a latency chain), masked: rows are often short */
    const __m512 vm = _mm512_set1_ps(m), lo = _mm512_set1_ps(QE_EXP_LO);
    for (size_t j = 0; j < n; j += 64) {
        __m512 t[4], e[4];
        __mmask16 in[4];
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) {
            const size_t o = j + 16 * (size_t)u;
            in[u] = o < n ? QE_TAILMASK16(n, o) : 0;
            e[u] = t[u] = _mm512_sub_ps(_mm512_maskz_loadu_ps(in[u], x + o), vm);
        }
        QE_VEXP_N__AVX512(4, e);
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++)
            _mm512_mask_storeu_ps(y + j + 16 * u, in[u], _mm512_maskz_mov_ps(
                _mm512_cmp_ps_mask(t[u], lo, _CMP_NLT_UQ), e[u]));
    }
}
#endif

typedef struct {
    float (*max)(size_t, const float*);
    double (*sum)(size_t, const float*);
    void (*exp_shift)(size_t, const float*, float, float*);
} qe_f32_rows_ops;

static qe_f32_rows_ops qe_f32_rows_for_isa(int isa) {
    qe_f32_rows_ops o = {qe_max8__scalar, qe_sum8__scalar, qe_f32_exp_shift__scalar};
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) {
        qe_f32_rows_ops a = {qe_max8__avx512, qe_sum8__avx512, qe_f32_exp_shift__avx512};
        o = a;
    } else if (isa == QE_ISA_AVX2) {
        qe_f32_rows_ops a = {qe_max8__avx2, qe_sum8__avx2, qe_f32_exp_shift__avx2};
        o = a;
    }
#endif
    (void)isa;
    return o;
}

/* y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)) for r < rows, rows of n values. */
static void qe_f32_softmax_rows(int isa, size_t rows, size_t n, const float* x, float* y) {
    const qe_f32_rows_ops f = qe_f32_rows_for_isa(isa);
    for (size_t r = 0; r < rows; r++, x += n, y += n) {
        const float m = f.max(n, x);
        if (!isfinite(m)) {      /* as NumPy: a NaN, or inf - inf, makes the row NaN */
            for (size_t j = 0; j < n; j++) y[j] = NAN;
            continue;
        }
        f.exp_shift(n, x, m, y);
        const float inv = (float)(1.0 / f.sum(n, y));
        for (size_t j = 0; j < n; j++) y[j] = y[j] * inv;
    }
}

/* ONNX LayerNormalization on rows of n values: Mean, D = x - Mean, Var = mean(D·D),
 * InvStdDev = 1 / sqrt(Var + eps), y = D · InvStdDev · scale (+ bias). mean and inv (per row)
 * may be NULL. y serves as scratch for D·D before it is written. */
static void qe_f32_layer_norm_rows(int isa, size_t rows, size_t n, const float* x,
                                   const float* scale, const float* bias, float eps, float* y,
                                   float* mean, float* inv) {
    const qe_f32_rows_ops f = qe_f32_rows_for_isa(isa);
    for (size_t r = 0; r < rows; r++, x += n, y += n) {
        float mu = (float)(f.sum(n, x) / (double)n);
        for (size_t j = 0; j < n; j++) {
            const float d = x[j] - mu;
            y[j] = d * d;
        }
        float is = 1.0f / sqrtf((float)(f.sum(n, y) / (double)n) + eps);
        if (bias)
            for (size_t j = 0; j < n; j++) y[j] = (x[j] - mu) * is * scale[j] + bias[j];
        else
            for (size_t j = 0; j < n; j++) y[j] = (x[j] - mu) * is * scale[j];
        if (!isfinite(mu) || !isfinite(is) || is == 0.0f) {
            /* inf or NaN in the row, or a variance that overflowed: NaNs made by inf - inf or
             * inf · 0 carry a sign bit that depends on the CPU and on the order of the sums;
             * one NaN instead, so the bits stay the same everywhere */
            for (size_t j = 0; j < n; j++) y[j] = y[j] != y[j] ? NAN : y[j];
            mu = mu != mu ? NAN : mu;
            is = is != is ? NAN : is;
        }
        if (mean) mean[r] = mu;
        if (inv) inv[r] = is;
    }
}

#endif
