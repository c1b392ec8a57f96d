/* 16-lane building blocks shared by the AVX-512 quantize/dequantize kernels. Each is the vector
 * form of qe_quant_math.h: same operations, same order, so the results are identical. */
#ifndef QE_VCVT_SIMD__AVX512_H
#define QE_VCVT_SIMD__AVX512_H

#include "qengine/quant/qe_quant_math.h"

#ifdef QE_HAVE_X86_SIMD

QE_TARGET_AVX512VNNI QE_INLINE __mmask16 qe_tail_mask16(size_t remaining)
{
    return remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1u);
}

/* pstride is 0 (one scale for the run) or 1 (one scale per element: channels innermost). Masked
 * lanes get scale 1 so they never compute 0/0. */
QE_TARGET_AVX512VNNI QE_INLINE void qe_params16__avx512(
    const float* s, const int32_t* z, size_t pstride, size_t i, __mmask16 m,
    __m512* vs, __m512i* vz)
{
    if (pstride) {
        *vs = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, s + i);
        *vz = _mm512_maskz_loadu_epi32(m, z + i);
    } else {
        *vs = _mm512_set1_ps(s[0]);
        *vz = _mm512_set1_epi32(z[0]);
    }
}

QE_TARGET_AVX512VNNI QE_INLINE __m512i qe_quantize16__avx512(
    __m512 r, __m512 s, __m512i z, __m512i qmin, __m512i qmax)
{
    __m512 v = _mm512_div_ps(r, s);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_max_ps(v, _mm512_cvtepi32_ps(_mm512_sub_epi32(qmin, z)));
    v = _mm512_min_ps(v, _mm512_cvtepi32_ps(_mm512_sub_epi32(qmax, z)));
    return _mm512_add_epi32(_mm512_cvtps_epi32(v), z);
}

QE_TARGET_AVX512VNNI QE_INLINE __m512 qe_dequantize16__avx512(__m512i q, __m512 s, __m512i z)
{
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, z)), s);
}

#endif
#endif
