/* Depthwise convolution, one output pixel, all channels: the portable definition the SIMD
 * kernels reproduce bit for bit.
 *
 *   acc[c] = bias[c] + Σ_t x_t[c]·w[t][c]          (uint32 wrapping; bias = bias_q − z_a·Σ_t w)
 *   y[c]   = qe_requantize(acc[c], mult[c], zp, lo, hi)
 *
 * taps[t] points at channel 0 of tap t's input pixel, or at a row of z_a for a padded tap (its
 * contribution then cancels against the folded bias). Weights are int32 lanes whose low 16 bits
 * hold the int8 weight and whose high 16 bits are 0: the layout that lets the SIMD kernels use
 * vpmaddwd (lo·lo + hi·hi with a zero high half = one exact product). The true accumulator
 * Σ_t (x − z_a)·w + bias_q must fit int32 (with ≤ 65793 taps it always does without a bias).
 */
#ifndef QE_U8_S8_DWCONV_MINMAX_UKERNEL_C1__SCALAR_H
#define QE_U8_S8_DWCONV_MINMAX_UKERNEL_C1__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include "../qe_requant.h"
#include "qe_dwconv_params.h"

static void qe_u8_s8_dwconv_minmax_ukernel_c1__scalar(size_t channels, size_t ntaps,
                                                      const uint8_t *const *taps,
                                                      const qe_dwconv_params *p, uint8_t *out) {
    for (size_t c = 0; c < channels; c++) {
        uint32_t acc = (uint32_t)p->bias[c];
        for (size_t t = 0; t < ntaps; t++)
            acc += (uint32_t)((int32_t)taps[t][c] * (int32_t)(int16_t)p->w[t * p->wstride + c]);
        out[c] = (uint8_t)qe_requantize((int32_t)acc, p->mult[c], p->zp, p->lo, p->hi);
    }
}

#endif
