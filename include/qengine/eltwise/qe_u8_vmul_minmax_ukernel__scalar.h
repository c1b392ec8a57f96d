/* QMul, one element at a time: exact int32 product of the centred inputs, then qe_requantize. */
#ifndef QE_U8_VMUL_MINMAX_UKERNEL__SCALAR_H
#define QE_U8_VMUL_MINMAX_UKERNEL__SCALAR_H

#include "../qe_requant.h"
#include "qe_eltwise_params.h"

static void qe_u8_vmul_minmax_ukernel__scalar(size_t n, const uint8_t *a, const uint8_t *b,
                                              uint8_t *y, const qe_u8_binary_params *p) {
    for (size_t i = 0; i < n; i++) {
        const int32_t acc = ((int32_t)a[i] - p->a_zp) * ((int32_t)b[i] - p->b_zp);
        y[i] = (uint8_t)qe_requantize(acc, p->a_mult, p->zp, p->lo, p->hi);
    }
}

#endif
