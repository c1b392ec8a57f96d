/* Depthwise convolution, AVX-512 VNNI: 64 channels per step, several output pixels at a time.
 *
 * vpdpbusd adds four u8·s8 products per int32 lane. Here the four bytes of a lane are four taps
 * of ONE channel (QE_DW_LAYOUT_C64, qe_dwconv_params.h), so every product is useful: the input
 * vectors of four taps are interleaved bytewise (vpunpck{l,h}bw, then vpunpck{l,h}wd; both work
 * inside 128-bit lanes) and lane 4L + j of interleaved vector q is channel 16L + 4q + j — a fixed
 * permutation that bias, mult and the weights are packed in. A kernel row's taps form groups of
 * four (the last padded with zero weights), so a 3×3 window costs 3 groups: 12 vpdpbusd per
 * pixel and 64 channels instead of 36 with one useful byte per lane. Every product and sum is
 * exact (wrapping int32, as the scalar definition).
 *
 * When the kernel is 3 wide and the horizontal step between taps equals the step between
 * output pixels (stride_w = dilation_w, the stride-1 3×3 case), the interleave of the 4 input
 * pixels x[o..o+3] serves two outputs: pixel o with weights (w0, w1, w2, 0) and pixel o + 1
 * with (0, w0, w1, w2), the same weights shifted one byte up each lane: per kernel row, 4 loads
 * and 8 shuffles make the 8 products of two pixels' 4 accumulators.
 *
 * The requantize gives the bits of qe_requantize (the same float32 multiply and rounding,
 * bias / mult in the permuted order; the clamp is done on the narrowed integers, see
 * qe_dwconv_c64_store). The narrowing packs (vpackssdw, vpackuswb) work per 128-bit lane and
 * take 4 dwords of the first operand then 4 of the second, which is exactly the inverse of the
 * interleave: the bytes come out in channel order. A channel tail (< 64) masks the input loads and the store; the packed
 * weights, bias and mult are zero-padded to whole blocks.
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"

#if QE_HAVE_X86_SIMD
/* the bytes of a, b, c, d for channel 16L + 4q + j as lane 4L + j of o[q] */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_interleave(__m512i a, __m512i b, __m512i c, __m512i d, __m512i o[4]) {
    const __m512i ab0 = _mm512_unpacklo_epi8(a, b), ab1 = _mm512_unpackhi_epi8(a, b);
    const __m512i cd0 = _mm512_unpacklo_epi8(c, d), cd1 = _mm512_unpackhi_epi8(c, d);
    o[0] = _mm512_unpacklo_epi16(ab0, cd0);
    o[1] = _mm512_unpackhi_epi16(ab0, cd0);
    o[2] = _mm512_unpacklo_epi16(ab1, cd1);
    o[3] = _mm512_unpackhi_epi16(ab1, cd1);
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_dot(__m512i acc[4], const __m512i x[4], const __m512i w[4]) {
    for (int q = 0; q < 4; q++) acc[q] = _mm512_dpbusd_epi32(acc[q], x[q], w[q]);
}

/* The 4 weight vectors of one tap group; the asm keeps them in registers (GCC would otherwise
 * fold the loads into every vpdpbusd, one 64-byte load per pixel instead of one per group). */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_weights(const int8_t *wg, __m512i w[4]) {
    for (int q = 0; q < 4; q++) w[q] = _mm512_loadu_si512(wg + 64 * q);
    __asm__("" : "+v"(w[0]), "+v"(w[1]), "+v"(w[2]), "+v"(w[3]));
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_bias(const int np, size_t cb, const qe_dwconv_params *p, __m512i acc[][4]) {
    for (int q = 0; q < 4; q++) {
        const __m512i b = _mm512_loadu_si512(p->bias + cb + 16 * q);
        for (int i = 0; i < np; i++) acc[i][q] = b;
    }
}

/* Any window: the accumulators of np (1..3) pixels for the 64-channel block starting at
 * channel cb, input loads masked to m (shared with the dequant kernel). */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_acc(const int np, size_t cb, __mmask64 m, size_t ntaps,
                       const uint8_t *const *taps, size_t off, size_t step,
                       const qe_dwconv_params *p, __m512i acc[][4]) {
    const size_t kw = (size_t)p->kw, kh = ntaps / kw, ng = (kw + 3) / 4;
    const int8_t *wg = (const int8_t *)p->w + (cb / 64) * kh * ng * 256;
    qe_dwconv_c64_bias(np, cb, p, acc);
    for (size_t ky = 0; ky < kh; ky++)
        for (size_t g = 0; g < ng; g++, wg += 256) {
            const uint8_t *const *tg = taps + ky * kw + 4 * g;
            const size_t nt = kw - 4 * g < 4 ? kw - 4 * g : 4;
            __m512i w[4];
            qe_dwconv_c64_weights(wg, w);
            for (int i = 0; i < np; i++) {
                const size_t o = off + cb + (size_t)i * step;
                __m512i x[4], v[4];
                for (size_t k = 0; k < 4; k++)
                    x[k] = k < nt ? _mm512_maskz_loadu_epi8(m, tg[k] + o)
                                  : _mm512_setzero_si512();
                qe_dwconv_c64_interleave(x[0], x[1], x[2], x[3], v);
                qe_dwconv_c64_dot(acc[i], v, w);
            }
        }
}

/* kw = 3 and tap kx + 1 of a pixel = tap kx of the next: 2·npair (npair 1..2) pixels, their
 * accumulators in acc[0 .. 2·npair). Pixel 2r + 1's last tap is x[2r + 3], inside the input. */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_acc_k3(const int npair, size_t cb, __mmask64 m, size_t kh,
                          const uint8_t *const *taps, size_t off, size_t step,
                          const qe_dwconv_params *p, __m512i acc[][4]) {
    const int8_t *wg = (const int8_t *)p->w + (cb / 64) * kh * 256;
    qe_dwconv_c64_bias(2 * npair, cb, p, acc);
#pragma GCC unroll 3
    for (size_t ky = 0; ky < kh; ky++, wg += 256) {
        __m512i w[4], ws[4];
        qe_dwconv_c64_weights(wg, w);
        for (int q = 0; q < 4; q++) ws[q] = _mm512_slli_epi32(w[q], 8);
        const uint8_t *xp = taps[3 * ky] + off + cb;
        for (int r = 0; r < npair; r++) {
            const uint8_t *xr = xp + (size_t)(2 * r) * step;
            __m512i v[4];
            qe_dwconv_c64_interleave(_mm512_maskz_loadu_epi8(m, xr),
                                     _mm512_maskz_loadu_epi8(m, xr + step),
                                     _mm512_maskz_loadu_epi8(m, xr + 2 * step),
                                     _mm512_maskz_loadu_epi8(m, xr + 3 * step), v);
            qe_dwconv_c64_dot(acc[2 * r], v, w);
            qe_dwconv_c64_dot(acc[2 * r + 1], v, ws);
        }
    }
}

/* np pixels' accumulators -> bytes in channel order, stored masked to m. qe_requantize clamps
 * v = float32(acc)·mult to [lo − zp, hi − zp] before rounding; as both bounds are integers and
 * rounding is monotone, clamping the rounded value instead gives the same result, and here the
 * saturating narrowing does it: vpackssdw, a saturating + zp and vpackuswb give
 * clamp(round(v) + zp, 0, 255), then max lo / min hi on the bytes. That needs round(v) exact:
 * vcvtps2dq returns INT_MIN for v ≥ 2^31, which cannot happen when every |mult| < 1
 * (p->mult_lt1; |float32(acc)| ≤ 2^31) and is otherwise prevented by clamping v to hi − zp
 * in float first (v ≤ −2^31 gives INT_MIN, which saturates to lo as it should). */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_store(const int np, const int clamp_hi, size_t cb, __mmask64 m,
                         const qe_dwconv_params *p, __m512i acc[][4], uint8_t *out,
                         size_t out_step) {
    const __m512 vhi = _mm512_set1_ps((float)(p->hi - p->zp));
    const __m512i vzp = _mm512_set1_epi16((short)p->zp);
    const __m512i blo = _mm512_set1_epi8((char)p->lo), bhi = _mm512_set1_epi8((char)p->hi);
    __m512 mult[4];
    for (int q = 0; q < 4; q++) mult[q] = _mm512_loadu_ps(p->mult + cb + 16 * q);
    for (int i = 0; i < np; i++) {
        __m512i r[4];
        for (int q = 0; q < 4; q++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][q]), mult[q]);
            if (clamp_hi) v = _mm512_min_ps(v, vhi);
            r[q] = _mm512_cvtps_epi32(v);
        }
        const __m512i lo = _mm512_adds_epi16(_mm512_packs_epi32(r[0], r[1]), vzp);
        const __m512i hi = _mm512_adds_epi16(_mm512_packs_epi32(r[2], r[3]), vzp);
        const __m512i b = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(lo, hi), blo), bhi);
        _mm512_mask_storeu_epi8(out + (size_t)i * out_step + cb, m, b);
    }
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_pixels(const int np, const int clamp_hi, size_t cb, __mmask64 m, size_t ntaps,
                          const uint8_t *const *taps, size_t off, size_t step,
                          const qe_dwconv_params *p, uint8_t *out, size_t out_step) {
    __m512i acc[3][4];
    qe_dwconv_c64_acc(np, cb, m, ntaps, taps, off, step, p, acc);
    qe_dwconv_c64_store(np, clamp_hi, cb, m, p, acc, out, out_step);
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_pairs(const int npair, const int clamp_hi, size_t cb, __mmask64 m, size_t kh,
                         const uint8_t *const *taps, size_t off, size_t step,
                         const qe_dwconv_params *p, uint8_t *out, size_t out_step) {
    __m512i acc[4][4];
    qe_dwconv_c64_acc_k3(npair, cb, m, kh, taps, off, step, p, acc);
    qe_dwconv_c64_store(2 * npair, clamp_hi, cb, m, p, acc, out, out_step);
}

/* Whether the kernel may share interleaves between neighbouring pixels (see the top). */
static inline int qe_dwconv_c64_shares(size_t npix, const uint8_t *const *taps, size_t step,
                                       const qe_dwconv_params *p) {
    return p->kw == 3 && npix >= 2 && taps[1] == taps[0] + step && taps[2] == taps[1] + step;
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_run(const int clamp_hi, size_t c0, size_t c1, size_t npix, size_t ntaps,
                       const uint8_t *const *taps, size_t step, const qe_dwconv_params *p,
                       uint8_t *out, size_t out_step) {
    const int shares = qe_dwconv_c64_shares(npix, taps, step, p);
    for (size_t cb = c0; cb < c1; cb += 64) {   /* c0 is a multiple of 64 (driver) */
        const __mmask64 m = c1 - cb >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (c1 - cb)) - 1;
        size_t i = 0;
        if (shares) {
            if (ntaps == 9)     /* 3×3: the rows unrolled, the registers allocated once */
                for (; i + 4 <= npix; i += 4)
                    qe_dwconv_c64_pairs(2, clamp_hi, cb, m, 3, taps, i * step, step, p,
                                        out + i * out_step, out_step);
            for (; i + 4 <= npix; i += 4)
                qe_dwconv_c64_pairs(2, clamp_hi, cb, m, ntaps / 3, taps, i * step, step, p,
                                    out + i * out_step, out_step);
            if (npix - i >= 2) {
                qe_dwconv_c64_pairs(1, clamp_hi, cb, m, ntaps / 3, taps, i * step, step, p,
                                    out + i * out_step, out_step);
                i += 2;
            }
        }
        for (; i + 3 <= npix; i += 3)
            qe_dwconv_c64_pixels(3, clamp_hi, cb, m, ntaps, taps, i * step, step, p,
                                 out + i * out_step, out_step);
        if (npix - i == 2)
            qe_dwconv_c64_pixels(2, clamp_hi, cb, m, ntaps, taps, i * step, step, p,
                                 out + i * out_step, out_step);
        else if (npix - i == 1)
            qe_dwconv_c64_pixels(1, clamp_hi, cb, m, ntaps, taps, i * step, step, p,
                                 out + i * out_step, out_step);
    }
}

QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni(size_t c0, size_t c1, size_t npix,
                                                           size_t ntaps,
                                                           const uint8_t *const *taps,
                                                           size_t step,
                                                           const qe_dwconv_params *p,
                                                           uint8_t *out, size_t out_step) {
    if (p->mult_lt1)
        qe_dwconv_c64_run(0, c0, c1, npix, ntaps, taps, step, p, out, out_step);
    else
        qe_dwconv_c64_run(1, c0, c1, npix, ntaps, taps, step, p, out, out_step);
}
#endif

#endif
