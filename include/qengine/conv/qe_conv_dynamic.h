/* The layout edges of a dynamically quantized convolution (qengine/quantized/dynamic_conv.py):
 * the graph hands it float32 NCHW and wants float32 NCHW back, the int8 kernels read uint8 NHWC.
 *
 *   qe_dynq_u8_nchw(isa, n, c, hw, x, q, &scale, &zp, nthreads)
 *       per-tensor dynamic quantization (qe_gemm_dynamic.h: range, qparams, the ISA's row
 *       quantizer; so the same bytes as qe_dynq_u8 on the NHWC copy) written straight into
 *       NHWC: 64 channels × 64 pixels are quantized along the contiguous NCHW rows into a small
 *       buffer, then transposed into place — one pass over the floats instead of NumPy's
 *       transpose copy (float32) followed by the quantize pass.
 * The output side needs no pass of its own: the depthwise and GEMM drivers write float32 NCHW
 * straight from small per-thread buffers (qe_conv2d_dw_dequant, qe_conv2d_gemm_nchw).
 * The range is a min/max, exact and order-free, so splitting it over threads changes nothing.
 */
#ifndef QE_CONV_DYNAMIC_H
#define QE_CONV_DYNAMIC_H

#include "../qe_threads.h"
#include "../gemm/qe_gemm_dynamic.h"
#include "../layout/qe_transpose.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_DYNQ_BLOCK 64
#define QE_LAYOUT_PAR_MIN (1 << 16)    /* elements: below, one thread (fork/join ~20 us) */

/* item `it` = (image, block of 64 pixels): every channel of it, 64 at a time */
static void qe_dynq_nchw_block(qe_dynq_row_fn row, size_t c, size_t hw, size_t pblocks,
                               size_t it, const float *x, float s, int32_t z, uint8_t *q) {
    uint8_t stage[QE_DYNQ_BLOCK * QE_DYNQ_BLOCK];
    const size_t b = it / pblocks, p0 = (it % pblocks) * QE_DYNQ_BLOCK;
    const size_t np = hw - p0 < QE_DYNQ_BLOCK ? hw - p0 : QE_DYNQ_BLOCK;
    for (size_t c0 = 0; c0 < c; c0 += QE_DYNQ_BLOCK) {
        const size_t nc = c - c0 < QE_DYNQ_BLOCK ? c - c0 : QE_DYNQ_BLOCK;
        for (size_t i = 0; i < nc; i++)
            row(np, x + (b * c + c0 + i) * hw + p0, s, z, stage + i * QE_DYNQ_BLOCK);
        qe_transpose_u8(nc, np, stage, QE_DYNQ_BLOCK, q + (b * hw + p0) * c + c0, c);
    }
}

/* The per-tensor qparams of x[0..total) (qe_gemm_dynamic.h's definition), the range split over
 * threads when large (min/max: exact and order-free). */
static void qe_dynq_tensor_qparams(int isa, size_t total, const float *x, int nthreads,
                                   float *scale, int32_t *zp) {
    qe_dynq_range_fn range;
    qe_dynq_row_fn row;
    qe_dynq_fns(isa, &range, &row);
    int nt = qe_threads(nthreads);
    if (total < QE_LAYOUT_PAR_MIN) nt = 1;
    float lo = 0.0f, hi = 0.0f;
    if (nt <= 1) {
        range(total, x, &lo, &hi);
    } else {
#ifdef _OPENMP
        float los[64], his[64];
        if (nt > 64) nt = 64;
        const size_t part = (total + (size_t)nt - 1) / (size_t)nt;
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            #pragma omp for schedule(static)
            for (int t = 0; t < nt; t++) {
                const size_t a = (size_t)t * part < total ? (size_t)t * part : total;
                const size_t b = a + part < total ? a + part : total;
                los[t] = his[t] = 0.0f;
                range(b - a, x + a, &los[t], &his[t]);
            }
        }
        for (int t = 0; t < nt; t++) {
            lo = los[t] < lo ? los[t] : lo;
            hi = his[t] > hi ? his[t] : hi;
        }
#endif
    }
    qe_dynq_qparams(lo, hi, scale, zp);
}

static int qe_dynq_u8_nchw(int isa, size_t n, size_t c, size_t hw, const float *x, uint8_t *q,
                           float *scale, int32_t *zp, int nthreads) {
    qe_dynq_range_fn range;
    qe_dynq_row_fn row;
    qe_dynq_fns(isa, &range, &row);
    float s;
    int32_t z;
    qe_dynq_tensor_qparams(isa, n * c * hw, x, nthreads, &s, &z);
    *scale = s;
    *zp = z;
    int nt = qe_threads(nthreads);
    if (n * c * hw < QE_LAYOUT_PAR_MIN) nt = 1;
    const size_t pblocks = (hw + QE_DYNQ_BLOCK - 1) / QE_DYNQ_BLOCK;
    const size_t items = n * pblocks;
    if (nt <= 1) {
        for (size_t it = 0; it < items; it++) qe_dynq_nchw_block(row, c, hw, pblocks, it, x, s, z, q);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            #pragma omp for schedule(static)
            for (size_t it = 0; it < items; it++)
                qe_dynq_nchw_block(row, c, hw, pblocks, it, x, s, z, q);
        }
#endif
    }
    return 0;
}

#endif
