/* The integer GEMM driver: C, GIL-free, callable from any extension that includes this header
 * (every including module gets its own static copy; the only shared state is the process-wide
 * thread count and workspaces of qe_threads.h). src_pyx/qe_gemm.pxd declares it for Cython;
 * qengine/functional.py wraps it.
 *
 *   y[m, n] = epilogue( Σ_k (a[m,k] − z_a[m]) · (w[n,k] − z_w[n]) )        m < M, n < N
 *
 * Entry points (all return 0 or a negative QE_GEMM_E* code; they never abort):
 *   qe_gemm_kernel_for_isa(isa)                       -> dispatch record or NULL
 *   qe_gemm_packed_w_bytes(rec, n, k)                 -> bytes for packed weights
 *   qe_gemm_pack_weights(isa, n, k, w, ldw, out, colsum)   once per weight matrix
 *   qe_gemm_workspace_bytes(isa, m, k)                -> scratch a call needs (0 if isa bad)
 *   qe_gemm(isa, m, a, lda, &w, &ep, out, ldc, nthreads, ws, ws_bytes)
 *       a: uint8 [m, lda ≥ K]; out: [m, ldc ≥ N] of the epilogue's type; nthreads ≤ 0 = the
 *       process-wide setting (qe_threads.h), which also caps a larger count; ws may be NULL
 *       (then the calling thread's QE_WS_CALL workspace) or ≥ workspace_bytes, 64-aligned not
 *       required. Problems under QE_GEMM_PAR_MIN_MACS run on the calling thread only.
 *   qe_gemm_ex(..., res): qe_gemm with a residual QAdd fused into the U8 epilogue (res may be
 *       NULL): each output tile, once requantized, becomes QAdd(tile, skip tile) in place
 *       (../eltwise/qe_u8_residual.h) — the bytes of qe_u8_binary run over the whole output.
 *   qe_gemm_linear_dynamic(...) in qe_gemm_dynamic.h: f32 → u8 quantize + GEMM + f32 epilogue.
 *
 * Direct A: with K % KR == 0, M ≥ MR, z_w = 0 and no F32 epilogue, the record's igemm kernels
 * read A's rows in place (qe_gemm_can_direct) and the packing pass below is skipped: at N = 64
 * each A panel feeds only two W panels and that pass cost a fifth of the time.
 * Tiling: A is packed once per call into MR-row panels (in parallel), then OpenMP hands out
 * output tiles of (MC_PANELS·MR) × (NC_PANELS·NR); within a tile the loop runs over W panels
 * outside and A panels inside, so one W panel (K·NR bytes) is reused from L1/L2 by every A
 * panel and the A block (MC_PANELS·MR·K bytes) stays in L2 across the tile's W panels.
 * Each microkernel call covers the whole K: the tile of accumulators never leaves registers,
 * and at the kernel's ~7 bytes/cycle of A+W traffic L2 keeps up without K blocking.
 */
#ifndef QE_GEMM_H
#define QE_GEMM_H

#include "../qe_threads.h"
#include <stdlib.h>
#include <string.h>
#include "../qe_cpu.h"
#include "../qe_target.h"
#include "qe_gemm_params.h"
#include "qe_gemm_pack.h"
#include "qe_gemm_epilogue__scalar.h"
#include "qe_gemm_epilogue__avx2.h"
#include "qe_gemm_epilogue__avx512.h"
#include "qe_u8_s8_gemm_ukernel_4x4c4__scalar.h"
#include "qe_u8_s8_gemm_ukernel_4x16c2__avx2.h"
#include "qe_u8_s8_gemm_minmax_ukernel_4x16c2__avx2.h"
#include "qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni.h"
#include "qe_u8_s8_gemm_minmax_ukernel_12x32c4__avx512vnni.h"
#include "qe_u8_s8_gemm_dequant_ukernel_12x32c4__avx512vnni.h"
#include "qe_u8_s8_igemm_ukernel_12x32c4__avx512vnni.h"
#include "qe_u8_s8_igemm_minmax_ukernel_12x32c4__avx512vnni.h"
#include "qe_u8_s8_gemm_ukernel_4x16c4__neondot.h"
#include "qe_u8_s8_gemv_ukernel_1x4p__avx2.h"
#include "qe_u8_s8_gemv_ukernel_1x4p__avx512vnni.h"
#include "qe_u8_s8_gemv_dequant_ukernel_1x4p__avx512vnni.h"
#include "../eltwise/qe_u8_residual.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    QE_GEMM_OK = 0,
    QE_GEMM_EISA = -1,      /* no kernel for that ISA in this build, or W packed for another */
    QE_GEMM_ENOMEM = -2,
    QE_GEMM_EK = -3,        /* K outside [1, QE_GEMM_MAX_K] (or QE_GEMM_MAX_K_WZP with z_w) */
    QE_GEMM_EARG = -4,      /* inconsistent sizes/strides/epilogue */
};

