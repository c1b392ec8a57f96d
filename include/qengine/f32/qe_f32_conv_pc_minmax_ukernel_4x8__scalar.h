/* FP32 convolution, transposed tile (pixels × channels), portable twin; interface and numerics:
 * qe_f32_conv_params.h. */
#ifndef QE_F32_CONV_PC_MINMAX_UKERNEL_4X8__SCALAR_H
#define QE_F32_CONV_PC_MINMAX_UKERNEL_4X8__SCALAR_H

#include <math.h>
#include "qe_f32_conv_params.h"
#include "qe_f32_conv_minmax_ukernel_4x8__scalar.h"

static void qe_f32_conv_pc_minmax_ukernel_4x8__scalar(size_t mr, size_t nc, size_t k,
                                                      const float *const *x,
                                                      const ptrdiff_t *off, const float *w,
                                                      const float *bias, float *y, size_t ldy,
                                                      int rowmajor, const qe_f32_minmax *p) {
    enum { MR = 4, NR = 8 };
    float acc[MR][NR];
    for (size_t r = 0; r < MR; r++)
        for (size_t c = 0; c < NR; c++) acc[r][c] = bias && c < nc ? bias[c] : 0.0f;
    for (size_t i = 0; i < k; i++, w += NR)
        for (size_t r = 0; r < mr; r++) {
            const float a = x[r][off[i]];
            for (size_t c = 0; c < NR; c++) acc[r][c] = fmaf(a, w[c], acc[r][c]);
        }
    const size_t sr = rowmajor ? ldy : 1, sc = rowmajor ? 1 : ldy;
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < mr; r++)
            y[c * sc + r * sr] = qe_f32_min__scalar(p->hi, qe_f32_max__scalar(p->lo, acc[r][c]));
}

#endif
