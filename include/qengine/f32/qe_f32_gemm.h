/* FP32 row-major GEMM, C[M][N] = clamp(A[M][K]·B + bias), B packed once as the transposed
 * convolution tile's weight panels (qe_f32_conv_pack_w_pc of Bᵀ = [N][K], groups 1).
 *
 * It is the pc microkernel (qe_f32_conv_params.h) with row r of A as "pixel" r (x[r] = A + r·lda,
 * off[i] = i) and a row-major store, plus the 4-panel GEMV kernel when M = 1 (a batch-1
 * projection). Both compute each output as one FMA chain from the bias in increasing k: the
 * same bits for any M, tiling, ISA or thread count. OpenMP over (row tiles × column panels)
 * items; no reduction is split. The FP32 recurrent layers use it for the input projection of
 * every time step (qe_f32_rnn.h).
 */
#ifndef QE_F32_GEMM_H
#define QE_F32_GEMM_H

#include "../qe_threads.h"
#include <string.h>
#include "qe_f32_conv.h"
#include "qe_f32_gemv_ukernel_4p__scalar.h"
#include "qe_f32_gemv_ukernel_4p__avx2.h"
#include "qe_f32_gemv_ukernel_4p__avx512.h"

#define QE_F32_GEMM_ROWS 64          /* rows per work item */

static qe_f32_gemv_ukernel_fn qe_f32_gemv_kernel_for_isa(int isa) {
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return qe_f32_gemv_ukernel_4p__avx512;
    if (isa == QE_ISA_AVX2) return qe_f32_gemv_ukernel_4p__avx2;
#endif
    (void)isa;
    return qe_f32_gemv_ukernel_4p__scalar;
}

/* y[0, n) = clamp(x·panels + bias) for panels [p0, p0 + np), np ≤ 4; a partial last panel
 * goes through a stack row (the kernel reads and writes whole panels). */
static void qe_f32_gemv_panels(qe_f32_gemv_ukernel_fn fn, size_t nr, size_t np, size_t k,
                               const float *x, const float *w, const float *bias, size_t n,
                               float *y, const qe_f32_minmax *act) {
    float row[4 * QE_F32_NR_MAX], brow[4 * QE_F32_NR_MAX];
    const int whole = np * nr <= n;
    const float *b = bias;
    if (!whole && bias) {
        memset(brow, 0, sizeof brow);
        memcpy(brow, bias, n * sizeof(float));
        b = brow;
    }
    fn(np, k, x, w, k * nr, b, whole ? y : row);
    float *out = whole ? y : row;
    const int clamp = act->lo != -INFINITY || act->hi != INFINITY;
    for (size_t j = 0; j < n && (clamp || !whole); j++) {
        float v = out[j];
        if (clamp) v = qe_f32_min__scalar(act->hi, qe_f32_max__scalar(act->lo, v));
        y[j] = v;
    }
}

typedef struct qe_f32_gemm_args {
    size_t m, n, k;
    const float *a;           /* [m][lda] */
    size_t lda;
    const float *w;           /* panels of the ISA's pc_nr columns, k × pc_nr each */
    size_t w_tile;            /* the nr the panels were packed with (checked) */
    const float *bias;        /* [n] or NULL */
    float *c;                 /* [m][ldc] */
    size_t ldc;
    qe_f32_minmax act;
    int isa, nthreads;
} qe_f32_gemm_args;

typedef struct qe_f32_gemm_ctx {
    const qe_f32_gemm_args *g;
    const qe_f32_conv_kernel_rec *rec;
    qe_f32_gemv_ukernel_fn gemv;
    const ptrdiff_t *off;
    size_t npanels, nrt, prt, pp, npc, items;
} qe_f32_gemm_ctx;

