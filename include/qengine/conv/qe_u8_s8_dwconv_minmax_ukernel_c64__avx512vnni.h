/* Depthwise convolution, AVX-512 VNNI: 64 channels per step, up to 3 output pixels at a time.
 *
 * vpdpbusd adds four u8·s8 products per int32 lane: lane j of acc += Σ_{i<4} x[4j+i]·w[4j+i].
 * With weight vector k holding only the bytes i ≡ k (mod 4) (QE_DW_LAYOUT_C64,
 * qe_dwconv_params.h), three of the four products are 0·x and lane j of accumulator k is
 * exactly channel 4j + k: the 64 input bytes are used as loaded — no zero-extension, no
 * shuffle, no separate add — and every product and sum is exact (wrapping int32, as the scalar
 * definition). Four accumulators cover the 64 channels; the requantize is that of qe_requantize
 * (same float32 operations, same order), with bias / mult permuted the same way at pack time;
 * the four quantized vectors (each lane in [lo, hi] ⊂ [0, 255]) recombine into channel order
 * with shifts and ors: lane j of q0 | q1 << 8 | q2 << 16 | q3 << 24 holds bytes 4j .. 4j+3.
 * A channel tail (< 64) uses byte masks on the input loads and the store; the packed weights,
 * bias and mult are zero-padded to whole blocks.
 * Several pixels share each weight load (4 loads feed 4·np vpdpbusd).
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"

#if QE_HAVE_X86_SIMD
/* The accumulators of np (1..3) pixels for the 64-channel block starting at channel cb, input
 * loads masked to m: acc[i][k] lane j = channel cb + 4j + k (shared with the dequant kernel). */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_acc(const int np, size_t cb, __mmask64 m, size_t ntaps,
                       const uint8_t *const *taps, size_t off, size_t step,
                       const qe_dwconv_params *p, __m512i acc[3][4]) {
    const int8_t *wb = (const int8_t *)p->w + (cb / 64) * ntaps * 256;
    for (int k = 0; k < 4; k++) {
        const __m512i b = _mm512_loadu_si512(p->bias + cb + 16 * k);
        for (int i = 0; i < np; i++) acc[i][k] = b;
    }
    for (size_t t = 0; t < ntaps; t++, wb += 256) {
        const uint8_t *xp = taps[t] + off + cb;
        __m512i w0 = _mm512_loadu_si512(wb), w1 = _mm512_loadu_si512(wb + 64);
        __m512i w2 = _mm512_loadu_si512(wb + 128), w3 = _mm512_loadu_si512(wb + 192);
        /* keep the weights in registers: GCC would otherwise fold the loads into every
         * vpdpbusd, one 64-byte load per pixel instead of one per tap */
        __asm__("" : "+v"(w0), "+v"(w1), "+v"(w2), "+v"(w3));
        for (int i = 0; i < np; i++) {
            const __m512i x = _mm512_maskz_loadu_epi8(m, xp + (size_t)i * step);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], x, w0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], x, w1);
            acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], x, w2);
            acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], x, w3);
        }
    }
}

/* np (1..3) pixels, the 64-channel block starting at channel cb; masked to m */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_pixels(const int np, size_t cb, __mmask64 m, size_t ntaps,
                          const uint8_t *const *taps, size_t off, size_t step,
                          const qe_dwconv_params *p, uint8_t *out, size_t out_step) {
    __m512i acc[3][4];
    qe_dwconv_c64_acc(np, cb, m, ntaps, taps, off, step, p, acc);
    const __m512 vlo = _mm512_set1_ps((float)(p->lo - p->zp));
    const __m512 vhi = _mm512_set1_ps((float)(p->hi - p->zp));
    const __m512i vzp = _mm512_set1_epi32(p->zp);
    for (int i = 0; i < np; i++) {
        __m512i r = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][k]),
                                     _mm512_loadu_ps(p->mult + cb + 16 * k));
            v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
            const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
            r = _mm512_or_si512(r, _mm512_slli_epi32(q, 8 * k));
        }
        _mm512_mask_storeu_epi8(out + (size_t)i * out_step + cb, m, r);
    }
}

QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni(size_t c0, size_t c1, size_t npix,
                                                           size_t ntaps,
                                                           const uint8_t *const *taps,
                                                           size_t step,
                                                           const qe_dwconv_params *p,
                                                           uint8_t *out, size_t out_step) {
    for (size_t cb = c0; cb < c1; cb += 64) {   /* c0 is a multiple of 64 (driver) */
        const __mmask64 m = c1 - cb >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (c1 - cb)) - 1;
        size_t i = 0;
        for (; i + 3 <= npix; i += 3)
            qe_dwconv_c64_pixels(3, cb, m, ntaps, taps, i * step, step, p, out + i * out_step,
                                 out_step);
        if (npix - i == 2)
            qe_dwconv_c64_pixels(2, cb, m, ntaps, taps, i * step, step, p, out + i * out_step,
                                 out_step);
        else if (npix - i == 1)
            qe_dwconv_c64_pixels(1, cb, m, ntaps, taps, i * step, step, p, out + i * out_step,
                                 out_step);
    }
}
#endif

#endif
