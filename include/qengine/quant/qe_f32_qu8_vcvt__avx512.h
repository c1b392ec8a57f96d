/* Quantize float32 -> uint8_t, 16 lanes; the tail runs masked in the same code. */
#ifndef QE_F32_QU8_VCVT_AVX512_H
#define QE_F32_QU8_VCVT_AVX512_H

#include "qengine/quant/qe_vcvt_simd__avx512.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI static void qe_f32_qu8_vcvt__avx512(size_t n, const float* QE_RESTRICT x, uint8_t* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride, int32_t qmin, int32_t qmax)
{
    const __m512i vmin = _mm512_set1_epi32(qmin), vmax = _mm512_set1_epi32(qmax);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = qe_tail_mask16(n - i);
        __m512 vs;
        __m512i vz;
        qe_params16__avx512(s, z, pstride, i, m, &vs, &vz);
        const __m512i v = qe_quantize16__avx512(_mm512_maskz_loadu_ps(m, x + i), vs, vz, vmin, vmax);
        _mm512_mask_cvtepi32_storeu_epi8(y + i, m, v);
    }
}

#endif

#endif
