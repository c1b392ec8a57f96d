/* u8 × int4 → f32, up to 4 rows × one 16-row W panel, portable C: the definition of epilogue (c)
 * (docs/numerics.md "4-bit weights"); every SIMD twin equals it bit for bit.
 * Integer sums in uint32 so that wrapping (which cancels: numerics.md) is defined behaviour. */
#ifndef QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__SCALAR_H
#define QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__SCALAR_H

#include "qe_gemm_w4_params.h"

/* w[n, k] + 8 of panel row j, from block b (numerics: the packed layout, qe_gemm_w4_params.h) */
static inline uint32_t qe_w4_nibble(const uint8_t *panel, size_t j, size_t k) {
    const uint8_t byte = panel[(k / 8) * 64 + 4 * j + k % 4];
    return (k % 8) < 4 ? (uint32_t)(byte & 15) : (uint32_t)(byte >> 4);
}

/* The group partial sum Σ_{k∈g} (a − z_a)·w of row i, column j, exact (wrapping) int32. */
static inline int32_t qe_w4_group_acc(const qe_w4_tile *t, size_t i, size_t j, size_t g) {
    const uint8_t *a = t->a + i * t->lda;
    const size_t gs = t->gb * 8;
    uint32_t acc = 0;
    for (size_t k = g * gs; k < (g + 1) * gs; k++) acc += (uint32_t)a[k] * qe_w4_nibble(t->w, j, k);
    acc += (uint32_t)t->rterm[i * t->ng + g];
    if (t->a_zp) acc -= (uint32_t)t->a_zp[i * t->row_step] * (uint32_t)t->colsum[g * 16 + j];
    return (int32_t)acc;
}

static void qe_u8_s4_gemm_dequant_ukernel_4x16c8__scalar(size_t mr, const qe_w4_tile *t) {
    if (t->acc_out) {
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < QE_W4_NR; j++) {
                uint32_t s = 0;
                for (size_t g = 0; g < t->ng; g++) s += (uint32_t)qe_w4_group_acc(t, i, j, g);
                t->acc_out[i * t->acc_ld + j] = (int32_t)s;
            }
        return;
    }
    for (size_t i = 0; i < mr; i++) {
        const float sa = t->a_scale[i * t->row_step];
        for (size_t j = 0; j < t->nr; j++) {
            float y = 0.0f;
            for (size_t g = 0; g < t->ng; g++) {
                const float c = sa * t->scale[g * 16 + j];
                const float p = (float)qe_w4_group_acc(t, i, j, g) * c;
                y = g ? y + p : p;
            }
            if (t->bias) y = y + t->bias[j];
            float *o = t->out + i * t->ldc + j;
            *o = t->accumulate ? *o + y : y;
        }
    }
}

#endif
