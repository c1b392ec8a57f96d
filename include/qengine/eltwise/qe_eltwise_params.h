/* Parameters of the u8 elementwise kernels (qe_eltwise.h). The normative formulas:
 *
 * QAdd  (numerics: two inputs with their own scale/zero point, output s_y, z_y)
 *   M_a = float32(s_a / s_y), M_b = float32(s_b / s_y)         (float64 division, one rounding)
 *   v = float32(a − z_a)·M_a + float32(b − z_b)·M_b             three float32 roundings, no FMA
 *   v = min(max(v, lo − z_y), hi − z_y);  y = rhe(v) + z_y      as in qe_requantize
 * QMul
 *   acc = (a − z_a)·(b − z_b)                                  exact int32
 *   y = qe_requantize(acc, float32(s_a·s_b / s_y), z_y, lo, hi)
 * Every ISA evaluates these with the same float32 operations in the same order: same bits.
 */
#ifndef QE_ELTWISE_PARAMS_H
#define QE_ELTWISE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

typedef struct qe_u8_binary_params {
    int32_t a_zp, b_zp, zp, lo, hi;
    float a_mult, b_mult;        /* QAdd: M_a, M_b; QMul: a_mult = M, b_mult unused */
} qe_u8_binary_params;

typedef void (*qe_u8_binary_fn)(size_t n, const uint8_t *a, const uint8_t *b, uint8_t *y,
                                const qe_u8_binary_params *p);

#endif
