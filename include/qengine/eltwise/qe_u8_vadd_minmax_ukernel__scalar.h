/* QAdd, one element at a time: the definition (qe_eltwise_params.h) the SIMD kernels match. */
#ifndef QE_U8_VADD_MINMAX_UKERNEL__SCALAR_H
#define QE_U8_VADD_MINMAX_UKERNEL__SCALAR_H

#include <math.h>
#include "qe_eltwise_params.h"

static void qe_u8_vadd_minmax_ukernel__scalar(size_t n, const uint8_t *a, const uint8_t *b,
                                              uint8_t *y, const qe_u8_binary_params *p) {
    const float vlo = (float)(p->lo - p->zp), vhi = (float)(p->hi - p->zp);
    for (size_t i = 0; i < n; i++) {
        const float va = (float)((int32_t)a[i] - p->a_zp) * p->a_mult;
        const float vb = (float)((int32_t)b[i] - p->b_zp) * p->b_mult;
        float v = va + vb;
        v = v < vlo ? vlo : v;
        v = v > vhi ? vhi : v;
        y[i] = (uint8_t)((int32_t)lrintf(v) + p->zp);
    }
}

#endif
