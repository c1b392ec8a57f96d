/* FP32 depthwise convolution of a plane by rows, portable twin (qe_f32_dwconv_row_params.h). */
#ifndef QE_F32_DWCONV_ROW_MINMAX_UKERNEL__SCALAR_H
#define QE_F32_DWCONV_ROW_MINMAX_UKERNEL__SCALAR_H

#include <math.h>
#include "qe_f32_dwconv_row_params.h"
#include "qe_f32_conv_minmax_ukernel_4x8__scalar.h"

static void qe_f32_dwconv_row_minmax_ukernel__scalar(const qe_f32_dwrow *g, const float *x,
                                                     const float *w, float bias, float *y,
                                                     const qe_f32_minmax *p) {
    for (size_t oy = 0; oy < g->oh; oy++) {
        size_t ky0, ky1;
        qe_f32_dwrow_taps(g, oy, &ky0, &ky1);
        for (size_t ox = 0; ox < g->ow; ox++) {
            float acc = bias;
            for (size_t ky = ky0; ky < ky1; ky++) {
                const float *row = x + (oy * g->sh + ky * g->dh - g->pt) * g->w_in;
                for (size_t kx = 0; kx < g->kw; kx++) {
                    const ptrdiff_t ix = (ptrdiff_t)(ox + kx * g->dw) - (ptrdiff_t)g->pl;
                    const float v = ix >= 0 && ix < (ptrdiff_t)g->w_in ? row[ix] : 0.0f;
                    acc = fmaf(w[ky * g->kw + kx], v, acc);
                }
            }
            y[oy * g->ow + ox] = qe_f32_min__scalar(p->hi, qe_f32_max__scalar(p->lo, acc));
        }
    }
}

#endif
