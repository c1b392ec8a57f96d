/* FP32 2-D convolution driver, NCHW → NCHW (groups, strides, dilations, pads), no im2col.
 *
 * Per image: build X', the phase-split padded input of every channel (qe_f32_window.h; skipped
 * when the input can be read as it is: stride 1 without padding, e.g. every 1×1 convolution
 * with stride 1), then cover each group's output with microkernel tiles (qe_f32_conv_params.h)
 * in one of two orientations:
 *   cp — MR channels × NR consecutive wide pixels: the reduction index i = (c, ky, kx) of a tile
 *        reads X'[off[i] + p'] for its NR pixels, one vector load (an offset-table GEMM whose
 *        B operand is the input itself). Lanes on the wide raster's throw-away columns and the
 *        last partial tile are wasted: 22 % on a 7×7 plane.
 *   pc — MR pixels × NR channels: each pixel is broadcast from its own X' pointer, so only real
 *        pixels are computed, while the channels fill whole vectors when Mg is a multiple of NR.
 * qe_f32_conv_orientation picks the one that computes fewer lanes for the layer (pc for
 * ResNet's 64..512-channel layers, cp for channel counts like 24 or 144); the weights are packed
 * for it once, at load or first use (qe_f32_conv_pack_w / _pc). Nothing is packed per call but
 * the copy of the input into X'.
 *
 * Threads: OpenMP over work items of whole tiles — (group, block of pixel tiles, block of
 * channel tiles) — handed out dynamically (on a shared 2-vCPU VM a descheduled thread then
 * delays only its current item); every output is produced by exactly one microkernel call
 * over the full reduction, so results do not depend on the thread count, the blocking or
 * which thread ran an item.
 * Tiles of a wide raster with throw-away columns are written to a stack tile and scattered.
 */
#ifndef QE_F32_CONV_H
#define QE_F32_CONV_H

#include "../qe_threads.h"
#include <stdint.h>
#include <string.h>
#include "../qe_cpu.h"
#include "qe_f32_window.h"
#include "qe_f32_conv_params.h"
#include "qe_f32_conv_minmax_ukernel_4x8__scalar.h"
#include "qe_f32_conv_minmax_ukernel_6x16__avx2.h"
#include "qe_f32_conv_minmax_ukernel_8x32__avx512.h"
#include "qe_f32_conv_pc_minmax_ukernel_4x8__scalar.h"
#include "qe_f32_conv_pc_minmax_ukernel_6x16__avx2.h"
#include "qe_f32_conv_pc_minmax_ukernel_8x32__avx512.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_F32_CONV_PAR_MIN_MACS (1 << 18)  /* below: one thread (fork/join costs more) */
#define QE_F32_CONV_TILE_PIXELS 256         /* cp: pixels per work item (X' window reuse) */
#define QE_F32_CONV_PC_PIXELS 64            /* pc: pixels per work item */
#define QE_F32_CONV_PC_MR_MAX 8

enum { QE_F32_OK = 0, QE_F32_ENOMEM = -2, QE_F32_EARG = -4 };
enum { QE_F32_CONV_CP = 0, QE_F32_CONV_PC = 1 };

/* One ISA's two tiles; a packing is only ever read by the kernel of its orientation and tile. */
typedef struct qe_f32_conv_kernel_rec {
    qe_f32_conv_ukernel_fn fn;
    const char *name;
    size_t mr, nr;
    qe_f32_conv_pc_ukernel_fn pc_fn;
    const char *pc_name;
    size_t pc_mr, pc_nr;
} qe_f32_conv_kernel_rec;

static const qe_f32_conv_kernel_rec *qe_f32_conv_kernel_for_isa(int isa) {
    static const qe_f32_conv_kernel_rec scalar = {
        qe_f32_conv_minmax_ukernel_4x8__scalar, "qe_f32_conv_minmax_ukernel_4x8__scalar", 4, 8,
        qe_f32_conv_pc_minmax_ukernel_4x8__scalar, "qe_f32_conv_pc_minmax_ukernel_4x8__scalar",
        4, 8};
#ifdef QE_HAVE_X86_SIMD
    static const qe_f32_conv_kernel_rec avx2 = {
        qe_f32_conv_minmax_ukernel_6x16__avx2, "qe_f32_conv_minmax_ukernel_6x16__avx2", 6, 16,
        qe_f32_conv_pc_minmax_ukernel_6x16__avx2, "qe_f32_conv_pc_minmax_ukernel_6x16__avx2",
        6, 16};
    static const qe_f32_conv_kernel_rec avx512 = {
        qe_f32_conv_minmax_ukernel_8x32__avx512, "qe_f32_conv_minmax_ukernel_8x32__avx512", 8,
        32, qe_f32_conv_pc_minmax_ukernel_8x32__avx512,
        "qe_f32_conv_pc_minmax_ukernel_8x32__avx512", 8, 32};
    if (isa == QE_ISA_AVX512VNNI) return &avx512;
    if (isa == QE_ISA_AVX2) return &avx2;
#endif
    (void)isa;
    return &scalar;
}

