/* Dynamic-int8 LSTM and GRU layers: the whole time loop of one direction in C, GIL-free.
 *
 * The caller (src_pyx/_rnn.pyx) has already computed the input projection of every time step in
 * one GEMM, gx[s, b, :] = X·Wᵀ (+ biases), and packed the recurrent weights R once; or, for a
 * batched LSTM (B ≥ QE_RNN_FUSE_MIN_B), hands in X and the packed W instead, and each block
 * computes its x_s·Wᵀ (+ biases) into a tile in L1 right before R·h (below). Each step:
 *   1. quantize h (u8, asymmetric, per tensor or per batch row; numerics.md), pack it as the
 *      GEMM's A operand;
 *   2. per block of units, R·h through the record's fused dequantizing kernels (batch 1: the
 *      multi-panel GEMV; batch B: the 12-row microkernel over row panels, 16 = 12 + 4), whose
 *      epilogue adds the dot products to gx[s] in registers (GRU: writes a scratch row S);
 *      without them, ukernel/GEMV + the separate epilogue, the same bits;
 *   3. the block's gates in fp32 (rnn/qe_gates.h) for every batch row, new h and c, while its
 *      pre-activations are still in L1.
 *
 * Layout. Rows of W, R and the biases are permuted at pack time into blocks of QE_RNN_NB hidden
 * units: block j holds the G gates (LSTM i,o,f,c; GRU z,r,h, ONNX order) of units
 * [j·NB, (j+1)·NB), each NB rows. A block's gate pre-activations are then contiguous and a block
 * is a unit of work independent of the others within a step: threads divide the blocks (the
 * time loop at the end of this file says how) and each writes its blocks' slice of the new h.
 * Every thread quantizes the whole h itself (H values) instead of waiting for a second
 * synchronisation. The hidden size is padded to Hp, a multiple of NB, with zero weights and
 * biases: padded units stay exactly 0 and, as 0 is always inside the quantization range,
 * change nothing.
 *
 * Sequence lengths: row b is active at step s while s < len[b]; an inactive row keeps its state
 * and gets y = 0 (ONNX semantics). The loop runs over "processing order" s = 0..T-1; the caller
 * gathers gx and scatters y for reverse directions with ragged lengths.
 */
#ifndef QE_RNN_DYNAMIC_H
#define QE_RNN_DYNAMIC_H

#include "../qe_threads.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__has_include) && !defined(__STDC_NO_THREADS__)
#if __has_include(<threads.h>)
#include <threads.h>   /* C11 thrd_yield / thrd_sleep: a waiting team member gives its CPU away */
#define QE_RNN_HAVE_THREADS_H 1
#endif
#endif
#ifndef QE_RNN_HAVE_THREADS_H
#define QE_RNN_HAVE_THREADS_H 0
#endif
#include "../gemm/qe_gemm.h"
#include "../gemm/qe_gemm_dynamic.h"
#include "../gemm/qe_gemm_w4.h"
#include "qe_gates.h"

#define QE_RNN_NB 32                   /* multiple of every GEMM kernel's NR */
#define QE_RNN_PAR_MIN_MACS (1 << 17)  /* per step; below it one thread is faster */
/* From this batch on, an LSTM layer takes X and W rather than gx (the caller decides, with this
 * constant). A batched step is compute-bound (dot products at the vpdpbusd rate), and the
 * separate projection cost a round trip of gx through memory: written as [T·B, 4·Hp] floats
 * (13 MB for 16 × 100 steps × 2048), read back step by step, ~1.2 ms per layer on one core above
 * the projection's own MACs. Fused, the block's x_s·Wᵀ lands in an L1 tile that R·h then
 * accumulates into: the same kernels and epilogues in the same order, hence the same bits. W
 * then streams once per step, as R does; a batch-1 step is bound by that streaming, so small
 * batches keep the one up-front GEMM (measured, (I, 512) layer, fused / up-front: B = 2 1.11,
 * B = 3 1.00, B = 4 0.95, B = 8 0.91-0.94, B = 16 0.75-0.9 on 1 and 2 threads). */
#define QE_RNN_FUSE_MIN_B 4

enum { QE_RNN_LSTM = 0, QE_RNN_GRU = 1 };

