/* Depthwise convolution, a run of output pixels, channels [c0, c1): the portable definition the
 * SIMD kernels reproduce bit for bit (calling conventions: qe_dwconv_params.h).
 *
 *   acc[c] = bias[c] + Σ_t x_t[c]·w[t][c]          (uint32 wrapping; bias = bias_q − z_a·Σ_t w)
 *   y[c]   = qe_requantize(acc[c], mult[c], zp, lo, hi)
 *
 * A tap in the padding reads z_a, whose contribution cancels against the folded bias. Weights
 * use QE_DW_LAYOUT_I32. The true accumulator Σ_t (x − z_a)·w + bias_q must fit int32 (with
 * ≤ 65793 taps it always does without a bias).
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C1__SCALAR_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C1__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include "../qe_requant.h"
#include "qe_dwconv_params.h"

/* one pixel, one channel: the accumulator (shared with the dequant kernels) */
static inline int32_t qe_dwconv_c1_acc(size_t c, size_t ntaps, const uint8_t *const *taps,
                                       size_t off, const qe_dwconv_params *p) {
    const int32_t *w = (const int32_t *)p->w;
    uint32_t acc = (uint32_t)p->bias[c];
    for (size_t t = 0; t < ntaps; t++)
        acc += (uint32_t)((int32_t)taps[t][off + c] * (int32_t)(int16_t)w[t * p->wstride + c]);
    return (int32_t)acc;
}

/* one pixel, one channel: shared with the AVX2 kernel's channel tail */
static inline uint8_t qe_dwconv_c1_scalar(size_t c, size_t ntaps, const uint8_t *const *taps,
                                          size_t off, const qe_dwconv_params *p) {
    return (uint8_t)qe_requantize(qe_dwconv_c1_acc(c, ntaps, taps, off, p), p->mult[c], p->zp,
                                  p->lo, p->hi);
}

static void qe_u8_s8_dwconv_minmax_ukernel_c1__scalar(size_t c0, size_t c1, size_t npix,
                                                      size_t ntaps, const uint8_t *const *taps,
                                                      size_t step, const qe_dwconv_params *p,
                                                      uint8_t *out, size_t out_step) {
    for (size_t i = 0; i < npix; i++)
        for (size_t c = c0; c < c1; c++)
            out[i * out_step + c] = qe_dwconv_c1_scalar(c, ntaps, taps, i * step, p);
}

#endif
