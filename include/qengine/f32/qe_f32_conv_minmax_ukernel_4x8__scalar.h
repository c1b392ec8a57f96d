/* FP32 convolution microkernel, portable twin (interface and numerics: qe_f32_conv_params.h).
 * fmaf rounds once, exactly like the SIMD kernels' vfmadd: outputs are bit-identical to them. */
#ifndef QE_F32_CONV_MINMAX_UKERNEL_4X8__SCALAR_H
#define QE_F32_CONV_MINMAX_UKERNEL_4X8__SCALAR_H

#include <math.h>
#include "qe_f32_conv_params.h"

/* maxps/minps semantics: the second operand when either is NaN */
static inline float qe_f32_max__scalar(float a, float b) { return a > b ? a : b; }
static inline float qe_f32_min__scalar(float a, float b) { return a < b ? a : b; }

static void qe_f32_conv_minmax_ukernel_4x8__scalar(size_t mr, size_t nc, size_t k,
                                                   const float *w, const float *x,
                                                   const ptrdiff_t *off, const float *bias,
                                                   float *y, size_t ldy, const qe_f32_minmax *p) {
    enum { MR = 4, NR = 8 };
    float acc[MR][NR];
    for (size_t r = 0; r < MR; r++)
        for (size_t j = 0; j < NR; j++) acc[r][j] = bias && r < mr ? bias[r] : 0.0f;
    for (size_t i = 0; i < k; i++, w += MR) {
        const float *b = x + off[i];
        for (size_t j = 0; j < nc; j++)
            for (size_t r = 0; r < MR; r++) acc[r][j] = fmaf(w[r], b[j], acc[r][j]);
    }
    for (size_t r = 0; r < mr; r++)
        for (size_t j = 0; j < nc; j++)
            y[r * ldy + j] = qe_f32_min__scalar(p->hi, qe_f32_max__scalar(p->lo, acc[r][j]));
}

#endif