typedef struct qe_rnn_layer {
    int32_t kind, T, B, H, Hp;
    int32_t per_row;                   /* activation qparams per batch row instead of per tensor */
    int32_t linear_before_reset;       /* GRU */
    float *gx;                         /* gx[s*gx_s + b*gx_b + row], row < G·Hp, block order */
    ptrdiff_t gx_s, gx_b;
    float *y;                          /* y[s*y_s + b*y_b + u], u < H; may be NULL */
    ptrdiff_t y_s, y_b;
    float *h, *c;                      /* [B, Hp] initial state in, final state out (c: LSTM) */
    const int32_t *lens;               /* [B] or NULL = all T */
    const qe_packed_w *r;              /* R, block order, [G·Hp, Hp] */
    const float *r_scale;              /* [G·Hp] */
    const float *r_bias;               /* GRU: Rb in block order [G·Hp]; LSTM: NULL (in gx) */
    int32_t isa, nthreads;
    /* fused input projection (LSTM; gx then unused, NULL): x[s*x_s + b*x_b + k], k < input_size, in
     * processing order like gx; W rows [w_row0, w_row0 + G·Hp) of w (block order, as R), their
     * scales and the gx bias (Wb + Rb) at the same rows. x = NULL: gx is given. */
    const float *x;
    ptrdiff_t x_s, x_b;
    int32_t input_size, w_row0;   /* I (complex.h makes "I" a macro) */
    const qe_packed_w *w;
    const float *w_scale, *w_bias;
    /* 4-bit R (qe_gemm_w4.h), block order [G·Hp, Hp], its group scales inside; NULL: R is the
     * int8 r / r_scale above (then unused). No fused projection with a 4-bit R. */
    const qe_packed_w4 *r4;
} qe_rnn_layer;

enum { QE_RNN_OK = 0, QE_RNN_EARG = -1, QE_RNN_ENOMEM = -2, QE_RNN_EISA = -3 };

typedef struct qe_rnn_shared {
    const qe_rnn_layer *L;
    const qe_gemm_kernel_rec *rec;
    qe_gates_ops gates;
    int G, nblocks;
    float *hbuf[2];                    /* double-buffered h, [B, Hp] each */
    float *s;                          /* GRU: R·h (+Rb) for the step, [B, G·Hp] */
    float *rh;                         /* GRU lbr=0: r ⊙ h, [B, Hp] */
    /* fused input projection: W's rows of this layer, and every step's x quantized and packed
     * up front (xpack + s·xstep bytes; qparams at s·xq_step) */
    qe_packed_w w;
    const float *w_scale, *w_bias;
    uint8_t *xpack;
    size_t xstep, xq_step;
    float *x_scale;
    int32_t *x_zp;
} qe_rnn_shared;

/* Per-thread scratch: quantized h, its packed panels, per-row qparams, one int32 tile. All of
 * a team's scratch is carved from the calling thread's QE_WS_CALL workspace before the parallel
 * region, so no member can fail to get it (a member without scratch would leave its blocks to
 * the others, which the fixed ranges of a batch-1 step cannot do). */
typedef struct qe_rnn_local {
    uint8_t *hq, *apack;
    int32_t *rterm;                    /* 4-bit R: the rows' offset terms, [B, ng] */
    float *a_scale;
    int32_t *a_zp;
    int32_t *tile;
    float *gt;                         /* fused projection: the block's gates, [B, 4·NB] */
} qe_rnn_local;

/* The row stride of the quantized h: K padded for the int8 kernels' packing, or to the 4-bit
 * R's KP (the w4 kernels read h rows in place). */
static size_t qe_rnn_hq_stride(const qe_gemm_kernel_rec *r, const qe_packed_w4 *r4, size_t Hp) {
    const size_t kp = qe_gemm_round_up(Hp, r->kpad);
    const size_t kp4 = r4 ? (size_t)r4->gs * (size_t)r4->ng : 0;
    return kp4 > kp ? kp4 : kp;
}

static size_t qe_rnn_local_bytes(const qe_gemm_kernel_rec *r, const qe_packed_w4 *r4, size_t B,
                                 size_t Hp) {
    const size_t kp = qe_rnn_hq_stride(r, r4, Hp);
    const size_t ng = r4 ? (size_t)r4->ng : 0;
    return qe_gemm_round_up(B * kp, 64) + qe_gemm_round_up(qe_gemm_packed_a_bytes(r, B, Hp), 64) +
           qe_gemm_round_up(B * 8, 64) + (size_t)QE_GEMM_MR_MAX * QE_GEMM_NR_MAX * 4 +
           B * 4 * QE_RNN_NB * sizeof(float) + qe_gemm_round_up(B * ng * 4, 64);
}

/* mem: qe_rnn_local_bytes(), 64-aligned */
static void qe_rnn_local_init(qe_rnn_local *x, const qe_gemm_kernel_rec *r,
                              const qe_packed_w4 *r4, size_t B, size_t Hp, void *mem) {
    const size_t kp = qe_rnn_hq_stride(r, r4, Hp);
    const size_t hq = qe_gemm_round_up(B * kp, 64);
    const size_t ap = qe_gemm_round_up(qe_gemm_packed_a_bytes(r, B, Hp), 64);
    const size_t tl = (size_t)QE_GEMM_MR_MAX * QE_GEMM_NR_MAX * 4;
    uint8_t *p = (uint8_t *)mem;
    x->tile = (int32_t *)p;  p += tl;
    x->hq = p;               p += hq;
    x->apack = p;            p += ap;
    x->a_scale = (float *)p;
    x->a_zp = (int32_t *)(p + B * 4);
    x->gt = (float *)(p + qe_gemm_round_up(B * 8, 64));
    x->rterm = (int32_t *)(x->gt + B * 4 * QE_RNN_NB);
    memset(x->hq, 0, hq);
    memset(x->apack, 0, ap);
}

