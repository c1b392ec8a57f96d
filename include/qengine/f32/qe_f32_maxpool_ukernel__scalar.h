/* FP32 max pooling, portable twin (qe_f32_dwconv_params.h): NaN in any tap gives NaN. */
#ifndef QE_F32_MAXPOOL_UKERNEL__SCALAR_H
#define QE_F32_MAXPOOL_UKERNEL__SCALAR_H

#include <math.h>
#include "qe_f32_dwconv_params.h"

static void qe_f32_maxpool_ukernel__scalar(size_t n, size_t ntaps, const float *x,
                                           const ptrdiff_t *off, float *y) {
    for (size_t j = 0; j < n; j++) {
        float acc = x[off[0] + j];
        int nan = acc != acc;
        for (size_t t = 1; t < ntaps; t++) {
            const float v = x[off[t] + j];
            nan |= v != v;
            acc = v > acc ? v : acc;
        }
        y[j] = nan ? NAN : acc;
    }
}

#endif
