/* FP32 depthwise convolution driver, NCHW → NCHW (groups = input channels, any channel
 * multiplier, strides, dilations, pads).
 *
 * One work item per (image, input channel), two ways to run it:
 *   rows — horizontal stride 1, output rows of ≥ 16 pixels: one kernel call per output plane
 *          reads the input rows in place (qe_f32_dwconv_row_params.h: masked loads at the
 *          edges stand for the horizontal padding, tap rows in the vertical padding are left
 *          out) and writes y directly: no copy of the input, no wide raster;
 *   wide — otherwise (strided columns, short rows such as 7×7): the channel's X'
 *          (qe_f32_window.h) is built in the thread's own workspace and each output channel is
 *          one microkernel call over the whole wide raster (qe_f32_dwconv_params.h), written
 *          straight to y when it has no throw-away columns, through a row buffer otherwise.
 * The choice depends on the shape only, never on the ISA, so every ISA computes the same chain.
 * The two differ only in a padded tap being left out (rows, vertical) instead of adding w·0:
 * the sign of an exact zero result at most. OpenMP over items; no output depends on the thread
 * count.
 */
#ifndef QE_F32_DWCONV_H
#define QE_F32_DWCONV_H

#include "../qe_threads.h"
#include <string.h>
#include "../qe_cpu.h"
#include "qe_f32_conv.h"
#include "qe_f32_dwconv_params.h"
#include "qe_f32_dwconv_minmax_ukernel__scalar.h"
#include "qe_f32_dwconv_minmax_ukernel__avx2.h"
#include "qe_f32_dwconv_minmax_ukernel__avx512.h"
#include "qe_f32_dwconv_row_minmax_ukernel__scalar.h"
#include "qe_f32_dwconv_row_minmax_ukernel__avx2.h"
#include "qe_f32_dwconv_row_minmax_ukernel__avx512.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_F32_PLANE_PAR_MIN_OPS (1 << 16)   /* below: one thread */

typedef struct qe_f32_dwconv_kernel_rec {
    qe_f32_dwconv_ukernel_fn fn;
    const char *name;
    qe_f32_dwconv_row_ukernel_fn row_fn;
} qe_f32_dwconv_kernel_rec;

static const qe_f32_dwconv_kernel_rec *qe_f32_dwconv_kernel_for_isa(int isa) {
    static const qe_f32_dwconv_kernel_rec scalar = {
        qe_f32_dwconv_minmax_ukernel__scalar, "qe_f32_dwconv_minmax_ukernel__scalar",
        qe_f32_dwconv_row_minmax_ukernel__scalar};
#ifdef QE_HAVE_X86_SIMD
    static const qe_f32_dwconv_kernel_rec avx2 = {
        qe_f32_dwconv_minmax_ukernel__avx2, "qe_f32_dwconv_minmax_ukernel__avx2",
        qe_f32_dwconv_row_minmax_ukernel__avx2};
    static const qe_f32_dwconv_kernel_rec avx512 = {
        qe_f32_dwconv_minmax_ukernel__avx512, "qe_f32_dwconv_minmax_ukernel__avx512",
        qe_f32_dwconv_row_minmax_ukernel__avx512};
    if (isa == QE_ISA_AVX512VNNI) return &avx512;
    if (isa == QE_ISA_AVX2) return &avx2;
#endif
    (void)isa;
    return &scalar;
}

typedef struct qe_f32_dwconv_args {
    qe_f32_window g;
    size_t n, c, m;           /* images, input channels, output channels (a multiple of c) */
    const float *x;           /* [n][c][h][w] */
    const float *w;           /* [m][kh·kw] */
    const float *bias;        /* [m] or NULL */
    qe_f32_minmax act;
    float *y;                 /* [n][m][oh][ow] */
    int isa, nthreads;
} qe_f32_dwconv_args;

/* Per-thread plane buffers: X' of one channel and one wide output raster. */
static float *qe_f32_plane_scratch(const qe_f32_wide *q) {
    return (float *)qe_workspace(QE_WS_TEAM, (q->chan + q->pixels + 16) * sizeof(float));
}

