/* Quantize float32 -> int16_t: the portable twin of the SIMD kernels, always compiled. */
#ifndef QE_F32_QS16_VCVT_SCALAR_H
#define QE_F32_QS16_VCVT_SCALAR_H

#include "qengine/quant/qe_quant_math.h"

static void qe_f32_qs16_vcvt__scalar(size_t n, const float* QE_RESTRICT x, int16_t* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride, int32_t qmin, int32_t qmax)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (int16_t)qe_quantize_f32(x[i], s[i * pstride], z[i * pstride], qmin, qmax);
}

#endif
