/* The ONE normative requantize and the dequantize epilogue (docs/numerics.md, "Integer GEMM").
 *
 * Requantize (static quantization). With real values r_a = s_a (a - z_a), r_w = s_w w (z_w = 0)
 * and r_y = s_y (y - z_y), a dot product of length K is
 *     r_y = s_a s_w Σ_k (a_k - z_a) w_k + r_bias
 * and with the bias quantized at scale s_a s_w (bias_q = rhe(r_bias / (s_a s_w))):
 *     y - z_y = (s_a s_w / s_y) · (Σ_k a_k w_k - z_a Σ_k w_k + bias_q) = M · acc.
 * acc is an exact int32 (K bound in numerics.md); M = float32(s_a s_w / s_y). We evaluate
 *     v = float32(acc) · M                      one float32 rounding for the conversion, one for ·
 *     v = min(max(v, lo - z_y), hi - z_y)       clamp in float: rhe never sees huge values and the
 *                                               integer add below cannot overflow; lo/hi are the
 *                                               output range intersected with a fused ReLU/clamp
 *     y = rhe(v) + z_y                          round half to even (rintf, cvtps2dq)
 * Every operation is a single IEEE float32 operation, so a SIMD lane doing mul/max/min/cvt in
 * the same order gives the same bits; -ffp-contract=off (setup.py) forbids fusing into an FMA.
 * lo - z_y and hi - z_y are integers of magnitude <= 510, exact in float32. ±0 both round to 0,
 * so max_ps/min_ps and the comparisons below agree on every input (acc and M are finite).
 *
 * Dequantize (dynamic quantization): c = float32(s_a · s_w) and y = float32(acc) · c + bias,
 * two roundings, no FMA; qe_dequantize_acc is that definition.
 */
#ifndef QE_REQUANT_H
#define QE_REQUANT_H

#include <math.h>
#include <stdint.h>

static inline int32_t qe_requantize(int32_t acc, float multiplier, int32_t zp,
                                    int32_t lo, int32_t hi) {
    const float vlo = (float)(lo - zp), vhi = (float)(hi - zp);
    float v = (float)acc * multiplier;
    v = v < vlo ? vlo : v;
    v = v > vhi ? vhi : v;
    return (int32_t)lrintf(v) + zp;
}

static inline float qe_dequantize_acc(int32_t acc, float c, float bias) {
    const float p = (float)acc * c;
    return p + bias;
}

#endif
