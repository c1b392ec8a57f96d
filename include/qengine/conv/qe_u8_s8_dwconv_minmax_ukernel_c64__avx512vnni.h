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
 * qe_dwconv_v512_store). The narrowing packs (vpackssdw, vpackuswb) work per 128-bit lane and
 * take 4 dwords of the first operand then 4 of the second, which is exactly the inverse of the
 * interleave: the bytes come out in channel order.
 *
 * A channel tail masks the input loads and the store (the packed weights, bias and mult are
 * zero-padded to whole blocks); a tail of ≤ 32 channels runs the same code at 256 bits
 * (qe_dwconv_c64_avx512vnni.inc holds the body for both widths).
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C64__AVX512VNNI_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"

#if QE_HAVE_X86_SIMD
/* what the requantizing store must clamp (qe_dwconv_v512_store) */
enum { QE_DW_CLAMP_NONE = 0, QE_DW_CLAMP_BYTES = 1, QE_DW_CLAMP_FLOAT_HI = 2 };

#define QE_DW_W 512
#include "qe_dwconv_c64_avx512vnni.inc"
#undef QE_DW_W
#define QE_DW_W 256
#include "qe_dwconv_c64_avx512vnni.inc"
#undef QE_DW_W

/* Whether neighbouring pixels of a 3-wide kernel may share interleaves: 1 when tap kx + 1 of a
 * pixel is tap kx of the next (see the top), 2 when tap 2 is the next pixel's tap 0
 * (qe_dwconv_v512_acc_k3s2), else 0. */
static inline int qe_dwconv_c64_shares(size_t npix, const uint8_t *const *taps, size_t step,
                                       const qe_dwconv_params *p) {
    if (p->kw != 3 || npix < 2) return 0;
    if (taps[1] == taps[0] + step && taps[2] == taps[1] + step) return 1;
    return taps[2] == taps[0] + step ? 2 : 0;
}

/* a tail of ≤ 32 channels runs at 256 bits, for half the cost of a whole 64-channel block */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_run(const int clamp, size_t c0, size_t c1, size_t npix, size_t ntaps,
                       const uint8_t *const *taps, size_t step, const qe_dwconv_params *p,
                       uint8_t *out, size_t out_step) {
    const int shares = qe_dwconv_c64_shares(npix, taps, step, p);
    for (size_t cb = c0; cb < c1; cb += 64) {   /* c0 is a multiple of 64 (driver) */
        const size_t nc = c1 - cb < 64 ? c1 - cb : 64;
        if (nc > 32)
            qe_dwconv_v512_block(clamp, shares, cb, nc, npix, ntaps, taps, step, p, out,
                                 out_step);
        else
            qe_dwconv_v256_block(clamp, shares, cb, nc, npix, ntaps, taps, step, p, out,
                                 out_step);
    }
}

QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni(size_t c0, size_t c1, size_t npix,
                                                           size_t ntaps,
                                                           const uint8_t *const *taps,
                                                           size_t step,
                                                           const qe_dwconv_params *p,
                                                           uint8_t *out, size_t out_step) {
    if (!p->mult_lt1)
        qe_dwconv_c64_run(QE_DW_CLAMP_FLOAT_HI, c0, c1, npix, ntaps, taps, step, p, out,
                          out_step);
    else if (p->zp == 0 && p->lo == 0 && p->hi == 255)
        qe_dwconv_c64_run(QE_DW_CLAMP_NONE, c0, c1, npix, ntaps, taps, step, p, out, out_step);
    else
        qe_dwconv_c64_run(QE_DW_CLAMP_BYTES, c0, c1, npix, ntaps, taps, step, p, out,
                          out_step);
}
#endif

#endif