/* Floats of the packed weights for `groups` groups of (m / groups) rows × k. */
static size_t qe_f32_conv_packed_floats(size_t mr, size_t m, size_t k, size_t groups) {
    const size_t mg = m / groups, nmb = (mg + mr - 1) / mr;
    return groups * nmb * k * mr;
}

/* w [m][k] (OIHW with k = (Cin/groups)·kh·kw) → per group, per block of mr rows, k × mr. */
static void qe_f32_conv_pack_w(size_t mr, const float *w, size_t m, size_t k, size_t groups,
                               float *dst) {
    const size_t mg = m / groups, nmb = (mg + mr - 1) / mr;
    for (size_t g = 0; g < groups; g++)
        for (size_t b = 0; b < nmb; b++) {
            float *d = dst + (g * nmb + b) * k * mr;
            for (size_t i = 0; i < k; i++)
                for (size_t r = 0; r < mr; r++) {
                    const size_t row = b * mr + r;
                    d[i * mr + r] = row < mg ? w[(g * mg + row) * k + i] : 0.0f;
                }
        }
}

/* w [m][k] → per group, per block of nr channels, k × nr (the pc weight panels). */
static void qe_f32_conv_pack_w_pc(size_t nr, const float *w, size_t m, size_t k, size_t groups,
                                  float *dst) {
    const size_t mg = m / groups, ncb = (mg + nr - 1) / nr;
    for (size_t g = 0; g < groups; g++)
        for (size_t b = 0; b < ncb; b++) {
            float *d = dst + (g * ncb + b) * k * nr;
            for (size_t i = 0; i < k; i++)
                for (size_t c = 0; c < nr; c++) {
                    const size_t ch = b * nr + c;
                    d[i * nr + c] = ch < mg ? w[(g * mg + ch) * k + i] : 0.0f;
                }
        }
}

static size_t qe_f32_round_up(size_t v, size_t q) { return (v + q - 1) / q * q; }

/* The orientation that computes fewer lanes. A pc tile also pays for its transposing store,
 * measured at about 8 reduction steps' worth (Zen 4): it decides short reductions (a 7×7 stem
 * over 3 channels, k = 147, stays cp). Ties go to cp. */
static int qe_f32_conv_orientation(int isa, const qe_f32_window *g, size_t c, size_t m,
                                   size_t groups) {
    const qe_f32_conv_kernel_rec *r = qe_f32_conv_kernel_for_isa(isa);
    const qe_f32_wide q = qe_f32_wide_of(g);
    const size_t mg = m / groups, k = c / groups * g->kh * g->kw;
    const double cp = (double)qe_f32_round_up(mg, r->mr) * qe_f32_round_up(q.pixels, r->nr);
    const double pc = (double)qe_f32_round_up(g->oh * g->ow, r->pc_mr) *
                      qe_f32_round_up(mg, r->pc_nr) * (1.0 + 8.0 / (double)(k ? k : 1));
    return pc < cp ? QE_F32_CONV_PC : QE_F32_CONV_CP;
}

typedef struct qe_f32_conv_args {
    qe_f32_window g;          /* g.h, g.w: input plane; g.oh, g.ow: output plane */
    size_t n, c, m, groups;   /* images, input channels, output channels */
    const float *x;           /* [n][c][h][w] */
    const float *w;           /* packed by qe_f32_conv_pack_w (cp) or _pc with this ISA's tile */
    int orientation;          /* QE_F32_CONV_CP or QE_F32_CONV_PC */
    size_t w_tile;            /* the mr (cp) or nr (pc) the weights were packed with (checked) */
    const float *bias;        /* [m] or NULL */
    qe_f32_minmax act;
    float *y;                 /* [n][m][oh][ow] */
    int isa, nthreads;
} qe_f32_conv_args;

typedef struct qe_f32_conv_ctx {
    const qe_f32_conv_args *a;
    const qe_f32_conv_kernel_rec *rec;
    qe_f32_wide q;
    size_t cg, mg, k, nmb, npt;       /* nmb, npt: channel blocks and pixel tiles */
    size_t pc, mc, npc, nmc, items;   /* pixel tiles / channel blocks per item and counts */
    float *xw;                        /* X' of the current image (or NULL: direct) */
    const ptrdiff_t *off;             /* [k], relative to the group's first channel */
} qe_f32_conv_ctx;