/* Quantize B rows of K values (row stride ld) into hq (stride kp = K padded) and pack them as
 * the A operand apack. */
static void qe_rnn_quantize_rows(const qe_rnn_shared *sh, const float *src0, size_t ld, size_t K,
                                 uint8_t *hq, uint8_t *apack, float *a_scale, int32_t *a_zp) {
    const qe_rnn_layer *L = sh->L;
    const qe_gemm_kernel_rec *r = sh->rec;
    const size_t B = (size_t)L->B, kp = qe_gemm_round_up(K, r->kpad);
    qe_dynq_u8(L->isa, B, K, src0, ld, L->per_row, hq, kp, a_scale, a_zp);
    /* Pack only the B real rows (the generic packer also zero-fills the panel's unused rows,
     * which dominated a batch-1 step): a kernel given mr rows reads no others, and the
     * epilogue ignores tile rows ≥ mr in any case. */
    const size_t mr = (size_t)r->mr, kr = (size_t)r->kr, kg = kp / kr;
    for (size_t i = 0; i < B; i++) {
        const uint8_t *src = hq + i * kp;
        const size_t base = ((i / mr) * kg * mr + i % mr) * kr;
        if (r->elem == 1 && kr == 4) {
            /* a memcpy of constant size is one 32-bit move; with the record's kr it was a libc
             * call per group, 2048 calls (5 µs, 4% of the layer) per batch-16 step */
            uint8_t *dst = apack + base;
            for (size_t g = 0; g < kg; g++) memcpy(dst + g * mr * 4, src + g * 4, 4);
        } else if (r->elem == 1) {
            uint8_t *dst = apack + base;
            for (size_t g = 0; g < kg; g++) memcpy(dst + g * mr * kr, src + g * kr, kr);
        } else {
            uint16_t *dst = (uint16_t *)apack + base;
            for (size_t g = 0; g < kg; g++)
                for (size_t q = 0; q < kr; q++) dst[g * mr * kr + q] = src[g * kr + q];
        }
    }
}

static void qe_rnn_quantize_h(const qe_rnn_shared *sh, qe_rnn_local *x, const float *h) {
    const qe_rnn_layer *L = sh->L;
    const size_t Hp = (size_t)L->Hp;
    if (L->r4) {   /* rows stay in place (stride hq_stride, zero tail) for the w4 kernels */
        const size_t kq = qe_rnn_hq_stride(sh->rec, L->r4, Hp);
        qe_dynq_u8(L->isa, (size_t)L->B, Hp, h, Hp, L->per_row, x->hq, kq, x->a_scale, x->a_zp);
        qe_gemm_w4_row_terms((size_t)L->B, x->hq, kq, L->r4, x->rterm);
        return;
    }
    qe_rnn_quantize_rows(sh, h, Hp, Hp, x->hq, x->apack, x->a_scale, x->a_zp);
}

/* One product of a step: packed weights (block order) and their scales against B packed rows
 * of activations with their qparams. */
typedef struct qe_rnn_operand {
    const qe_packed_w *w;
    const float *w_scale;
    const uint8_t *apack;
    const float *a_scale;
    const int32_t *a_zp;
} qe_rnn_operand;

/* Weight rows [n0, n1) (whole panels) against the packed activations; the F32 epilogue writes
 * or accumulates into out[b*ldo + n − ocol] (+ bias[n]). With the record's fused dequantizing
 * kernels (qe_gemm_params.h) the dot products go from registers straight into out; otherwise
 * ukernel/gemv + epilogue, the same bits. */