/* The rows path applies (a property of the shape, the same for every ISA). */
static int qe_f32_dwconv_by_rows(const qe_f32_window *g) {
    return g->sw == 1 && g->ow >= 16 && g->kw <= QE_F32_DWROW_MAX_KW;
}

static void qe_f32_dwconv_item_rows(const qe_f32_dwconv_args *a,
                                    const qe_f32_dwconv_kernel_rec *rec, size_t item) {
    const qe_f32_window *g = &a->g;
    const size_t img = item / a->c, ci = item % a->c, mult = a->m / a->c, taps = g->kh * g->kw;
    const qe_f32_dwrow rg = {g->h, g->w, g->oh, g->ow, g->kh, g->kw, g->sh, g->dh, g->dw,
                             g->pt, g->pl};
    for (size_t j = 0; j < mult; j++) {
        const size_t co = ci * mult + j;
        rec->row_fn(&rg, a->x + item * g->h * g->w, a->w + co * taps,
                    a->bias ? a->bias[co] : 0.0f, a->y + (img * a->m + co) * g->oh * g->ow,
                    &a->act);
    }
}

static int qe_f32_dwconv_item(const qe_f32_dwconv_args *a, const qe_f32_dwconv_kernel_rec *rec,
                              const qe_f32_wide *q, const ptrdiff_t *off, size_t item) {
    if (qe_f32_dwconv_by_rows(&a->g)) {
        qe_f32_dwconv_item_rows(a, rec, item);
        return QE_F32_OK;
    }
    const size_t img = item / a->c, ci = item % a->c, mult = a->m / a->c;
    const size_t hw = a->g.h * a->g.w, ohow = a->g.oh * a->g.ow, taps = a->g.kh * a->g.kw;
    const float *xp = a->x + item * hw;
    const int wide = q->wq != a->g.ow;
    float *buf = NULL;
    if (!q->direct || wide) {
        buf = qe_f32_plane_scratch(q);
        if (!buf) return QE_F32_ENOMEM;
    }
    if (!q->direct) {
        qe_f32_window_build(&a->g, q, xp, 0.0f, buf);
        xp = buf;
    }
    float *yw = buf ? buf + q->chan : NULL;
    for (size_t j = 0; j < mult; j++) {
        const size_t co = ci * mult + j;
        float *yp = a->y + (img * a->m + co) * ohow;
        rec->fn(q->pixels, taps, xp, off, a->w + co * taps, a->bias ? a->bias[co] : 0.0f,
                wide ? yw : yp, &a->act);
        if (wide) qe_f32_window_scatter(&a->g, q, yw, 0, 1, 0, q->pixels, yp, 0);
    }
    return QE_F32_OK;
}

static int qe_f32_dwconv2d(const qe_f32_dwconv_args *a) {
    const qe_f32_window *g = &a->g;
    if (!a->c || a->m % a->c || !g->kh || !g->kw || !g->sh || !g->sw || !g->dh || !g->dw)
        return QE_F32_EARG;
    if (!a->n || !a->m || !g->oh || !g->ow) return QE_F32_OK;
    const qe_f32_dwconv_kernel_rec *rec = qe_f32_dwconv_kernel_for_isa(a->isa);
    const qe_f32_wide q = qe_f32_wide_of(g);
    const size_t taps = g->kh * g->kw, items = a->n * a->c;
    ptrdiff_t *off = (ptrdiff_t *)qe_workspace(QE_WS_CALL, taps * sizeof(ptrdiff_t));
    if (!off) return QE_F32_ENOMEM;
    qe_f32_window_offsets(g, &q, off);
    int nt = qe_threads(a->nthreads);
    if ((double)a->n * a->m * g->oh * g->ow * taps < (double)QE_F32_PLANE_PAR_MIN_OPS) nt = 1;
    if ((size_t)nt > items) nt = (int)items;
    int err = QE_F32_OK;
    if (nt <= 1) {
        for (size_t it = 0; it < items && !err; it++) err = qe_f32_dwconv_item(a, rec, &q, off, it);
        return err;
    }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(dynamic, 1)
        for (size_t it = 0; it < items; it++) {
            const int e = qe_f32_dwconv_item(a, rec, &q, off, it);
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
