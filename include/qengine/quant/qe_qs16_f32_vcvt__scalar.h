/* Dequantize int16_t -> float32: the portable twin of the SIMD kernels, always compiled. */
#ifndef QE_QS16_F32_VCVT_SCALAR_H
#define QE_QS16_F32_VCVT_SCALAR_H

#include "qengine/quant/qe_quant_math.h"

static void qe_qs16_f32_vcvt__scalar(size_t n, const int16_t* QE_RESTRICT q, float* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride)
{
    for (size_t i = 0; i < n; i++)
        y[i] = qe_dequantize_i32(q[i], s[i * pstride], z[i * pstride]);
}

#endif