static void qe_rnn_dot(const qe_rnn_shared *sh, const qe_rnn_operand *op, int32_t *tile,
                       size_t n0, size_t n1, float *out, size_t ldo, size_t ocol,
                       const float *bias, int accumulate) {
    const qe_gemm_kernel_rec *r = sh->rec;
    const size_t B = (size_t)sh->L->B, kg = (size_t)op->w->kp / r->kr, nr = (size_t)r->nr;
    const size_t apanel = (size_t)r->mr * kg * r->kr * r->elem;
    const size_t wpanel = nr * kg * r->kr * r->elem;
    /* the column-indexed parameters start at out's first column, ocol */
    qe_packed_w wv = *op->w;
    wv.colsum += ocol;
    qe_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.kind = QE_EPI_F32;
    ep.a_zp = op->a_zp;
    ep.a_scale = op->a_scale;
    ep.row_step = sh->L->per_row ? 1 : 0;
    ep.w_scale = op->w_scale + ocol;
    ep.bias = bias ? bias + ocol : NULL;
    ep.accumulate = accumulate;
    if (B == 1 && r->gemv) {
        const size_t a_stride = (size_t)r->mr * r->kr * r->elem;
        for (size_t n = n0; n < n1; n += 4 * nr) {
            const size_t np = (n1 - n) / nr < 4 ? (n1 - n) / nr : 4;
            const char *wp = (const char *)op->w->data + (n / nr) * wpanel;
            if (r->gemv_dequant) {
                const qe_gemm_dequant_tile q = qe_gemm_dequant_tile_at(&wv, &ep, out, ldo, 0,
                                                                       n - ocol, np * nr);
                r->gemv_dequant(np, kg, op->apack, a_stride, wp, wpanel, &q);
                continue;
            }
            r->gemv(np, kg, op->apack, a_stride, wp, wpanel, tile);
            const qe_gemm_tile t = {tile, np * nr, 1, np * nr, 0, n - ocol, NULL};
            r->epilogue(&t, &wv, &ep, out, ldo);
        }
        return;
    }
    for (size_t n = n0; n < n1; n += nr) {
        const char *wp = (const char *)op->w->data + (n / nr) * wpanel;
        for (size_t m0 = 0; m0 < B; m0 += r->mr) {
            const size_t mr = B - m0 < (size_t)r->mr ? B - m0 : (size_t)r->mr;
            const uint8_t *ap = op->apack + (m0 / r->mr) * apanel;
            if (r->ukernel_dequant) {
                const qe_gemm_dequant_tile q = qe_gemm_dequant_tile_at(&wv, &ep, out, ldo, m0,
                                                                       n - ocol, nr);
                r->ukernel_dequant(mr, kg, ap, wp, &q);
                continue;
            }
            r->ukernel(mr, kg, ap, wp, tile, 0);
            const qe_gemm_tile t = {tile, nr, mr, nr, m0, n - ocol, NULL};
            r->epilogue(&t, &wv, &ep, out, ldo);
        }
    }
}

/* 4-bit R rows [n0, n1) (whole panels) against the quantized h rows, into
 * out[b*ldo + n − ocol] (+ bias[n]), epilogue (c). */
static void qe_rnn_dot4(const qe_rnn_shared *sh, qe_rnn_local *x, size_t n0, size_t n1,
                        float *out, size_t ldo, size_t ocol, const float *bias, int accumulate) {
    const qe_rnn_layer *L = sh->L;
    const qe_w4_kernel_rec *r = qe_gemm_w4_kernel_for_isa(L->isa);
    const size_t B = (size_t)L->B, kq = qe_rnn_hq_stride(sh->rec, L->r4, (size_t)L->Hp);
    const size_t rs = L->per_row ? 1 : 0;
    for (size_t p = n0 / QE_W4_NR; p < n1 / QE_W4_NR; p++)
        for (size_t m0 = 0; m0 < B; m0 += QE_W4_MR) {
            const size_t mr = B - m0 < QE_W4_MR ? B - m0 : QE_W4_MR;
            qe_w4_tile t = qe_gemm_w4_tile_at(L->r4, x->hq, kq, x->rterm, x->a_scale, x->a_zp,
                                              rs, bias, out - ocol, ldo, accumulate, m0, p);
            r->ukernel(mr, &t);
        }
}

/* R-rows [n0, n1) against the quantized h, into out[b*ldo + n − ocol]. */
static void qe_rnn_rdot(const qe_rnn_shared *sh, qe_rnn_local *x, size_t n0, size_t n1,
                        float *out, size_t ldo, size_t ocol, const float *bias, int accumulate) {
    if (sh->L->r4) {
        qe_rnn_dot4(sh, x, n0, n1, out, ldo, ocol, bias, accumulate);
        return;
    }
    const qe_rnn_operand op = {sh->L->r, sh->L->r_scale, x->apack, x->a_scale, x->a_zp};
    qe_rnn_dot(sh, &op, x->tile, n0, n1, out, ldo, ocol, bias, accumulate);
}

/* R-rows [n0, n1) against the packed h, into out[b*ldo + n]. */
static void qe_rnn_gemv(const qe_rnn_shared *sh, qe_rnn_local *x, size_t n0, size_t n1,
                        float *out, size_t ldo, const float *bias, int accumulate) {
    qe_rnn_rdot(sh, x, n0, n1, out, ldo, 0, bias, accumulate);
}

static inline int qe_rnn_active(const qe_rnn_layer *L, int s, size_t b) {
    return !L->lens || s < L->lens[b];
}

/* LSTM, block j of step s: the R rows of its four gates, then the cells of its units for every
 * batch row while the block's pre-activations are in L1. */
