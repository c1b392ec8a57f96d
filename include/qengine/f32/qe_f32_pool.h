/* FP32 max and average pooling driver, NCHW → NCHW (strides, dilations, pads, ceil_mode through
 * the output size the caller computes, count_include_pad).
 *
 * One work item per (image, channel) plane, as depthwise convolution (qe_f32_dwconv.h): X' is
 * built with −inf (max) or 0 (average) in the pads and overhang, the microkernel reduces every
 * window of the wide raster, and average pooling then divides each window sum by its count —
 * the taps inside the input, or inside input + explicit pads with count_include_pad, never the
 * ceil_mode overhang (as onnxruntime and PyTorch). Counts are separable: cy[oy]·cx[ox].
 * The division is one IEEE division per output in every ISA, so results are bit-identical.
 */
#ifndef QE_F32_POOL_H
#define QE_F32_POOL_H

#include "../qe_threads.h"
#include <math.h>
#include <string.h>
#include "../qe_cpu.h"
#include "qe_f32_dwconv.h"
#include "qe_f32_maxpool_ukernel__scalar.h"
#include "qe_f32_maxpool_ukernel__avx2.h"
#include "qe_f32_maxpool_ukernel__avx512.h"
#include "qe_f32_sumpool_ukernel__scalar.h"
#include "qe_f32_sumpool_ukernel__avx2.h"
#include "qe_f32_sumpool_ukernel__avx512.h"

enum { QE_F32_POOL_MAX = 0, QE_F32_POOL_AVG = 1 };

static qe_f32_pool_ukernel_fn qe_f32_pool_kernel_for_isa(int isa, int kind) {
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI)
        return kind == QE_F32_POOL_MAX ? qe_f32_maxpool_ukernel__avx512
                                       : qe_f32_sumpool_ukernel__avx512;
    if (isa == QE_ISA_AVX2)
        return kind == QE_F32_POOL_MAX ? qe_f32_maxpool_ukernel__avx2
                                       : qe_f32_sumpool_ukernel__avx2;
#endif
    (void)isa;
    return kind == QE_F32_POOL_MAX ? qe_f32_maxpool_ukernel__scalar
                                   : qe_f32_sumpool_ukernel__scalar;
}

typedef struct qe_f32_pool_args {
    qe_f32_window g;
    size_t n, c;
    int32_t kind, count_include_pad;
    size_t pb, pr;            /* explicit end pads (count_include_pad counts taps inside them) */
    const float *x;           /* [n][c][h][w] */
    float *y;                 /* [n][c][oh][ow] */
    int isa, nthreads;
} qe_f32_pool_args;

/* Number of taps of window o (stride s, dilation d, k taps, begin pad pb) inside [lo, hi). */
static size_t qe_f32_pool_count(size_t o, size_t s, size_t d, size_t k, size_t pb,
                                ptrdiff_t lo, ptrdiff_t hi) {
    size_t n = 0;
    for (size_t t = 0; t < k; t++) {
        const ptrdiff_t pos = (ptrdiff_t)(o * s + t * d) - (ptrdiff_t)pb;
        n += pos >= lo && pos < hi;
    }
    return n;
}

static int qe_f32_pool_item(const qe_f32_pool_args *a, qe_f32_pool_ukernel_fn fn,
                            const qe_f32_wide *q, const ptrdiff_t *off, const uint32_t *cy,
                            const uint32_t *cx, size_t item) {
    const qe_f32_window *g = &a->g;
    const size_t taps = g->kh * g->kw, ohow = g->oh * g->ow;
    const float *xp = a->x + item * g->h * g->w;
    float *yp = a->y + item * ohow;
    const int direct_out = a->kind == QE_F32_POOL_MAX && q->wq == g->ow;
    float *buf = NULL;
    if (!q->direct || !direct_out) {
        buf = qe_f32_plane_scratch(q);
        if (!buf) return QE_F32_ENOMEM;
    }
    if (!q->direct) {
        qe_f32_window_build(g, q, xp, a->kind == QE_F32_POOL_MAX ? -INFINITY : 0.0f, buf);
        xp = buf;
    }
    if (direct_out) {
        fn(q->pixels, taps, xp, off, yp);
        return QE_F32_OK;
    }
    float *yw = buf + q->chan;
    fn(q->pixels, taps, xp, off, yw);
    if (a->kind == QE_F32_POOL_MAX) {
        qe_f32_window_scatter(g, q, yw, 0, 1, 0, q->pixels, yp, 0);
        return QE_F32_OK;
    }
    for (size_t oy = 0; oy < g->oh; oy++) {
        const float *s = yw + oy * q->wq;
        float *d = yp + oy * g->ow;
        for (size_t ox = 0; ox < g->ow; ox++) d[ox] = s[ox] / (float)(cy[oy] * cx[ox]);
    }
    return QE_F32_OK;
}

static int qe_f32_pool2d(const qe_f32_pool_args *a) {
    const qe_f32_window *g = &a->g;
    if (!g->kh || !g->kw || !g->sh || !g->sw || !g->dh || !g->dw ||
        (a->kind != QE_F32_POOL_MAX && a->kind != QE_F32_POOL_AVG))
        return QE_F32_EARG;
    if (!a->n || !a->c || !g->oh || !g->ow) return QE_F32_OK;
    qe_f32_pool_ukernel_fn fn = qe_f32_pool_kernel_for_isa(a->isa, a->kind);
    const qe_f32_wide q = qe_f32_wide_of(g);
    const size_t taps = g->kh * g->kw, items = a->n * a->c;
    char *ws = (char *)qe_workspace(QE_WS_CALL, taps * sizeof(ptrdiff_t) +
                                                    (g->oh + g->ow) * sizeof(uint32_t));
    if (!ws) return QE_F32_ENOMEM;
    ptrdiff_t *off = (ptrdiff_t *)ws;
    uint32_t *cy = (uint32_t *)(off + taps), *cx = cy + g->oh;
    qe_f32_window_offsets(g, &q, off);
    const int inc = a->count_include_pad;
    for (size_t o = 0; o < g->oh; o++)
        cy[o] = (uint32_t)qe_f32_pool_count(o, g->sh, g->dh, g->kh, g->pt,
                                            inc ? -(ptrdiff_t)g->pt : 0,
                                            (ptrdiff_t)(g->h + (inc ? a->pb : 0)));
    for (size_t o = 0; o < g->ow; o++)
        cx[o] = (uint32_t)qe_f32_pool_count(o, g->sw, g->dw, g->kw, g->pl,
                                            inc ? -(ptrdiff_t)g->pl : 0,
                                            (ptrdiff_t)(g->w + (inc ? a->pr : 0)));
    int nt = qe_threads(a->nthreads);
    if ((double)items * g->oh * g->ow * taps < (double)QE_F32_PLANE_PAR_MIN_OPS) nt = 1;
    if ((size_t)nt > items) nt = (int)items;
    int err = QE_F32_OK;
    if (nt <= 1) {
        for (size_t it = 0; it < items && !err; it++)
            err = qe_f32_pool_item(a, fn, &q, off, cy, cx, it);
        return err;
    }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(dynamic, 1)
        for (size_t it = 0; it < items; it++) {
            const int e = qe_f32_pool_item(a, fn, &q, off, cy, cx, it);
            if (e) {
                #pragma omp atomic write
                err = e;
            }
        }
    }
#endif
    return err;
}

#endif
