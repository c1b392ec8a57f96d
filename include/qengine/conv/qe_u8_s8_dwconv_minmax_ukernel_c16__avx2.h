/* Depthwise convolution, AVX2: 16 channels × two taps per vpmaddwd pair, weights held in
 * registers across the run of pixels. Weights: QE_DW_LAYOUT_I32 (the c8 kernel's, so the
 * dequant twin and the packed files are unchanged).
 *
 * Channels outside, pixels inside: for a block of 16 channels the int16 weights of taps 2j and
 * 2j+1 are merged once into one int32 lane per channel (low half w[2j][c], high half
 * w[2j+1][c]; an odd last tap pairs with 0), so the pixel loop loads no weights (3×3: 10
 * vectors). Per tap pair and pixel, the 16 input bytes of the two taps are interleaved
 * (vpunpcklbw / vpunpckhbw: a0 b0 a1 b1 ...) and zero-extended (vpmovzxbw), so one vpmaddwd
 * gives a_c·w_a[c] + b_c·w_b[c] per channel: |2·255·128| < 2^31, exact, 32 MACs per two
 * vpmaddwd where the c8 kernel (one tap, zero high halves) did 8 per one.
 * The accumulator is the scalar kernel's (bias + Σ_t x_t·w_t, wrapping int32: the order of the
 * additions does not matter) and the epilogue is the c8 kernel's per lane (= qe_requantize):
 * cvtepi32_ps, × mult, max lo − z_y, min hi − z_y, cvtps_epi32 (half to even), + z_y; the
 * packs never saturate ([lo, hi] ⊂ [0, 255]). Channels past the last full 16: the c8 kernel
 * (whose own tail is the scalar one), so no byte outside [c0, c1) is read or written.
 * 3×3 (ntaps = 9) gets its own inlined body with the tap count a constant.
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C16__AVX2_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C16__AVX2_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c8__avx2.h"

#if QE_HAVE_X86_SIMD
#define QE_DW_C16_MAX_PAIRS 32    /* up to 64 taps (8×8) in registers/stack; more: c8 kernel */

QE_TARGET_AVX2
static inline __attribute__((always_inline)) void qe_dwconv_c16_block__avx2(
    size_t c, size_t npix, size_t ntaps, const uint8_t *const *taps, size_t step,
    const qe_dwconv_params *p, uint8_t *out, size_t out_step) {
    const size_t npairs = (ntaps + 1) / 2;
    __m256i wp[2 * QE_DW_C16_MAX_PAIRS];
    const int32_t *w = (const int32_t *)p->w + c;
    const size_t ws = p->wstride;
    for (size_t j = 0; j < npairs; j++)
        for (int h = 0; h < 2; h++) {
            const __m256i wa = _mm256_loadu_si256((const __m256i *)(w + 2 * j * ws + 8 * h));
            const __m256i wb = 2 * j + 1 < ntaps
                ? _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(w + (2 * j + 1) * ws + 8 * h)), 16)
                : _mm256_setzero_si256();
            wp[2 * j + h] = _mm256_or_si256(wa, wb);
        }
    const __m256 vlo = _mm256_set1_ps((float)(p->lo - p->zp));
    const __m256 vhi = _mm256_set1_ps((float)(p->hi - p->zp));
    const __m256i vzp = _mm256_set1_epi32(p->zp);
    for (size_t i = 0; i < npix; i++) {
        const size_t off = i * step + c;
        __m256i acc0 = _mm256_loadu_si256((const __m256i *)(p->bias + c));
        __m256i acc1 = _mm256_loadu_si256((const __m256i *)(p->bias + c + 8));
        for (size_t j = 0; j < npairs; j++) {
            const __m128i xa = _mm_loadu_si128((const __m128i *)(taps[2 * j] + off));
            const __m128i xb = 2 * j + 1 < ntaps
                ? _mm_loadu_si128((const __m128i *)(taps[2 * j + 1] + off)) : _mm_setzero_si128();
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(
                _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(xa, xb)), wp[2 * j]));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(
                _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(xa, xb)), wp[2 * j + 1]));
        }
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc0), _mm256_loadu_ps(p->mult + c));
        __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc1), _mm256_loadu_ps(p->mult + c + 8));
        v0 = _mm256_min_ps(_mm256_max_ps(v0, vlo), vhi);
        v1 = _mm256_min_ps(_mm256_max_ps(v1, vlo), vhi);
        const __m256i q0 = _mm256_add_epi32(_mm256_cvtps_epi32(v0), vzp);
        const __m256i q1 = _mm256_add_epi32(_mm256_cvtps_epi32(v1), vzp);
        /* packs: lane 0 = q0[0..3] q1[0..3], lane 1 = q0[4..7] q1[4..7]; 0 2 1 3 = channels 0..15 */
        const __m256i q16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        _mm_storeu_si128((__m128i *)(out + i * out_step + c),
                         _mm_packus_epi16(_mm256_castsi256_si128(q16), _mm256_extracti128_si256(q16, 1)));
    }
}

QE_TARGET_AVX2
static void qe_u8_s8_dwconv_minmax_ukernel_c16__avx2(size_t c0, size_t c1, size_t npix,
                                                     size_t ntaps, const uint8_t *const *taps,
                                                     size_t step, const qe_dwconv_params *p,
                                                     uint8_t *out, size_t out_step) {
    size_t c = c0;
    if (ntaps <= 2 * QE_DW_C16_MAX_PAIRS) {
        if (ntaps == 9)
            for (; c + 16 <= c1; c += 16)
                qe_dwconv_c16_block__avx2(c, npix, 9, taps, step, p, out, out_step);
        else
            for (; c + 16 <= c1; c += 16)
                qe_dwconv_c16_block__avx2(c, npix, ntaps, taps, step, p, out, out_step);
    }
    if (c < c1)
        qe_u8_s8_dwconv_minmax_ukernel_c8__avx2(c, c1, npix, ntaps, taps, step, p, out, out_step);
}
#endif

#endif