static void qe_rnn_lstm_block(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j,
                              const float *hp, float *hn) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, B = (size_t)L->B, Hp = (size_t)L->Hp, n0 = j * 4 * NB;
    float *g;          /* the block's pre-activations: g[b*ldg + n − c0] for its columns n */
    size_t ldg, c0;
    if (sh->xpack) {   /* fused projection: x_s·Wᵀ + bias into the L1 tile, as gx would hold */
        const size_t xq = (size_t)s * sh->xq_step;
        const qe_rnn_operand xo = {&sh->w, sh->w_scale, sh->xpack + (size_t)s * sh->xstep,
                                   sh->x_scale + xq, sh->x_zp + xq};
        g = x->gt;
        ldg = 4 * NB;
        c0 = n0;
        qe_rnn_dot(sh, &xo, x->tile, n0, n0 + 4 * NB, g, ldg, c0, sh->w_bias, 0);
    } else {
        g = L->gx + s * L->gx_s;
        ldg = (size_t)L->gx_b;
        c0 = 0;
    }
    qe_rnn_rdot(sh, x, n0, n0 + 4 * NB, g, ldg, c0, NULL, 1);
    for (size_t b = 0; b < B; b++) {
        if (!qe_rnn_active(L, s, b)) {
            memcpy(hn + b * Hp + j * NB, hp + b * Hp + j * NB, NB * sizeof(float));
            continue;
        }
        const float *gj = g + b * ldg + n0 - c0;
        sh->gates.lstm_cell(NB, gj, gj + NB, gj + 2 * NB, gj + 3 * NB, L->c + b * Hp + j * NB,
                            hn + b * Hp + j * NB);
    }
}

/* GRU phase 1, block j: S = R_zr·h (+Rb), z and r; lbr=1 also R_h·h. */
static void qe_rnn_gru_zr(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j,
                          const float *hp) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, GH = 3 * (size_t)L->Hp;
    float *g = L->gx + s * L->gx_s;
    const size_t n0 = j * 3 * NB, n1 = n0 + (L->linear_before_reset ? 3 : 2) * NB;
    qe_rnn_gemv(sh, x, n0, n1, sh->s, GH, L->r_bias, 0);
    /* Inactive rows (past their sequence length) are computed too and then discarded: with
     * per-tensor quantization, r ⊙ h of every row enters the next GEMV's scale. */
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *gz = g + b * L->gx_b + j * 3 * NB, *gr = gz + NB;
        const float *sz = sh->s + b * GH + j * 3 * NB, *sr = sz + NB;
        for (size_t u = 0; u < NB; u++) { gz[u] = gz[u] + sz[u]; gr[u] = gr[u] + sr[u]; }
        sh->gates.gru_zr(NB, gz, gr);
        if (!L->linear_before_reset) {
            const float *hb = hp + b * L->Hp + j * NB;
            float *rh = sh->rh + b * L->Hp + j * NB;
            for (size_t u = 0; u < NB; u++) rh[u] = gr[u] * hb[u];
        }
    }
}

/* GRU phase 2, block j: h̃ and the new h (lbr=0: R_h·(r ⊙ h) first). */
static void qe_rnn_gru_h(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j,
                         const float *hp, float *hn) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, GH = 3 * (size_t)L->Hp, Hp = (size_t)L->Hp;
    float *g = L->gx + s * L->gx_s;
    if (!L->linear_before_reset)
        qe_rnn_gemv(sh, x, j * 3 * NB + 2 * NB, j * 3 * NB + 3 * NB, sh->s, GH, L->r_bias, 0);
    for (size_t b = 0; b < (size_t)L->B; b++) {
        if (!qe_rnn_active(L, s, b)) {
            memcpy(hn + b * Hp + j * NB, hp + b * Hp + j * NB, NB * sizeof(float));
            continue;
        }
        float *gz = g + b * L->gx_b + j * 3 * NB, *gr = gz + NB, *gh = gz + 2 * NB;
        const float *sh_ = sh->s + b * GH + j * 3 * NB + 2 * NB;
        const float *hpj = hp + b * Hp + j * NB;
        float *hnj = hn + b * Hp + j * NB;
        if (L->linear_before_reset) {
            sh->gates.gru_h(NB, gz, gr, gh, sh_, hpj, hnj);
        } else {
            for (size_t u = 0; u < NB; u++) gh[u] = gh[u] + sh_[u];
            sh->gates.gru_h(NB, gz, NULL, gh, NULL, hpj, hnj);
        }
    }
}

static void qe_rnn_write_y(const qe_rnn_layer *L, int s, size_t j, const float *hn) {
    if (!L->y) return;
    const size_t NB = QE_RNN_NB;
    const size_t u0 = j * NB, u1 = (j + 1) * NB < (size_t)L->H ? (j + 1) * NB : (size_t)L->H;
    if (u0 >= u1) return;
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *y = L->y + s * L->y_s + b * L->y_b;
        if (qe_rnn_active(L, s, b))
            memcpy(y + u0, hn + b * L->Hp + u0, (u1 - u0) * sizeof(float));
        else
            memset(y + u0, 0, (u1 - u0) * sizeof(float));
    }
}

