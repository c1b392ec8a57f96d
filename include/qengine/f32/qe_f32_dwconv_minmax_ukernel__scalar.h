/* FP32 depthwise convolution, portable twin (qe_f32_dwconv_params.h); fmaf = one rounding. */
#ifndef QE_F32_DWCONV_MINMAX_UKERNEL__SCALAR_H
#define QE_F32_DWCONV_MINMAX_UKERNEL__SCALAR_H

#include <math.h>
#include "qe_f32_dwconv_params.h"
#include "qe_f32_conv_minmax_ukernel_4x8__scalar.h"

static void qe_f32_dwconv_minmax_ukernel__scalar(size_t n, size_t ntaps, const float *x,
                                                 const ptrdiff_t *off, const float *w,
                                                 float bias, float *y, const qe_f32_minmax *p) {
    for (size_t j = 0; j < n; j++) {
        float acc = bias;
        for (size_t t = 0; t < ntaps; t++) acc = fmaf(w[t], x[off[t] + j], acc);
        y[j] = qe_f32_min__scalar(p->hi, qe_f32_max__scalar(p->lo, acc));
    }
}

#endif
