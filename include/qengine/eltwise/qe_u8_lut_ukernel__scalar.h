/* y[i] = table[x[i]]: every u8 → u8 function of one input (activation LUTs, requantizing a
 * concat input to new qparams) is a 256-entry table built once from the qparams, so whatever
 * computed the table, every path that applies it gives the same bytes. */
#ifndef QE_U8_LUT_UKERNEL__SCALAR_H
#define QE_U8_LUT_UKERNEL__SCALAR_H

#include <stddef.h>
#include <stdint.h>

static void qe_u8_lut_ukernel__scalar(size_t n, const uint8_t *x, const uint8_t *table,
                                      uint8_t *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {   /* four independent loads per step */
        const uint8_t t0 = table[x[i]], t1 = table[x[i + 1]];
        const uint8_t t2 = table[x[i + 2]], t3 = table[x[i + 3]];
        y[i] = t0; y[i + 1] = t1; y[i + 2] = t2; y[i + 3] = t3;
    }
    for (; i < n; i++) y[i] = table[x[i]];
}

#endif
