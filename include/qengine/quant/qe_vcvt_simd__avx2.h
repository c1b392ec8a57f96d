/* 8-lane building blocks shared by the AVX2 quantize/dequantize kernels: the vector form of
 * qe_quant_math.h, same operations in the same order. Tails go to the __scalar kernels. */
#ifndef QE_VCVT_SIMD__AVX2_H
#define QE_VCVT_SIMD__AVX2_H

#include "qengine/quant/qe_quant_math.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX2 QE_INLINE void qe_params8__avx2(
    const float* s, const int32_t* z, size_t pstride, size_t i, __m256* vs, __m256i* vz)
{
    if (pstride) {
        *vs = _mm256_loadu_ps(s + i);
        *vz = _mm256_loadu_si256((const __m256i*)(z + i));
    } else {
        *vs = _mm256_set1_ps(s[0]);
        *vz = _mm256_set1_epi32(z[0]);
    }
}

QE_TARGET_AVX2 QE_INLINE __m256i qe_quantize8__avx2(
    __m256 r, __m256 s, __m256i z, __m256i qmin, __m256i qmax)
{
    __m256 v = _mm256_div_ps(r, s);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_max_ps(v, _mm256_cvtepi32_ps(_mm256_sub_epi32(qmin, z)));
    v = _mm256_min_ps(v, _mm256_cvtepi32_ps(_mm256_sub_epi32(qmax, z)));
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), z);
}

/* Values are already inside the target type's range, so the saturating packs are exact. */
QE_TARGET_AVX2 QE_INLINE __m128i qe_pack8_epi16__avx2(__m256i q)
{
    return _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
}

QE_TARGET_AVX2 QE_INLINE __m256 qe_dequantize8__avx2(__m256i q, __m256 s, __m256i z)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, z)), s);
}

#endif
#endif