/* ---- the time loop: stages, blocks and the threads that run them -----------------------------
 * A step is one stage (LSTM, GRU lbr=1) or two (GRU lbr=0: z, r and r ⊙ h, then h̃, whose
 * R_h·(r ⊙ h) needs all of r ⊙ h). A stage is nblocks independent blocks; stage q may start
 * once stage q − 1 is complete. Which thread runs a block changes nothing in the results (the
 * blocks' arithmetic is independent), so the schedule is chosen for speed alone:
 *  - batch < QE_RNN_SHARE_MIN_B (the step streams R: bandwidth-bound): fixed ranges, one
 *    barrier per stage. Each core's rows of R stay in its own L2 from step to step; taking a
 *    partner's block (64 KiB of R from the other core) and waiting without a barrier both
 *    measured slower, up to 20x under load.
 *  - batch ≥ QE_RNN_SHARE_MIN_B (compute-bound): blocks are shared. Each thread claims its home
 *    range, then the unclaimed blocks of the others, then waits for the blocks in progress.
 *    Nobody waits for a partner to *arrive*: on this shared 2-vCPU VM a thread loses its CPU for
 *    milliseconds at a time, and with a barrier per step every such loss stalled the other one
 *    too (batch 16 on 2 threads under load: 40-50 ms shared against 100-1000 ms with barriers,
 *    1 thread 25-35 ms). A late thread joins at the stage in progress.
 * Claims are per range counters advanced by compare-and-swap (never past the stage);
 * completions are per thread counters written by their own thread, so cache lines travel
 * between cores only at the end of a stage, as with a barrier. Each thread quantizes the
 * stage's h (or r ⊙ h) itself on its first block of the stage: with sharing, after claiming it,
 * which keeps the stage open so the buffer cannot be overwritten meanwhile (its next writer is
 * step s + 1). */
typedef struct qe_rnn_counter {
    long v;
    char pad[64 - sizeof(long)];
} qe_rnn_counter;

typedef struct qe_rnn_team {
    qe_rnn_counter *claimed;           /* [n]: blocks of range t claimed so far, all stages */
    qe_rnn_counter *done;              /* [n]: blocks thread t has completed, all stages */
    int n;
    long nstages;
} qe_rnn_team;

#define QE_RNN_SHARE_MIN_B 4

/* A sharing thread waiting for blocks in progress spins (pause, ~60 ns on the Zen 4 VM) while
 * its partners make progress; after QE_RNN_PATIENCE pauses (~30 µs, a few blocks) without any,
 * the partner is not running (preempted, or on this very vCPU: the scheduler does put both
 * threads on one vCPU under load, where spinning only delays it), so it yields the CPU, and
 * after QE_RNN_YIELDS yields sleeps QE_RNN_NAP_NS at a time. */
#define QE_RNN_PATIENCE 512
#define QE_RNN_YIELDS 1024
#define QE_RNN_NAP_NS 50000

static inline void qe_rnn_pause(void) {
#if defined(QE_ARCH_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __asm__ __volatile__("yield");
#endif
}

static inline long qe_rnn_completed(const qe_rnn_team *tm) {
    long v = 0;
    for (int t = 0; t < tm->n; t++) v += __atomic_load_n(&tm->done[t].v, __ATOMIC_ACQUIRE);
    return v;
}

/* Until `target` blocks are complete. */
static void qe_rnn_wait(const qe_rnn_team *tm, long target) {
    long last = -1, idle = 0;
    for (long c; (c = qe_rnn_completed(tm)) < target; idle++) {
        if (c != last) {
            last = c;
            idle = 0;
        }
#if QE_RNN_HAVE_THREADS_H
        if (idle >= QE_RNN_PATIENCE + QE_RNN_YIELDS) {
            const struct timespec nap = {0, QE_RNN_NAP_NS};
            thrd_sleep(&nap, NULL);
        } else if (idle >= QE_RNN_PATIENCE) {
            thrd_yield();
        } else
#endif
            qe_rnn_pause();
    }
}

