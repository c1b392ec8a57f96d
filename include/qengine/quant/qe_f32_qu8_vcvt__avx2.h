/* Quantize float32 -> uint8_t, 8 lanes; the tail (< 8) goes to the scalar twin. */
#ifndef QE_F32_QU8_VCVT_AVX2_H
#define QE_F32_QU8_VCVT_AVX2_H

#include "qengine/quant/qe_vcvt_simd__avx2.h"
#include "qengine/quant/qe_f32_qu8_vcvt__scalar.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 static void qe_f32_qu8_vcvt__avx2(size_t n, const float* QE_RESTRICT x, uint8_t* QE_RESTRICT y,
    const float* s, const int32_t* z, size_t pstride, int32_t qmin, int32_t qmax)
{
    const __m256i vmin = _mm256_set1_epi32(qmin), vmax = _mm256_set1_epi32(qmax);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vs;
        __m256i vz;
        qe_params8__avx2(s, z, pstride, i, &vs, &vz);
        const __m128i p = qe_pack8_epi16__avx2(
            qe_quantize8__avx2(_mm256_loadu_ps(x + i), vs, vz, vmin, vmax));
        _mm_storel_epi64((__m128i*)(y + i), _mm_packus_epi16(p, p));
    }
    if (i < n)
        qe_f32_qu8_vcvt__scalar(n - i, x + i, y + i, s + i * pstride, z + i * pstride, pstride,
                                qmin, qmax);
}

#endif

#endif
