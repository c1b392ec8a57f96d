/* Dequantize uint8_t -> float32, 16 lanes; the tail runs masked in the same code. */
#ifndef QE_QU8_F32_VCVT_AVX512_H
#define QE_QU8_F32_VCVT_AVX512_H

#include "qengine/quant/qe_vcvt_simd__avx512.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_qu8_f32_vcvt__avx512(size_t n, const uint8_t* QE_RESTRICT q, float* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = qe_tail_mask16(n - i);
        __m512 vs;
        __m512i vz;
        qe_params16__avx512(s, z, pstride, i, m, &vs, &vz);
        _mm512_mask_storeu_ps(y + i, m, qe_dequantize16__avx512(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + i)), vs, vz));
    }
}

#endif

#endif