#define QE_GEMM_PAR_MIN_MACS (1 << 21)   /* ~10 us of work: below, a fork/join (futex wake of a
                                            * sleeping vCPU: ~20 us here) costs more than it saves */
#define QE_GEMM_MC_PANELS 8
#define QE_GEMM_NC_COLS 256

static const qe_gemm_kernel_rec qe_gemm_kernels[] = {
#define QE_GEMM_KERNEL(isa, uk, epi, gv, rq, dq, gvdq, ig, igrq, mr, nr, kr, kpad, elem) \
    {#uk, isa, mr, nr, kr, kpad, elem, uk, epi, gv, rq, dq, gvdq, ig, igrq},
#include "qe_gemm_kernels.inc"
#undef QE_GEMM_KERNEL
};
#define QE_GEMM_NKERNELS ((int)(sizeof(qe_gemm_kernels) / sizeof(qe_gemm_kernels[0])))

static const qe_gemm_kernel_rec *qe_gemm_kernel_for_isa(int isa) {
    for (int i = 0; i < QE_GEMM_NKERNELS; i++)
        if (qe_gemm_kernels[i].isa == isa) return &qe_gemm_kernels[i];
    return NULL;
}

static int qe_gemm_pack_weights(int isa, size_t n, size_t k, const int8_t *w, size_t ldw,
                                void *out, int32_t *colsum) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r) return QE_GEMM_EISA;
    if (k < 1 || k > QE_GEMM_MAX_K) return QE_GEMM_EK;
    if (ldw < k) return QE_GEMM_EARG;
    qe_gemm_pack_w(r, n, k, w, ldw, out, colsum);
    return QE_GEMM_OK;
}

static size_t qe_gemm_workspace_bytes(int isa, size_t m, size_t k) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r) return 0;
    return qe_gemm_packed_a_bytes(r, m, k) + 2 * qe_gemm_round_up(m + 1, 16) * sizeof(int32_t) + 64;
}

typedef struct qe_gemm_ctx {
    const qe_gemm_kernel_rec *r;
    const qe_packed_w *w;
    const qe_gemm_epilogue *ep;
    const qe_u8_residual *res;          /* NULL, or the QAdd applied to each finished tile */
    const uint8_t *apack;
    const uint8_t *a;                  /* direct: A itself, read in place by the igemm kernels */
    int32_t *rterm;
    void *out;
    size_t m, lda, ldc, kg, mcp, ncp, mpanels, npanels, ntm;
    int direct;
    int tile_pack;                     /* A packed per tile into the thread's block of apack */
} qe_gemm_ctx;

/* The fused requantizing microkernel applies when the record has one and the epilogue is the
 * static one with nothing row-dependent left: z_a folded into col_bias and z_w = 0. */
static inline int qe_gemm_can_fuse(const qe_gemm_kernel_rec *r, const qe_packed_w *w,
                                   const qe_gemm_epilogue *ep) {
    return r->ukernel_requant && (ep->kind == QE_EPI_U8 || ep->kind == QE_EPI_S8) && !ep->a_zp &&
           !w->w_zp;
}

/* The fused dequantizing kernels apply to F32 epilogues with symmetric weights and no col_bias
 * (every dynamic-quantization GEMM). */
