/* Float32 transcendental functions for the elementwise chains, written once as scalar C.
 *
 * The same source is compiled for every ISA (qe_f32_vchain.inc) and auto-vectorized there; with
 * -ffp-contract=off (setup.py) and no reassociation each lane performs the same IEEE operations
 * in the same order as the scalar code, so every ISA gives bit-identical results — and the
 * standalone Exp/Sigmoid/Tanh/Erf ops use these same functions, so a fused chain equals the
 * unfused graph bit for bit. Only selects, no branches, so the loops vectorize.
 *
 * Accuracy against float64, normal results (measured on every 97th float32 in ±30; subnormal
 * results are off by at most a few subnormal steps; tests/test_chain.py keeps checking):
 *   exp      Cody–Waite reduction, degree-6 Cephes polynomial, 2^n applied in two exact
 *            steps (subnormal results round once): ≤ 1 ulp; +inf above 88.72, NaN in → NaN.
 *   sigmoid  e = exp(−|x|); x ≥ 0 ? 1/(1+e) : e/(1+e) (the NumPy formula qengine used before,
 *            never overflows): ≤ 2.5 ulp.
 *   tanh     |x| < 0.625: Cephes odd polynomial (no cancellation near 0); else
 *            sign(x)·(1 − 2/(exp(2|x|)+1)): ≤ 1.5 ulp.
 *   erf      |x| ≤ 0.9277: x + x·P(x²); above: sign(x)·(1 − exp(Q(|x|))), Q clamped at 4
 *            where erf rounds to ±1 (the split and polynomials of N. Juffa's faithfully
 *            rounded erff, as ONNX Runtime's MLAS uses them; evaluated here without FMA):
 *            ≤ 1.2 ulp.
 */
#ifndef QE_F32_MATH_H
#define QE_F32_MATH_H

#include <stdint.h>
#include <string.h>

static inline float qe_f32_from_bits(int32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* NaN-preserving clamp: NaN compares false both ways and passes through. */
static inline float qe_f32_clamp(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

static inline float qe_f32_exp(float x) {
    const float xc = qe_f32_clamp(x, -104.0f, 89.0f);   /* e^-104 < half the least subnormal */
    /* n = round-to-nearest-even(x·log2 e): adding and removing 1.5·2^23 is exact for |v| < 2^22 */
    const float v = xc * 1.44269504088896341f;
    float n = (v + 12582912.0f) - 12582912.0f;
    n = n == n ? n : 0.0f;                               /* NaN: any n, the NaN flows below */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r;
    p = p + 1.0f;
    /* 2^n for n in [-150, 128] as two normal powers of two: each product is exact unless the
     * result is subnormal (rounded once) or overflows (to +inf, as it should) */
    const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    return (p * qe_f32_from_bits((n1 + 127) << 23)) * qe_f32_from_bits((n2 + 127) << 23);
}

static inline float qe_f32_sigmoid(float x) {
    const float e = qe_f32_exp(-(x < 0.0f ? -x : x));
    const float d = 1.0f + e;
    return x >= 0.0f ? 1.0f / d : e / d;
}

static inline float qe_f32_tanh(float x) {
    const float a = x < 0.0f ? -x : x;
    /* large: 1 − 2/(e^{2a}+1), saturating to 1 (e^{2a} = +inf gives exactly 1) */
    const float big = 1.0f - 2.0f / (qe_f32_exp(a + a) + 1.0f);
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    const float r = a < 0.625f ? small : (x < 0.0f ? -big : big);
    return x == x && x != 0.0f ? r : x;      /* NaN and ±0 pass through */
}

static inline float qe_f32_erf(float x) {
    const float t = x < 0.0f ? -x : x, s = x * x;
    /* |x| <= 0.927734375: x + x·P(x²) */
    float p = -5.96761703e-4f;
    p = p * s + 4.99119423e-3f;
    p = p * s - 2.67681349e-2f;
    p = p * s + 1.12819925e-1f;
    p = p * s - 3.76125336e-1f;
    p = p * s + 1.28379166e-1f;
    const float small = p * x + x;
    /* above: 1 − exp(Q(|x|)); Q(t) → −∞ fast enough that exp gives 0 and erf exactly ±1 */
    const float tc = t < 4.0f ? t : 4.0f;     /* erf(4) rounds to 1 in float32; keeps Q finite */
    float r = -1.72853470e-5f * tc + 3.83197126e-4f;
    const float u = -3.88396438e-3f * tc + 2.42546219e-2f;
    r = r * (tc * tc) + u;
    r = r * tc - 1.06777877e-1f;
    r = r * tc - 6.34846687e-1f;
    r = r * tc - 1.28717512e-1f;
    r = r * tc - tc;
    const float big = 1.0f - qe_f32_exp(r);
    const float y = t <= 0.927734375f ? small : (x < 0.0f ? -big : big);
    return x == x ? y : x;
}

#endif
