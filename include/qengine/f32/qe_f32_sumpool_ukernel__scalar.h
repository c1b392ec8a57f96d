/* FP32 window sums for average pooling, portable twin (qe_f32_dwconv_params.h). */
#ifndef QE_F32_SUMPOOL_UKERNEL__SCALAR_H
#define QE_F32_SUMPOOL_UKERNEL__SCALAR_H

#include "qe_f32_dwconv_params.h"

static void qe_f32_sumpool_ukernel__scalar(size_t n, size_t ntaps, const float *x,
                                           const ptrdiff_t *off, float *y) {
    for (size_t j = 0; j < n; j++) {
        float acc = x[off[0] + j];
        for (size_t t = 1; t < ntaps; t++) acc = acc + x[off[t] + j];
        y[j] = acc;
    }
}

#endif