static inline int qe_gemm_can_dequant(const qe_gemm_kernel_rec *r, const qe_packed_w *w,
                                      const qe_gemm_epilogue *ep) {
    return r->ukernel_dequant && ep->kind == QE_EPI_F32 && !w->w_zp && !ep->col_bias;
}

/* A is read in place by the record's igemm kernels (no packing pass) when its rows hold whole
 * K-groups, there are rows enough for full panels, and nothing needs the packer's row sums (z_w)
 * or the fused dequantizing kernel (the F32 epilogue keeps the packed path and its fusion). */
static inline int qe_gemm_can_direct(const qe_gemm_kernel_rec *r, size_t m, const qe_packed_w *w,
                                     const qe_gemm_epilogue *ep) {
    return r->igemm && r->igemm_requant && m >= (size_t)r->mr && w->k % r->kr == 0 && !w->w_zp &&
           !qe_gemm_can_dequant(r, w, ep);
}

/* The dequant tile of output (m0, n0), nr columns. */
static inline qe_gemm_dequant_tile qe_gemm_dequant_tile_at(const qe_packed_w *w,
                                                           const qe_gemm_epilogue *ep, float *out,
                                                           size_t ldc, size_t m0, size_t n0,
                                                           size_t nr) {
    const size_t r0 = m0 * (size_t)ep->row_step;
    const qe_gemm_dequant_tile q = {w->colsum + n0, ep->w_scale + n0,
                                    ep->bias ? ep->bias + n0 : NULL,
                                    ep->a_zp ? ep->a_zp + r0 : NULL, ep->a_scale + r0,
                                    out + m0 * ldc + n0, ldc, nr, (size_t)ep->row_step,
                                    ep->accumulate};
    return q;
}

static inline qe_gemm_requant_tile qe_gemm_requant_tile_at(const qe_gemm_epilogue *ep, void *out,
                                                           size_t ldc, size_t n0, size_t nr) {
    const qe_gemm_requant_tile q = {ep->col_bias ? ep->col_bias + n0 : NULL, ep->multiplier + n0,
                                    out, ldc, nr, ep->out_zp, ep->lo, ep->hi};
    return q;
}

/* The fused residual add on the finished tile of A panels pm0..pm1 × W panels pn0..pn1. */
static void qe_gemm_residual_tile(const qe_gemm_ctx *x, size_t pm0, size_t pm1, size_t pn0,
                                  size_t pn1) {
    const size_t mr = (size_t)x->r->mr, nr = (size_t)x->r->nr, n = (size_t)x->w->n;
    const size_t m1 = pm1 * mr < x->m ? pm1 * mr : x->m, n1 = pn1 * nr < n ? pn1 * nr : n;
    qe_u8_residual_block(x->res, (uint8_t *)x->out, x->ldc, pm0 * mr, m1 - pm0 * mr, pn0 * nr,
                         n1 - pn0 * nr);
}

