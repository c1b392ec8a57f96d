/* Dequantize int32_t -> float32, 8 lanes; the tail (< 8) goes to the scalar twin. */
#ifndef QE_QS32_F32_VCVT_AVX2_H
#define QE_QS32_F32_VCVT_AVX2_H

#include "qengine/quant/qe_vcvt_simd__avx2.h"
#include "qengine/quant/qe_qs32_f32_vcvt__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_qs32_f32_vcvt__avx2(size_t n, const int32_t* QE_RESTRICT q, float* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vs;
        __m256i vz;
        qe_params8__avx2(s, z, pstride, i, &vs, &vz);
        _mm256_storeu_ps(y + i, qe_dequantize8__avx2(_mm256_loadu_si256((const __m256i*)(q + i)), vs, vz));
    }
    if (i < n)
        qe_qs32_f32_vcvt__scalar(n - i, q + i, y + i, s + i * pstride, z + i * pstride, pstride);
}

#endif

#endif