static void qe_f32_gemm_item(const qe_f32_gemm_ctx *t, size_t it) {
    const qe_f32_gemm_args *g = t->g;
    const size_t mr = t->rec->pc_mr, nr = t->rec->pc_nr;
    const size_t rc = it / t->npc, pc = it % t->npc;
    const size_t p0 = pc * t->pp, p1 = p0 + t->pp < t->npanels ? p0 + t->pp : t->npanels;
    if (g->m == 1) {
        for (size_t p = p0; p < p1; p += 4) {
            const size_t np = p1 - p < 4 ? p1 - p : 4, c0 = p * nr;
            const size_t n = g->n - c0 < np * nr ? g->n - c0 : np * nr;
            qe_f32_gemv_panels(t->gemv, nr, np, g->k, g->a, g->w + p * g->k * nr,
                               g->bias ? g->bias + c0 : NULL, n, g->c + c0, &g->act);
        }
        return;
    }
    const size_t r0 = rc * t->prt * mr;
    const size_t r1 = r0 + t->prt * mr < g->m ? r0 + t->prt * mr : g->m;
    const float *xr[QE_F32_GEMM_ROWS + QE_F32_CONV_PC_MR_MAX];
    for (size_t r = r0; r < r1 + mr; r++) xr[r - r0] = g->a + (r < g->m ? r : g->m - 1) * g->lda;
    for (size_t p = p0; p < p1; p++) {
        const size_t c0 = p * nr, nc = g->n - c0 < nr ? g->n - c0 : nr;
        const float *wp = g->w + p * g->k * nr;
        for (size_t r = r0; r < r1; r += mr) {
            const size_t rows = r1 - r < mr ? r1 - r : mr;
            t->rec->pc_fn(rows, nc, g->k, xr + (r - r0), t->off, wp,
                          g->bias ? g->bias + c0 : NULL, g->c + r * g->ldc + c0, g->ldc, 1,
                          &g->act);
        }
    }
}

/* Returns QE_F32_OK, QE_F32_ENOMEM or QE_F32_EARG. */
static int qe_f32_gemm(const qe_f32_gemm_args *g) {
    qe_f32_gemm_ctx t;
    t.g = g;
    t.rec = qe_f32_conv_kernel_for_isa(g->isa);
    t.gemv = qe_f32_gemv_kernel_for_isa(g->isa);
    if (g->w_tile != t.rec->pc_nr || !g->k) return QE_F32_EARG;
    if (!g->m || !g->n) return QE_F32_OK;
    ptrdiff_t *off = (ptrdiff_t *)qe_workspace(QE_WS_CALL, g->k * sizeof(ptrdiff_t));
    if (!off) return QE_F32_ENOMEM;
    for (size_t i = 0; i < g->k; i++) off[i] = (ptrdiff_t)i;
    t.off = off;
    const size_t mr = t.rec->pc_mr;
    t.npanels = (g->n + t.rec->pc_nr - 1) / t.rec->pc_nr;
    t.prt = QE_F32_GEMM_ROWS / mr;                         /* row tiles per item */
    t.nrt = g->m == 1 ? 1 : ((g->m + mr - 1) / mr + t.prt - 1) / t.prt;
    int nt = qe_threads(g->nthreads);
    if ((double)g->m * g->n * g->k < (double)QE_F32_CONV_PAR_MIN_MACS) nt = 1;
    /* panels per item: all, split until there are 4 items per thread (multiples of 4 panels
     * keep the GEMV kernel on its 4-panel path) */
    t.pp = t.npanels;
    while (t.nrt * ((t.npanels + t.pp - 1) / t.pp) < (size_t)4 * nt && t.pp > 4)
        t.pp = (t.pp / 2 + 3) / 4 * 4;
    t.npc = (t.npanels + t.pp - 1) / t.pp;
    t.items = t.nrt * t.npc;
    if (nt <= 1) {
        for (size_t it = 0; it < t.items; it++) qe_f32_gemm_item(&t, it);
        return QE_F32_OK;
    }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(dynamic, 1)
        for (size_t it = 0; it < t.items; it++) qe_f32_gemm_item(&t, it);
    }
#endif
    return QE_F32_OK;
}

#endif
