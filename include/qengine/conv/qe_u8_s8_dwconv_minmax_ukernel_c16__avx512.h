/* Depthwise convolution, AVX-512 (F + BW + VL): 16 channels per vector, the channel tail masked.
 * Per tap: 16 u8 zero-extended to int32 lanes, vpmaddwd against the packed weights (the zero
 * high halves make each lane one exact x·w), vpaddd into the accumulator; then the requantize of
 * qe_gemm_epilogue__avx512 (same float32 operations in the same order as qe_requantize). */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C16__AVX512_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C16__AVX512_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_minmax_ukernel_c16__avx512(size_t channels, size_t ntaps,
                                                       const uint8_t *const *taps,
                                                       const qe_dwconv_params *p, uint8_t *out) {
    const __m512 vlo = _mm512_set1_ps((float)(p->lo - p->zp));
    const __m512 vhi = _mm512_set1_ps((float)(p->hi - p->zp));
    const __m512i vzp = _mm512_set1_epi32(p->zp);
    size_t c = 0;
    /* 64 channels at a time: four independent accumulator chains and one pass over the tap
     * pointers for four vectors (wide layers: MobileNet 96..960 channels) */
    for (; c + 64 <= channels; c += 64) {
        __m512i acc[4];
        for (int j = 0; j < 4; j++) acc[j] = _mm512_loadu_si512(p->bias + c + 16 * j);
        const int32_t *w = p->w + c;
        for (size_t t = 0; t < ntaps; t++, w += p->wstride) {
            const uint8_t *x = taps[t] + c;
            for (int j = 0; j < 4; j++) {
                const __m512i xv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + 16 * j)));
                acc[j] = _mm512_add_epi32(acc[j], _mm512_madd_epi16(xv, _mm512_loadu_si512(w + 16 * j)));
            }
        }
        for (int j = 0; j < 4; j++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), _mm512_loadu_ps(p->mult + c + 16 * j));
            v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
            const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
            _mm_storeu_si128((__m128i *)(out + c + 16 * j), _mm512_cvtepi32_epi8(q));
        }
    }
    for (; c < channels; c += 16) {
        const __mmask16 k = channels - c >= 16 ? (__mmask16)0xffff
                                               : (__mmask16)((1u << (channels - c)) - 1);
        __m512i acc = _mm512_maskz_loadu_epi32(k, p->bias + c);
        const int32_t *w = p->w + c;
        for (size_t t = 0; t < ntaps; t++, w += p->wstride) {
            const __m512i x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, taps[t] + c));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(x, _mm512_maskz_loadu_epi32(k, w)));
        }
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_maskz_loadu_ps(k, p->mult + c));
        v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
        const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
        _mm_mask_storeu_epi8(out + c, k, _mm512_cvtepi32_epi8(q));   /* q ∈ [lo, hi] ⊂ [0, 255] */
    }
}
#endif

#endif