static void qe_gemm_run_tile(const qe_gemm_ctx *x, size_t t, int tid) {
    const qe_gemm_kernel_rec *r = x->r;
    int32_t ct[QE_GEMM_MR_MAX * QE_GEMM_NR_MAX] __attribute__((aligned(64)));
    const size_t tm = t % x->ntm, tn = t / x->ntm;
    const size_t pm0 = tm * x->mcp, pm1 = pm0 + x->mcp < x->mpanels ? pm0 + x->mcp : x->mpanels;
    const size_t pn0 = tn * x->ncp, pn1 = pn0 + x->ncp < x->npanels ? pn0 + x->ncp : x->npanels;
    const size_t apanel = (size_t)r->mr * x->kg * r->kr * r->elem;
    const size_t wpanel = (size_t)r->nr * x->kg * r->kr * r->elem;
    const int dequant = qe_gemm_can_dequant(r, x->w, x->ep);
    /* panel pm of A is at ap + (pm − pbase)·apanel */
    const uint8_t *ap = x->apack;
    size_t pbase = 0;
    if (x->tile_pack) {
        uint8_t *buf = (uint8_t *)x->apack + (size_t)tid * x->mcp * apanel;
        const size_t m0 = pm0 * (size_t)r->mr;
        qe_gemm_pack_a(r, x->m - m0, (size_t)x->w->k, x->a + m0 * x->lda, x->lda, 0, pm1 - pm0,
                       buf, NULL);
        ap = buf;
        pbase = pm0;
    }
    if (x->m == 1 && r->gemv) {
        /* one row: several W panels per call keep independent accumulator chains busy */
        const size_t a_stride = (size_t)r->mr * r->kr * r->elem;
        for (size_t pn = pn0; pn < pn1; pn += 4) {
            const size_t np = pn1 - pn < 4 ? pn1 - pn : 4, n0 = pn * r->nr;
            const size_t nr = (size_t)x->w->n - n0 < np * r->nr ? (size_t)x->w->n - n0 : np * r->nr;
            if (dequant && r->gemv_dequant) {
                const qe_gemm_dequant_tile q =
                    qe_gemm_dequant_tile_at(x->w, x->ep, (float *)x->out, x->ldc, 0, n0, nr);
                r->gemv_dequant(np, x->kg, x->apack, a_stride,
                                (const char *)x->w->data + pn * wpanel, wpanel, &q);
                continue;
            }
            r->gemv(np, x->kg, x->apack, a_stride, (const char *)x->w->data + pn * wpanel, wpanel,
                    ct);
            const qe_gemm_tile tile = {ct, np * (size_t)r->nr, 1, nr, 0, n0,
                                       x->rterm ? x->rterm : NULL};
            r->epilogue(&tile, x->w, x->ep, x->out, x->ldc);
        }
        if (x->res) qe_gemm_residual_tile(x, 0, 1, pn0, pn1);
        return;
    }
    const size_t esize = x->ep->kind == QE_EPI_INT32 || x->ep->kind == QE_EPI_F32 ? 4 : 1;
    const int fused = qe_gemm_can_fuse(r, x->w, x->ep);
    const size_t kc = (size_t)x->w->k / r->kr;
    /* the INT32 epilogue with one z_a (and z_w = 0, as direct implies) fuses into igemm */
    const int int32_fused = x->ep->kind == QE_EPI_INT32 && (!x->ep->a_zp || x->ep->row_step == 0);
    const uint8_t *rows[QE_GEMM_MR_MAX];
    for (size_t pn = pn0; pn < pn1; pn++) {
        const size_t n0 = pn * r->nr, nr = (size_t)x->w->n - n0 < (size_t)r->nr ? (size_t)x->w->n - n0 : (size_t)r->nr;
        const char *wp = (const char *)x->w->data + pn * wpanel;
        for (size_t pm = pm0; pm < pm1; pm++) {
            const size_t m0 = pm * r->mr, mr = x->m - m0 < (size_t)r->mr ? x->m - m0 : (size_t)r->mr;
            if (x->direct) {
                for (size_t i = 0; i < mr; i++) rows[i] = x->a + (m0 + i) * x->lda;
                if (fused) {
                    const qe_gemm_requant_tile q = qe_gemm_requant_tile_at(
                        x->ep, (char *)x->out + (m0 * x->ldc + n0) * esize, x->ldc, n0, nr);
                    r->igemm_requant(mr, 1, kc, rows, wp, &q);
                    continue;
                }
                if (int32_fused) {
                    const qe_gemm_int32_tile q = {(int32_t *)x->out + m0 * x->ldc + n0, x->ldc, nr,
                                                  x->w->colsum + n0,
                                                  x->ep->col_bias ? x->ep->col_bias + n0 : NULL,
                                                  x->ep->a_zp ? x->ep->a_zp[0] : 0};
                    r->igemm(mr, 1, kc, rows, wp, &q);
                    continue;
                }
                const qe_gemm_int32_tile q = {ct, (size_t)r->nr, (size_t)r->nr, NULL, NULL, 0};
                r->igemm(mr, 1, kc, rows, wp, &q);
                const qe_gemm_tile tile = {ct, (size_t)r->nr, mr, nr, m0, n0, NULL};
                r->epilogue(&tile, x->w, x->ep, x->out, x->ldc);
                continue;
            }
            if (fused) {
                const qe_gemm_requant_tile q = qe_gemm_requant_tile_at(
                    x->ep, (char *)x->out + (m0 * x->ldc + n0) * esize, x->ldc, n0, nr);
                r->ukernel_requant(mr, x->kg, ap + (pm - pbase) * apanel, wp, &q);
                continue;
            }
            if (dequant) {
                const qe_gemm_dequant_tile q =
                    qe_gemm_dequant_tile_at(x->w, x->ep, (float *)x->out, x->ldc, m0, n0, nr);
                r->ukernel_dequant(mr, x->kg, ap + (pm - pbase) * apanel, wp, &q);
                continue;
            }
            r->ukernel(mr, x->kg, ap + (pm - pbase) * apanel, wp, ct, 0);
            const qe_gemm_tile tile = {ct, (size_t)r->nr, mr, nr, m0, n0, x->rterm ? x->rterm + m0 : NULL};
            r->epilogue(&tile, x->w, x->ep, x->out, x->ldc);
        }
    }
    if (x->res) qe_gemm_residual_tile(x, pm0, pm1, pn0, pn1);
}

