/* The epilogue definition, one output at a time; every SIMD epilogue reproduces it bit for bit.
 * Integer part in uint32 so that the wrapping that cancels out (numerics.md: K bound) is
 * defined behaviour; float parts are qe_requantize / qe_dequantize_acc. */
#ifndef QE_GEMM_EPILOGUE_SCALAR_H
#define QE_GEMM_EPILOGUE_SCALAR_H

#include "../qe_requant.h"
#include "qe_gemm_params.h"

static inline int32_t qe_gemm_fix_acc(int32_t dot, size_t i, size_t m, size_t n,
                                      const qe_gemm_tile *t, const qe_packed_w *w,
                                      const qe_gemm_epilogue *ep) {
    uint32_t acc = (uint32_t)dot;
    if (ep->a_zp) acc -= (uint32_t)ep->a_zp[m * ep->row_step] * (uint32_t)w->colsum[n];
    if (w->w_zp) acc -= (uint32_t)w->w_zp[n] * (uint32_t)t->rterm[i];
    if (ep->col_bias) acc += (uint32_t)ep->col_bias[n];
    return (int32_t)acc;
}

static void qe_gemm_epilogue_cols__scalar(const qe_gemm_tile *t, size_t j0, const qe_packed_w *w,
                                          const qe_gemm_epilogue *ep, void *out, size_t ldc) {
    for (size_t i = 0; i < t->mr; i++) {
        const size_t m = t->m0 + i;
        for (size_t j = j0; j < t->nr; j++) {
            const size_t n = t->n0 + j;
            const int32_t acc = qe_gemm_fix_acc(t->t[i * t->ldt + j], i, m, n, t, w, ep);
            const size_t o = m * ldc + n;
            switch (ep->kind) {
            case QE_EPI_INT32:
                ((int32_t *)out)[o] = acc;
                break;
            case QE_EPI_F32: {
                const float c = ep->a_scale[m * ep->row_step] * ep->w_scale[n];
                float y = (float)acc * c;
                if (ep->bias) y = y + ep->bias[n];
                if (ep->accumulate) y = ((float *)out)[o] + y;
                ((float *)out)[o] = y;
                break;
            }
            case QE_EPI_U8:
                ((uint8_t *)out)[o] = (uint8_t)qe_requantize(acc, ep->multiplier[n], ep->out_zp,
                                                             ep->lo, ep->hi);
                break;
            default:
                ((int8_t *)out)[o] = (int8_t)qe_requantize(acc, ep->multiplier[n], ep->out_zp,
                                                           ep->lo, ep->hi);
                break;
            }
        }
    }
}

static void qe_gemm_epilogue__scalar(const qe_gemm_tile *t, const qe_packed_w *w,
                                     const qe_gemm_epilogue *ep, void *out, size_t ldc) {
    qe_gemm_epilogue_cols__scalar(t, 0, w, ep, out, ldc);
}

#endif
