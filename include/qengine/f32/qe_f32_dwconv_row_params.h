/* FP32 depthwise convolution of one channel plane straight from the input rows (no X' copy, no
 * wide raster), for horizontal stride 1 (driver: qe_f32_dwconv.h).
 *
 *   y[oy][ox] = clamp(bias + Σ_{ky: row inside} Σ_{kx} w[ky·kw + kx] · x[iy][ox + kx·dw − pl]),
 *   iy = oy·sh + ky·dh − pt
 *
 * Tap rows in the vertical padding are left out; a column outside [0, w_in) reads as 0 (masked
 * loads: masked-off lanes are never touched, so no padded copy is needed). The column masks
 * depend only on the position in the row, so the SIMD kernels compute them once per plane for
 * the row's first and last block of pixels; blocks in between load without masks.
 * One FMA chain per output in (ky, kx) order from the bias: the same bits on every ISA.
 */
#ifndef QE_F32_DWCONV_ROW_PARAMS_H
#define QE_F32_DWCONV_ROW_PARAMS_H

#include <stddef.h>
#include "qe_f32_conv_params.h"

#define QE_F32_DWROW_MAX_KW 16

typedef struct qe_f32_dwrow {
    size_t h_in, w_in, oh, ow, kh, kw, sh, dh, dw, pt, pl;
} qe_f32_dwrow;

typedef void (*qe_f32_dwconv_row_ukernel_fn)(const qe_f32_dwrow *g, const float *x,
                                             const float *w, float bias, float *y,
                                             const qe_f32_minmax *p);

/* [iy0, ...): first valid tap row of output row oy and the range of valid ky */
static inline void qe_f32_dwrow_taps(const qe_f32_dwrow *g, size_t oy, size_t *ky0,
                                     size_t *ky1) {
    const ptrdiff_t base = (ptrdiff_t)(oy * g->sh) - (ptrdiff_t)g->pt;
    size_t a = 0, b = g->kh;
    while (a < b && base + (ptrdiff_t)(a * g->dh) < 0) a++;
    while (b > a && base + (ptrdiff_t)((b - 1) * g->dh) >= (ptrdiff_t)g->h_in) b--;
    *ky0 = a;
    *ky1 = b;
}

#endif
