/* The dequantizing epilogue with the scale and bias per ROW (the output channel is the row: a
 * 1×1 convolution computed as Y[Cout, pixels] = W·X, which writes NCHW directly; see
 * qengine/conv/qe_conv1x1_dynamic.h), one output at a time — the definition its SIMD twins
 * reproduce bit for bit:
 *
 *   v = (int32)((uint32)t[i][j] + (uint32)rowterm[m] + (uint32)colterm[n])    wrapping, exact
 *   y = float32(v)·c[m] (+ bias[m]), then clamped to [lo, hi] as qe_clamp_f32
 *
 * for rows m = m0 + i, columns n = n0 + j of one int32 tile t[mr][ldt]; y[m·ldy + n]. The same
 * float32 operations in the same order as the F32 epilogue (qe_gemm_epilogue__scalar.h) and
 * dequant_epilogue_ref, with c[m] = float32(s_a·s_w[m]) made by the caller. */
#ifndef QE_GEMM_EPILOGUE_F32_ROWS__SCALAR_H
#define QE_GEMM_EPILOGUE_F32_ROWS__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include "../layout/qe_transpose.h"

typedef struct qe_rows_epilogue {
    const int32_t *rowterm;    /* [rows] */
    const int32_t *colterm;    /* [cols] */
    const float *c;            /* [rows] */
    const float *bias;         /* [rows] or NULL */
    float lo, hi;              /* ±inf: no clamp */
} qe_rows_epilogue;

typedef void (*qe_rows_epilogue_fn)(const int32_t *t, size_t ldt, size_t mr, size_t nr,
                                    size_t m0, size_t n0, const qe_rows_epilogue *e, float *y,
                                    size_t ldy);

static inline float qe_rows_epilogue_one(int32_t t, size_t m, size_t n, const qe_rows_epilogue *e) {
    const int32_t v = (int32_t)((uint32_t)t + (uint32_t)e->rowterm[m] + (uint32_t)e->colterm[n]);
    float y = (float)v * e->c[m];
    if (e->bias) y = y + e->bias[m];
    return qe_clamp_f32(y, e->lo, e->hi);
}

static void qe_gemm_epilogue_f32_rows__scalar(const int32_t *t, size_t ldt, size_t mr, size_t nr,
                                              size_t m0, size_t n0, const qe_rows_epilogue *e,
                                              float *y, size_t ldy) {
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++)
            y[(m0 + i) * ldy + n0 + j] = qe_rows_epilogue_one(t[i * ldt + j], m0 + i, n0 + j, e);
}

#endif
