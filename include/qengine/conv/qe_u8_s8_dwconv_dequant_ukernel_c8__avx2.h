/* Depthwise convolution with the dequantizing epilogue, AVX2: 8 channels per vector, the
 * accumulation of qe_u8_s8_dwconv_minmax_ukernel_c8__avx2.h (vpmovzxbd + vpmaddwd with zero high
 * halves = exact x·w per lane), then float32(acc)·mult (+ fbias) as the scalar twin
 * qe_u8_s8_dwconv_dequant_ukernel_c1__scalar.h; the channel tail (< 8) is that twin.
 * Weights: QE_DW_LAYOUT_I32. */
#ifndef QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C8__AVX2_H
#define QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C8__AVX2_H

#include <string.h>
#include "../qe_target.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_dequant_ukernel_c1__scalar.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2
static void qe_u8_s8_dwconv_dequant_ukernel_c8__avx2(size_t c0, size_t c1, size_t npix,
                                                     size_t ntaps, const uint8_t *const *taps,
                                                     size_t step, const qe_dwconv_params *p,
                                                     float *out, size_t out_step) {
    for (size_t i = 0; i < npix; i++) {
        const size_t off = i * step;
        float *o = out + i * out_step;
        size_t c = c0;
        for (; c + 8 <= c1; c += 8) {
            __m256i acc = _mm256_loadu_si256((const __m256i *)(p->bias + c));
            const int32_t *w = (const int32_t *)p->w + c;
            for (size_t t = 0; t < ntaps; t++, w += p->wstride) {
                int64_t x8;
                memcpy(&x8, taps[t] + off + c, 8);
                const __m256i x = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(x8));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)w)));
            }
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(p->mult + c));
            if (p->fbias) v = _mm256_add_ps(v, _mm256_loadu_ps(p->fbias + c));
            _mm256_storeu_ps(o + c, v);
        }
        for (; c < c1; c++) o[c] = qe_dwconv_dequant_c1_scalar(c, ntaps, taps, off, p);
    }
}
#endif

#endif