/* Claim the next block of range h in stage q (its blocks are claims [q·len, (q+1)·len)). */
static inline int qe_rnn_claim(const qe_rnn_team *tm, int h, long q, long len, long *idx) {
    long c = __atomic_load_n(&tm->claimed[h].v, __ATOMIC_RELAXED);
    while (c < (q + 1) * len)
        if (__atomic_compare_exchange_n(&tm->claimed[h].v, &c, c + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            *idx = c - q * len;
            return 1;
        }
    return 0;
}

/* Block j of stage q: quantize the stage's input on the thread's first block of it, then the
 * block's GEMV, gates and y. */
static void qe_rnn_run_block(const qe_rnn_shared *sh, qe_rnn_local *x, long q, size_t j,
                             long *quantized) {
    const qe_rnn_layer *L = sh->L;
    const int P = L->kind == QE_RNN_GRU && !L->linear_before_reset ? 2 : 1;
    const int s = (int)(q / P), phase = (int)(q % P);
    const float *hp = sh->hbuf[s & 1];
    float *hn = sh->hbuf[(s + 1) & 1];
    if (*quantized != q) {
        qe_rnn_quantize_h(sh, x, phase ? sh->rh : hp);
        *quantized = q;
    }
    if (L->kind == QE_RNN_LSTM) {
        qe_rnn_lstm_block(sh, x, s, j, hp, hn);
    } else if (phase == 0) {
        qe_rnn_gru_zr(sh, x, s, j, hp);
        if (P == 1) qe_rnn_gru_h(sh, x, s, j, hp, hn);
    } else {
        qe_rnn_gru_h(sh, x, s, j, hp, hn);
    }
    if (phase == P - 1) qe_rnn_write_y(L, s, j, hn);
}

/* Block i of range [b0, b0 + len) in stage q: odd steps walk a range backwards (when R exceeds
 * L2, a cyclic walk misses on every line (LRU); alternating directions reuses what the last
 * step left in cache). */
static inline size_t qe_rnn_block_of(const qe_rnn_shared *sh, long q, long b0, long len, long i) {
    const int P = sh->L->kind == QE_RNN_GRU && !sh->L->linear_before_reset ? 2 : 1;
    return (size_t)(((q / P) & 1) ? b0 + len - 1 - i : b0 + i);
}

/* Fixed ranges: member t of a team of n, a barrier after every stage (n = 1: no barriers). */
static void qe_rnn_member_fixed(const qe_rnn_shared *sh, qe_rnn_local *x, long nstages, int t,
                                int n) {
    const long nb = sh->nblocks, b0 = nb * t / n, len = nb * (t + 1) / n - b0;
    long quantized = -1;
    for (long q = 0; q < nstages; q++) {
        for (long i = 0; i < len; i++)
            qe_rnn_run_block(sh, x, q, qe_rnn_block_of(sh, q, b0, len, i), &quantized);
#ifdef _OPENMP
        if (n > 1) {
            #pragma omp barrier
        }
#endif
    }
}

/* Shared blocks: member t (of tm->n planned; ranges of absent members are claimed by the
 * others), every stage until the last. */
static void qe_rnn_member_shared(const qe_rnn_shared *sh, qe_rnn_local *x, const qe_rnn_team *tm,
                                 int t) {
    const long nb = sh->nblocks, n = tm->n;
    long q = 0, quantized = -1, mine = 0;
    for (;;) {
        const long c = qe_rnn_completed(tm);
        if (c / nb > q) q = c / nb;                      /* stages finished while away */
        if (q >= tm->nstages) break;
        if (c < q * nb) qe_rnn_wait(tm, q * nb);         /* stage q − 1 still running */
        for (long k = 0; k < n; k++) {
            const int h = (int)((t + k) % n);
            const long b0 = nb * h / n, len = nb * (h + 1) / n - b0;
            long i;
            while (qe_rnn_claim(tm, h, q, len, &i)) {
                qe_rnn_run_block(sh, x, q, qe_rnn_block_of(sh, q, b0, len, i), &quantized);
                __atomic_store_n(&tm->done[t].v, ++mine, __ATOMIC_RELEASE);
            }
        }
        q++;
    }
}

/* Fused projection: quantize and pack x of steps [s0, s1) (tmp: B × I padded bytes). */
static void qe_rnn_quantize_x(const qe_rnn_shared *sh, uint8_t *tmp, long s0, long s1) {
    const qe_rnn_layer *L = sh->L;
    for (long s = s0; s < s1; s++) {
        const size_t q = (size_t)s * sh->xq_step;
        qe_rnn_quantize_rows(sh, L->x + s * L->x_s, (size_t)L->x_b, (size_t)L->input_size, tmp,
                             sh->xpack + (size_t)s * sh->xstep, sh->x_scale + q, sh->x_zp + q);
    }
}

static int qe_rnn_layer_run(const qe_rnn_layer *L) {
    const qe_gemm_kernel_rec *rec = qe_gemm_kernel_for_isa(L->isa);
    if (!rec || (L->r4 ? !qe_gemm_w4_kernel_for_isa(L->isa) : L->r->isa != L->isa))
        return QE_RNN_EISA;
    const int G = L->kind == QE_RNN_LSTM ? 4 : 3;
    const int32_t rn = L->r4 ? L->r4->n : L->r->n, rk = L->r4 ? L->r4->k : L->r->k;
    if (L->T < 0 || L->B < 1 || L->H < 1 || L->Hp % QE_RNN_NB || L->Hp < L->H ||
        rn != G * L->Hp || rk != L->Hp || (L->kind == QE_RNN_GRU && !L->r_bias) ||
        (L->r4 && (L->x || L->r4->gs % 16 || (size_t)L->r4->gs * L->r4->ng < (size_t)L->Hp)))
        return QE_RNN_EARG;
    const int fused = L->x != NULL;
    if (fused && (!L->w || L->w->isa != L->isa)) return QE_RNN_EISA;
    if (fused && (L->kind != QE_RNN_LSTM || L->input_size < 1 || L->w->k != L->input_size ||
                  L->w_row0 < 0 || L->w_row0 % rec->nr || L->w->n < L->w_row0 + G * L->Hp ||
                  !L->w_scale || !L->w_bias || L->x_b < L->input_size))
        return QE_RNN_EARG;
    qe_rnn_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.L = L; sh.rec = rec; sh.gates = qe_gates_for_isa(L->isa); sh.G = G;
    sh.nblocks = L->Hp / QE_RNN_NB;
    int nt = qe_threads(L->nthreads);
    if ((double)L->B * G * L->Hp * L->Hp < (double)QE_RNN_PAR_MIN_MACS) nt = 1;
    if (nt > sh.nblocks) nt = sh.nblocks;
#ifndef _OPENMP
    nt = 1;
#endif
    const size_t BH = (size_t)L->B * L->Hp;
    const size_t nf = qe_gemm_round_up(BH * (L->kind == QE_RNN_GRU ? 3 + G : 2) * sizeof(float), 64);
    const size_t nc = 2 * (size_t)nt * sizeof(qe_rnn_counter);
    const size_t nl = qe_gemm_round_up(qe_rnn_local_bytes(rec, L->r4, (size_t)L->B, (size_t)L->Hp), 64);
    /* fused: every step's packed x and qparams, and per member a row buffer to quantize into */
    const size_t nin = fused ? (size_t)L->input_size : 0, kpi = qe_gemm_round_up(nin, rec->kpad);
    const size_t xstep = qe_gemm_round_up(qe_gemm_packed_a_bytes(rec, (size_t)L->B, nin), 64);
    const size_t xq_step = L->per_row ? (size_t)L->B : 1;
    const size_t nxq = qe_gemm_round_up((size_t)L->T * xq_step * 8, 64);
    const size_t nxt = qe_gemm_round_up((size_t)L->B * kpi, 64);
    const size_t nx = fused ? (size_t)L->T * xstep + nxq + (size_t)nt * nxt : 0;
    /* the calling thread's QE_WS_CALL workspace: shared floats, counters, every member's scratch */
    char *mem = (char *)qe_workspace(QE_WS_CALL, nf + nc + (size_t)nt * nl + nx);
    if (!mem) return QE_RNN_ENOMEM;
    char *xmem = mem + nf + nc + (size_t)nt * nl;
    if (fused) {
        const size_t wpanel = (size_t)rec->nr * (size_t)L->w->kp * (size_t)rec->elem;
        sh.w = *L->w;
        sh.w.data = (const char *)L->w->data + (size_t)(L->w_row0 / rec->nr) * wpanel;
        sh.w.colsum = L->w->colsum + L->w_row0;
        sh.w.n = G * L->Hp;
        sh.w_scale = L->w_scale + L->w_row0;
        sh.w_bias = L->w_bias + L->w_row0;
        sh.xpack = (uint8_t *)xmem;
        sh.xstep = xstep;
        sh.xq_step = xq_step;
        sh.x_scale = (float *)(xmem + (size_t)L->T * xstep);
        sh.x_zp = (int32_t *)(sh.x_scale + (size_t)L->T * xq_step);
    }
    uint8_t *xtmp = fused ? (uint8_t *)(xmem + (size_t)L->T * xstep + nxq) : NULL;
    float *f = (float *)mem;
    sh.hbuf[0] = f;
    sh.hbuf[1] = f + BH;
    sh.s = f + 2 * BH;
    sh.rh = sh.s + (size_t)G * BH;
    memcpy(sh.hbuf[0], L->h, BH * sizeof(float));
    memcpy(sh.hbuf[1], L->h, BH * sizeof(float));
    if (L->kind == QE_RNN_GRU) memset(sh.rh, 0, BH * sizeof(float));
    qe_rnn_team tm;
    tm.claimed = (qe_rnn_counter *)(mem + nf);
    tm.done = tm.claimed + nt;
    tm.n = nt;
    tm.nstages = (long)L->T * (L->kind == QE_RNN_GRU && !L->linear_before_reset ? 2 : 1);
    memset(tm.claimed, 0, nc);
    char *scratch = mem + nf + nc;
    const int share = L->B >= QE_RNN_SHARE_MIN_B;

    if (nt <= 1) {
        qe_rnn_local loc;
        qe_rnn_local_init(&loc, rec, L->r4, (size_t)L->B, (size_t)L->Hp, scratch);
        if (fused) qe_rnn_quantize_x(&sh, xtmp, 0, L->T);
        qe_rnn_member_fixed(&sh, &loc, tm.nstages, 0, 1);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int t = omp_get_thread_num();
            qe_rnn_local loc;
            qe_rnn_local_init(&loc, rec, L->r4, (size_t)L->B, (size_t)L->Hp, scratch + (size_t)t * nl);
            if (fused) {   /* the one barrier of a sharing team: every step's x before step 0 */
                const int n = omp_get_num_threads();
                qe_rnn_quantize_x(&sh, xtmp + (size_t)t * nxt, (long)L->T * t / n,
                                  (long)L->T * (t + 1) / n);
                #pragma omp barrier
            }
            if (share)
                qe_rnn_member_shared(&sh, &loc, &tm, t);
            else   /* ranges over the team OpenMP really gave (it may be smaller than asked) */
                qe_rnn_member_fixed(&sh, &loc, tm.nstages, t, omp_get_num_threads());
        }
#endif
    }
    memcpy(L->h, sh.hbuf[L->T & 1], BH * sizeof(float));
    return QE_RNN_OK;
}

#endif
