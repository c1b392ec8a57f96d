/* Average pooling of one output pixel, all channels, integer sum then the normative requantize:
 *
 *   acc[c] = Σ_{valid t} taps[t][c] − nvalid·z_x       exact int32 (Σ_t (x_t − z_x))
 *   y[c]   = qe_requantize(acc[c], M, z_y, lo, hi)      M = float32(s_x / (s_y · count))
 *
 * where count is the divisor (valid taps, or taps inside the padded extent with
 * count_include_pad; a padded tap is the real value 0 = z_x and adds nothing to acc). M also
 * carries the change of scale/zero point when the output qparams differ from the input's.
 * `sum` is an int32 scratch of `channels` entries; the sum loop vectorizes at baseline ISA.
 */
#ifndef QE_U8_AVGPOOL_MINMAX_UKERNEL__SCALAR_H
#define QE_U8_AVGPOOL_MINMAX_UKERNEL__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include "../qe_requant.h"

static void qe_u8_avgpool_minmax_ukernel__scalar(size_t channels, size_t ntaps,
                                                 const uint8_t *const *taps, int32_t x_zp,
                                                 float mult, int32_t zp, int32_t lo, int32_t hi,
                                                 int32_t *sum, uint8_t *out) {
    const int32_t base = -(int32_t)ntaps * x_zp;
    for (size_t c = 0; c < channels; c++) sum[c] = base;
    for (size_t t = 0; t < ntaps; t++) {
        const uint8_t *x = taps[t];
        for (size_t c = 0; c < channels; c++) sum[c] += x[c];
    }
    for (size_t c = 0; c < channels; c++) out[c] = (uint8_t)qe_requantize(sum[c], mult, zp, lo, hi);
}

#endif
