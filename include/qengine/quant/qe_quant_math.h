/* The normative element-wise quantize / dequantize, written once (docs/numerics.md,
 * "Quantize" and "Dequantize"). Every kernel in this directory computes exactly these; the
 * SIMD kernels are tested bit for bit against the __scalar kernels built from them.
 *
 * Rounding uses the 1.5·2^23 trick: for |v| <= 2^22, (v + 1.5·2^23) lands in [2^23, 2^24) where
 * the float32 ulp is 1, so the addition itself rounds v to an integer, half to even, exactly as
 * rintf/cvtps2dq do in the default rounding mode; the subtraction is then exact. The clamp puts
 * v in [qmin − z, qmax − z], |v| <= 65535, well inside that range. It needs float32 arithmetic
 * without excess precision (no x87) and without FMA contraction (setup.py: -ffp-contract=off).
 */
#ifndef QE_QUANT_MATH_H
#define QE_QUANT_MATH_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "qengine/qe_target.h"

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "qengine's quantize needs FLT_EVAL_METHOD == 0 (SSE float math, not x87 excess precision)"
#endif

QE_INLINE int32_t qe_quantize_f32(float r, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    const float lo = (float)(qmin - z), hi = (float)(qmax - z);
    float v = r / s;
    v = v == v ? v : 0.0f;              /* NaN is treated as 0.0 and lands on z */
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int32_t)((v + 12582912.0f) - 12582912.0f) + z;
}

/* The difference is formed with wrapping 32-bit arithmetic, as the SIMD kernels do; Python
 * validation keeps it exact (zero point 0 for 32-bit data, values inside [qmin, qmax]). */
QE_INLINE float qe_dequantize_i32(int32_t q, float s, int32_t z)
{
    return (float)(int32_t)((uint32_t)q - (uint32_t)z) * s;
}

#endif
