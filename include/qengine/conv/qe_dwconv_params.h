/* Parameters shared by the depthwise microkernels (one file per kernel) and qe_dwconv.h.
 *
 * A microkernel computes output channels [c0, c1) of `npix` consecutive output pixels of one
 * row. taps[t] points at channel 0 of tap t's input pixel for the first of them; pixel i reads
 * taps[t] + i·step (step = stride_w · C: the driver only hands a run of pixels to a kernel when
 * none of their taps is in the left/right padding; a tap row in the top/bottom padding points
 * into a buffer filled with z_a, so it needs no special case either). Output pixel i is written
 * at out + i·out_step.
 *
 * Two packed-weight layouts exist; the dispatch record in qe_dwconv.h names the one its kernel
 * reads and qe_conv2d_dw refuses params packed for the other:
 *   QE_DW_LAYOUT_I32   w [ntaps][wstride ≥ C] int32 lanes, the int8 weight zero-extended from
 *                      16 bits (low half = (uint16)w8, high half 0): exact with vpmaddwd.
 *                      bias / mult are [C] in channel order.
 *   QE_DW_LAYOUT_C64   for vpdpbusd (see qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h):
 *                      per block of 64 channels, kernel row ky and group g of 4 taps of that
 *                      row (ceil(kw / 4) groups, the taps past kw have weight 0), 4 vectors of
 *                      64 bytes: byte k of int32 lane 4L + j of vector q holds
 *                      w[ky][4g + k][c0 + 16L + 4q + j]. bias (and the minmax kernel's mult)
 *                      are permuted per block the same way: entry 16q + 4L + j is channel
 *                      16L + 4q + j of the block. Everything is padded with zeros to a multiple
 *                      of 64 channels; the kernels need kw (set by the driver from the shape).
 *                      The dequant kernel puts its accumulators back in channel order before
 *                      the float math, so its mult / fbias are [C] in channel order.
 */
#ifndef QE_DWCONV_PARAMS_H
#define QE_DWCONV_PARAMS_H

#include <stddef.h>
#include <stdint.h>

enum { QE_DW_LAYOUT_I32 = 0, QE_DW_LAYOUT_C64 = 1 };

typedef struct qe_dwconv_params {
    const void *w;             /* packed weights in `layout` */
    size_t wstride;            /* QE_DW_LAYOUT_I32: int32 elements per tap (≥ channels) */
    const int32_t *bias;       /* bias_q − z_a·Σ_t w[t][c] (wrapping int32), layout order
                                * (dequant: −z_a·Σ_t w[t][c]) */
    const float *mult;         /* float32(s_a·s_w[c] / s_y), layout order
                                * (dequant: float32(s_a·s_w[c]), channel order) */
    int32_t zp, lo, hi;        /* output zero point, clamp range (output range ∩ fused act.) */
    int32_t layout;            /* QE_DW_LAYOUT_* */
    const float *fbias;        /* dequant only: float32 bias [C] (channel order) or NULL */
    int32_t kw;                /* QE_DW_LAYOUT_C64: kernel width (qe_conv2d_dw* set it) */
    int32_t mult_lt1;          /* every |mult| < 1 (qe_conv2d_dw sets it) */
} qe_dwconv_params;

typedef void (*qe_dwconv_ukernel_fn)(size_t c0, size_t c1, size_t npix, size_t ntaps,
                                     const uint8_t *const *taps, size_t step,
                                     const qe_dwconv_params *p, uint8_t *out, size_t out_step);
/* the dequant kernels: the same, float32 out (out_step in floats) */
typedef void (*qe_dwconv_dequant_ukernel_fn)(size_t c0, size_t c1, size_t npix, size_t ntaps,
                                             const uint8_t *const *taps, size_t step,
                                             const qe_dwconv_params *p, float *out,
                                             size_t out_step);

#endif