static void qe_gemm_pack_panel(const qe_gemm_ctx *x, const uint8_t *a, size_t lda, size_t p,
                               int32_t *rowsum) {
    const qe_gemm_kernel_rec *r = x->r;
    const size_t k = (size_t)x->w->k;
    qe_gemm_pack_a(r, x->m, k, a, lda, p, p + 1, (void *)x->apack, rowsum);
    if (!x->rterm) return;
    for (size_t row = p * r->mr; row < (p + 1) * r->mr && row < x->m; row++) {
        const uint32_t za = x->ep->a_zp ? (uint32_t)x->ep->a_zp[row * x->ep->row_step] : 0u;
        x->rterm[row] = (int32_t)((uint32_t)rowsum[row] - (uint32_t)k * za);
    }
}

static int qe_gemm_ex(int isa, size_t m, const uint8_t *a, size_t lda, const qe_packed_w *w,
                      const qe_gemm_epilogue *ep, const qe_u8_residual *res, void *out,
                      size_t ldc, int nthreads, void *ws, size_t ws_bytes) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r || w->isa != isa) return QE_GEMM_EISA;
    const size_t n = (size_t)w->n, k = (size_t)w->k;
    if (k < 1 || k > (w->w_zp ? QE_GEMM_MAX_K_WZP : QE_GEMM_MAX_K)) return QE_GEMM_EK;
    if ((size_t)w->kp != qe_gemm_round_up(k, r->kpad) || lda < k || ldc < n) return QE_GEMM_EARG;
    if (ep->kind < QE_EPI_INT32 || ep->kind > QE_EPI_S8 || ep->row_step < 0 || ep->row_step > 1)
        return QE_GEMM_EARG;
    if (ep->kind == QE_EPI_F32 && (!ep->a_scale || !ep->w_scale)) return QE_GEMM_EARG;
    if (ep->kind >= QE_EPI_U8 && (!ep->multiplier || ep->lo > ep->hi)) return QE_GEMM_EARG;
    if (res && (ep->kind != QE_EPI_U8 || qe_u8_residual_check(res) || res->lds < n))
        return QE_GEMM_EARG;
    if (m == 0 || n == 0) return QE_GEMM_OK;

    qe_gemm_ctx x;
    x.r = r; x.w = w; x.ep = ep; x.res = res; x.out = out; x.m = m; x.ldc = ldc;
    x.a = a; x.lda = lda; x.direct = qe_gemm_can_direct(r, m, w, ep);
    x.kg = (size_t)w->kp / r->kr;
    x.mpanels = qe_gemm_round_up(m, r->mr) / r->mr;
    x.npanels = qe_gemm_round_up(n, r->nr) / r->nr;

    int nt = qe_threads(nthreads);
    if ((double)m * (double)n * (double)k < (double)QE_GEMM_PAR_MIN_MACS) nt = 1;
    x.mcp = QE_GEMM_MC_PANELS;
    x.ncp = QE_GEMM_NC_COLS / r->nr > 0 ? QE_GEMM_NC_COLS / r->nr : 1;
    /* enough tiles for the threads to share evenly: shrink N tiles, then M tiles */
    while (nt > 1 && x.ncp > 1 &&
           ((x.mpanels + x.mcp - 1) / x.mcp) * ((x.npanels + x.ncp - 1) / x.ncp) < (size_t)(4 * nt))
        x.ncp /= 2;
    while (nt > 1 && x.mcp > 1 &&
           ((x.mpanels + x.mcp - 1) / x.mcp) * ((x.npanels + x.ncp - 1) / x.ncp) < (size_t)(4 * nt))
        x.mcp /= 2;
    x.ntm = (x.mpanels + x.mcp - 1) / x.mcp;
    const size_t ntn = (x.npanels + x.ncp - 1) / x.ncp, ntiles = x.ntm * ntn;
    if ((size_t)nt > ntiles) nt = (int)ntiles;
    /* One N tile (N ≤ QE_GEMM_NC_COLS: MobileNetV2's 1×1 convs up to 192 outputs): each A
     * block is used by one tile only, so the tile packs it into its thread's block of the
     * workspace just before use (L1/L2-resident) instead of a pass over the whole of A first
     * (112²×16 pixels: 400 KB of packed A written, then read back from beyond L2).
     * It never needs more workspace than the whole packed A (a caller's ws, e.g.
     * qe_gemm_linear_dynamic's, is sized for that and a larger request would move the
     * calling thread's workspace under the caller's data). */
    const size_t apanel = (size_t)r->mr * x.kg * r->kr * r->elem;
    const size_t need_tile = (size_t)nt * x.mcp * apanel + 64;
    x.tile_pack = !x.direct && ntn == 1 && m > 1 && !w->w_zp &&
                  need_tile <= qe_gemm_workspace_bytes(isa, m, k);
    /* direct: no packed A and (z_w = 0) no row sums, so no workspace */
    const size_t need = x.direct ? 0 : x.tile_pack ? need_tile : qe_gemm_workspace_bytes(isa, m, k);
    if (need && (!ws || ws_bytes < need)) {
        ws = qe_workspace(QE_WS_CALL, need);
        if (!ws) return QE_GEMM_ENOMEM;
    }
    uint8_t *base = need ? (uint8_t *)(((uintptr_t)ws + 63) & ~(uintptr_t)63) : NULL;
    x.apack = base;
    int32_t *rowsum = need && !x.tile_pack ? (int32_t *)(base + qe_gemm_packed_a_bytes(r, m, k)) : NULL;
    x.rterm = w->w_zp ? rowsum + qe_gemm_round_up(m + 1, 16) : NULL;
    if (!w->w_zp) rowsum = NULL;

    const size_t npack = x.direct || x.tile_pack ? 0 : x.mpanels;
    if (nt <= 1) {
        for (size_t p = 0; p < npack; p++) qe_gemm_pack_panel(&x, a, lda, p, rowsum);
        for (size_t t = 0; t < ntiles; t++) qe_gemm_run_tile(&x, t, 0);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int tid = omp_get_thread_num();
            if (npack) {
                #pragma omp for schedule(static)
                for (size_t p = 0; p < npack; p++) qe_gemm_pack_panel(&x, a, lda, p, rowsum);
            }
            #pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ntiles; t++) qe_gemm_run_tile(&x, t, tid);
        }
#endif
    }
    return QE_GEMM_OK;
}

static int qe_gemm(int isa, size_t m, const uint8_t *a, size_t lda, const qe_packed_w *w,
                   const qe_gemm_epilogue *ep, void *out, size_t ldc, int nthreads,
                   void *ws, size_t ws_bytes) {
    return qe_gemm_ex(isa, m, a, lda, w, ep, NULL, out, ldc, nthreads, ws, ws_bytes);
}

#endif