static void qe_f32_conv_build(const qe_f32_conv_ctx *t, size_t img, size_t c) {
    const qe_f32_conv_args *a = t->a;
    qe_f32_window_build(&a->g, &t->q, a->x + (img * a->c + c) * a->g.h * a->g.w, 0.0f,
                        t->xw + c * t->q.chan);
}

static void qe_f32_conv_item(const qe_f32_conv_ctx *t, size_t img, size_t it) {
    const qe_f32_conv_args *a = t->a;
    const qe_f32_conv_kernel_rec *rec = t->rec;
    const size_t mr = rec->mr, nr = rec->nr, ohow = a->g.oh * a->g.ow;
    const size_t g = it / (t->npc * t->nmc), rem = it % (t->npc * t->nmc);
    const size_t pc = rem / t->nmc, mc = rem % t->nmc;
    const float *xg = t->xw ? t->xw + g * t->cg * t->q.chan
                            : a->x + (img * a->c + g * t->cg) * a->g.h * a->g.w;
    float *yg = a->y + (img * a->m + g * t->mg) * ohow;
    const int wide = t->q.wq != a->g.ow;
    float tile[QE_F32_MR_MAX * QE_F32_NR_MAX] __attribute__((aligned(64)));
    const size_t mb1 = (mc + 1) * t->mc < t->nmb ? (mc + 1) * t->mc : t->nmb;
    const size_t pt1 = (pc + 1) * t->pc < t->npt ? (pc + 1) * t->pc : t->npt;
    for (size_t mb = mc * t->mc; mb < mb1; mb++) {
        const float *wb = a->w + (g * t->nmb + mb) * t->k * mr;
        const size_t m0 = mb * mr, rows = t->mg - m0 < mr ? t->mg - m0 : mr;
        const float *bias = a->bias ? a->bias + g * t->mg + m0 : NULL;
        for (size_t pt = pc * t->pc; pt < pt1; pt++) {
            const size_t p0 = pt * nr, nc = t->q.pixels - p0 < nr ? t->q.pixels - p0 : nr;
            if (!wide) {
                rec->fn(rows, nc, t->k, wb, xg + p0, t->off, bias, yg + m0 * ohow + p0, ohow,
                        &a->act);
            } else {
                rec->fn(rows, nc, t->k, wb, xg + p0, t->off, bias, tile, nr, &a->act);
                qe_f32_window_scatter(&a->g, &t->q, tile, nr, rows, p0, nc, yg + m0 * ohow,
                                      ohow);
            }
        }
    }
}

static void qe_f32_conv_item_pc(const qe_f32_conv_ctx *t, size_t img, size_t it) {
    const qe_f32_conv_args *a = t->a;
    const qe_f32_conv_kernel_rec *rec = t->rec;
    const size_t mr = rec->pc_mr, nr = rec->pc_nr, ohow = a->g.oh * a->g.ow;
    const size_t g = it / (t->npc * t->nmc), rem = it % (t->npc * t->nmc);
    const size_t pc = rem / t->nmc, mc = rem % t->nmc;
    const float *xg = t->xw ? t->xw + g * t->cg * t->q.chan
                            : a->x + (img * a->c + g * t->cg) * a->g.h * a->g.w;
    float *yg = a->y + (img * a->m + g * t->mg) * ohow;
    const size_t pt0 = pc * t->pc, pt1 = pt0 + t->pc < t->npt ? pt0 + t->pc : t->npt;
    const size_t cb1 = (mc + 1) * t->mc < t->nmb ? (mc + 1) * t->mc : t->nmb;
    /* one X' pointer per pixel of the item; a tail tile repeats its last pixel */
    const float *xr[QE_F32_CONV_PC_PIXELS + QE_F32_CONV_PC_MR_MAX];
    for (size_t i = 0; i < (pt1 - pt0) * mr; i++) {
        size_t p = pt0 * mr + i;
        if (p >= ohow) p = ohow - 1;
        xr[i] = xg + (p / a->g.ow) * t->q.wq + p % a->g.ow;
    }
    for (size_t cb = mc * t->mc; cb < cb1; cb++) {
        const float *wb = a->w + (g * t->nmb + cb) * t->k * nr;
        const size_t c0 = cb * nr, nc = t->mg - c0 < nr ? t->mg - c0 : nr;
        const float *bias = a->bias ? a->bias + g * t->mg + c0 : NULL;
        for (size_t pt = pt0; pt < pt1; pt++) {
            const size_t p0 = pt * mr, rows = ohow - p0 < mr ? ohow - p0 : mr;
            rec->pc_fn(rows, nc, t->k, xr + (pt - pt0) * mr, t->off, wb, bias,
                       yg + c0 * ohow + p0, ohow, 0, &a->act);
        }
    }
}

