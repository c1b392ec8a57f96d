/* Recurrent-gate math, portable twin of the SIMD versions (qe_f32_gates__avx2.h, __avx512.h).
 *
 * exp is Cody–Waite range reduction plus a degree-6 polynomial (the classic Cephes expf
 * coefficients), about 2 ulp on the clamped range. sigmoid(x) = 1/(1+exp(−x)) and
 * tanh(x) = 1 − 2/(exp(2x)+1) (absolute error ~1e-7, which is what gates need).
 *
 * Every ISA performs the same float32 operations in the same order without FMA (the build uses
 * -ffp-contract=off), so the scalar and SIMD results are bit-identical, and a recurrent model's
 * float parts do not depend on the CPU that ran them.
 */
#ifndef QE_F32_GATES_SCALAR_H
#define QE_F32_GATES_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define QE_EXP_LO (-87.0f)
#define QE_EXP_HI (88.0f)
#define QE_LOG2E 1.44269504088896341f
#define QE_LN2_HI 0.693359375f
#define QE_LN2_LO (-2.12194440e-4f)
#define QE_EXP_P0 1.9875691500e-4f
#define QE_EXP_P1 1.3981999507e-3f
#define QE_EXP_P2 8.3334519073e-3f
#define QE_EXP_P3 4.1665795894e-2f
#define QE_EXP_P4 1.6666665459e-1f
#define QE_EXP_P5 5.0000001201e-1f
#define QE_TANH_CLAMP 9.0f

/* max/min written as the SIMD instructions behave (maxps returns the second operand on NaN). */
static inline float qe_maxf(float a, float b) { return a > b ? a : b; }
static inline float qe_minf(float a, float b) { return a < b ? a : b; }

static inline float qe_expf__scalar(float x) {
    x = qe_minf(qe_maxf(x, QE_EXP_LO), QE_EXP_HI);
    const float n = rintf(x * QE_LOG2E);
    float r = x - n * QE_LN2_HI;
    r = r - n * QE_LN2_LO;
    const float r2 = r * r;
    float p = QE_EXP_P0;
    p = p * r + QE_EXP_P1;
    p = p * r + QE_EXP_P2;
    p = p * r + QE_EXP_P3;
    p = p * r + QE_EXP_P4;
    p = p * r + QE_EXP_P5;
    p = p * r2 + r;
    p = p + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float qe_sigmoidf__scalar(float x) {
    return 1.0f / (1.0f + qe_expf__scalar(0.0f - x));
}

static inline float qe_tanhf__scalar(float x) {
    x = qe_minf(qe_maxf(x, -QE_TANH_CLAMP), QE_TANH_CLAMP);
    return 1.0f - 2.0f / (qe_expf__scalar(x + x) + 1.0f);
}

static void qe_f32_vsigmoid__scalar(size_t n, const float* x, float* y) {
    for (size_t i = 0; i < n; i++) y[i] = qe_sigmoidf__scalar(x[i]);
}

static void qe_f32_vtanh__scalar(size_t n, const float* x, float* y) {
    for (size_t i = 0; i < n; i++) y[i] = qe_tanhf__scalar(x[i]);
}

/* One LSTM step for `n` hidden units, ONNX gate layout: g holds the four pre-activation gate
 * blocks i, o, f, c (each n wide, bias already added). c is updated in place, h written. */
static void qe_f32_lstm_cell__scalar(size_t n, const float* gi, const float* go, const float* gf,
                                     const float* gc, float* c, float* h) {
    for (size_t j = 0; j < n; j++) {
        const float i = qe_sigmoidf__scalar(gi[j]);
        const float o = qe_sigmoidf__scalar(go[j]);
        const float f = qe_sigmoidf__scalar(gf[j]);
        const float ct = qe_tanhf__scalar(gc[j]);
        const float cn = f * c[j] + i * ct;
        c[j] = cn;
        h[j] = o * qe_tanhf__scalar(cn);
    }
}

/* GRU gates z and r: z = σ(gz), r = σ(gr) in place. */
static void qe_f32_gru_zr__scalar(size_t n, float* gz, float* gr) {
    for (size_t j = 0; j < n; j++) {
        gz[j] = qe_sigmoidf__scalar(gz[j]);
        gr[j] = qe_sigmoidf__scalar(gr[j]);
    }
}

/* GRU output: h = (1 − z)·tanh(xh + r·rh) + z·h_prev (linear_before_reset = 1; the caller passes
 * rh = Rh·h + Rbh). For linear_before_reset = 0 the caller passes r = NULL and xh already holding
 * Xh + Rh·(r⊙h) + biases. */
static void qe_f32_gru_h__scalar(size_t n, const float* z, const float* r, const float* xh,
                                 const float* rh, const float* hprev, float* h) {
    for (size_t j = 0; j < n; j++) {
        const float a = r ? xh[j] + r[j] * rh[j] : xh[j];
        const float ht = qe_tanhf__scalar(a);
        h[j] = (1.0f - z[j]) * ht + z[j] * hprev[j];
    }
}

#endif