/* Returns QE_F32_OK, QE_F32_ENOMEM or QE_F32_EARG. */
static int qe_f32_conv2d(const qe_f32_conv_args *a) {
    const qe_f32_window *g = &a->g;
    if (!a->groups || a->c % a->groups || a->m % a->groups || !g->kh || !g->kw || !g->sh ||
        !g->sw || !g->dh || !g->dw)
        return QE_F32_EARG;
    qe_f32_conv_ctx t;
    t.a = a;
    t.rec = qe_f32_conv_kernel_for_isa(a->isa);
    const int pcw = a->orientation == QE_F32_CONV_PC;
    if ((a->orientation != QE_F32_CONV_CP && !pcw) ||
        a->w_tile != (pcw ? t.rec->pc_nr : t.rec->mr))
        return QE_F32_EARG;
    if (!a->n || !a->m || !g->oh || !g->ow) return QE_F32_OK;
    t.q = qe_f32_wide_of(g);
    t.cg = a->c / a->groups;
    t.mg = a->m / a->groups;
    t.k = t.cg * g->kh * g->kw;
    if (!t.k) return QE_F32_EARG;
    /* cp: channel blocks of mr × wide pixel tiles of nr; pc: channel blocks of pc_nr × compact
     * pixel tiles of pc_mr */
    t.nmb = pcw ? (t.mg + t.rec->pc_nr - 1) / t.rec->pc_nr : (t.mg + t.rec->mr - 1) / t.rec->mr;
    t.npt = pcw ? (g->oh * g->ow + t.rec->pc_mr - 1) / t.rec->pc_mr
                : (t.q.pixels + t.rec->nr - 1) / t.rec->nr;

    int nt = qe_threads(a->nthreads);
    if ((double)a->m * t.k * g->oh * g->ow < (double)QE_F32_CONV_PAR_MIN_MACS) nt = 1;
    /* Items: blocks of pixel tiles × all channel blocks of a group; split the channel blocks
     * when that leaves fewer than 4 items per thread (late layers: few pixels). */
    t.pc = pcw ? QE_F32_CONV_PC_PIXELS / t.rec->pc_mr
               : (QE_F32_CONV_TILE_PIXELS + t.rec->nr - 1) / t.rec->nr;
    t.npc = (t.npt + t.pc - 1) / t.pc;
    t.nmc = 1;
    while (a->groups * t.npc * t.nmc < (size_t)4 * nt && t.nmc < t.nmb) t.nmc *= 2;
    t.mc = (t.nmb + t.nmc - 1) / t.nmc;
    t.nmc = (t.nmb + t.mc - 1) / t.mc;
    t.items = a->groups * t.npc * t.nmc;

    const size_t xw_floats = t.q.direct ? 0 : a->c * t.q.chan;
    char *ws = (char *)qe_workspace(QE_WS_CALL, t.k * sizeof(ptrdiff_t) + xw_floats * 4 + 64);
    if (!ws) return QE_F32_ENOMEM;
    ptrdiff_t *off = (ptrdiff_t *)ws;
    t.xw = t.q.direct ? NULL : (float *)(ws + ((t.k * sizeof(ptrdiff_t) + 63) & ~(size_t)63));
    {
        const size_t taps = g->kh * g->kw;
        qe_f32_window_offsets(g, &t.q, off);
        for (size_t c = 1; c < t.cg; c++)
            for (size_t i = 0; i < taps; i++) off[c * taps + i] = off[i] + (ptrdiff_t)(c * t.q.chan);
    }
    t.off = off;

    if (nt <= 1) {
        for (size_t img = 0; img < a->n; img++) {
            if (t.xw)
                for (size_t c = 0; c < a->c; c++) qe_f32_conv_build(&t, img, c);
            for (size_t it = 0; it < t.items; it++)
                (pcw ? qe_f32_conv_item_pc : qe_f32_conv_item)(&t, img, it);
        }
        return QE_F32_OK;
    }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        for (size_t img = 0; img < a->n; img++) {
            if (t.xw) {
                #pragma omp for schedule(static)
                for (size_t c = 0; c < a->c; c++) qe_f32_conv_build(&t, img, c);
            }
            #pragma omp for schedule(dynamic, 1)
            for (size_t it = 0; it < t.items; it++)
                (pcw ? qe_f32_conv_item_pc : qe_f32_conv_item)(&t, img, it);
        }
    }
#endif
    return QE_F32_OK;
}

#endif
