/* Dynamic-int8 LSTM and GRU layers: the whole time loop of one direction in C, GIL-free.
 *
 * The caller (src_pyx/_rnn.pyx) has already computed the input projection of every time step in
 * one GEMM, gx[s, b, :] = X·Wᵀ (+ biases), and packed the recurrent weights R once. Each step:
 *   1. quantize h (u8, asymmetric, per tensor or per batch row; numerics.md), pack it as the
 *      GEMM's A operand;
 *   2. int32 GEMV of R against it (the GEMM microkernel of the active ISA, numerics.md), then the
 *      dequantizing epilogue (LSTM: accumulated straight into gx[s]; GRU: into a scratch row S);
 *   3. gates in fp32 (rnn/qe_gates.h), new h and c.
 *
 * Layout. Rows of W, R and the biases are permuted at pack time into blocks of QE_RNN_NB hidden
 * units: block j holds the G gates (LSTM i,o,f,c; GRU z,r,h, ONNX order) of units
 * [j·NB, (j+1)·NB), each NB rows. A block's gate pre-activations are then contiguous, and
 * threads can own whole blocks: every step each thread multiplies only its own rows of R (which
 * stay in its core's L2 from step to step), runs the gates of its own units and writes its
 * slice of the new h; one barrier per step publishes h. Every thread quantizes the whole h
 * itself (H values) instead of waiting for a second barrier. The hidden size is padded to Hp,
 * a multiple of NB, with zero weights and biases: padded units stay exactly 0 and, as 0 is
 * always inside the quantization range, change nothing.
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
#include "../gemm/qe_gemm.h"
#include "../gemm/qe_gemm_dynamic.h"
#include "qe_gates.h"

#define QE_RNN_NB 32                   /* multiple of every GEMM kernel's NR */
#define QE_RNN_PAR_MIN_MACS (1 << 17)  /* per step; below it one thread is faster */

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
} qe_rnn_shared;

/* Per-thread scratch (the thread's QE_WS_TEAM workspace): quantized h, its packed panels,
 * per-row qparams, one int32 tile. */
typedef struct qe_rnn_local {
    uint8_t *hq, *apack;
    float *a_scale;
    int32_t *a_zp;
    int32_t *tile;
} qe_rnn_local;

static int qe_rnn_local_init(qe_rnn_local *x, const qe_gemm_kernel_rec *r, size_t B, size_t Hp) {
    const size_t kp = qe_gemm_round_up(Hp, r->kpad);
    const size_t hq = qe_gemm_round_up(B * kp, 64);
    const size_t ap = qe_gemm_round_up(qe_gemm_packed_a_bytes(r, B, Hp), 64);
    const size_t qp = qe_gemm_round_up(B * 8, 64);
    const size_t tl = (size_t)QE_GEMM_MR_MAX * QE_GEMM_NR_MAX * 4;
    uint8_t *p = (uint8_t *)qe_workspace(QE_WS_TEAM, hq + ap + qp + tl);
    if (!p) return QE_RNN_ENOMEM;
    x->tile = (int32_t *)p;  p += tl;
    x->hq = p;               p += hq;
    x->apack = p;            p += ap;
    x->a_scale = (float *)p;
    x->a_zp = (int32_t *)(p + B * 4);
    memset(x->hq, 0, hq);
    memset(x->apack, 0, ap);
    return QE_RNN_OK;
}

/* Quantize rows [0, B) of h (stride Hp) into x->hq (stride kp) and pack them as the A operand. */
static void qe_rnn_quantize_h(const qe_rnn_shared *sh, qe_rnn_local *x, const float *h) {
    const qe_rnn_layer *L = sh->L;
    const qe_gemm_kernel_rec *r = sh->rec;
    const size_t B = (size_t)L->B, Hp = (size_t)L->Hp, kp = qe_gemm_round_up(Hp, r->kpad);
    qe_dynq_u8(L->isa, B, Hp, h, Hp, L->per_row, x->hq, kp, x->a_scale, x->a_zp);
    /* Pack only the B real rows (the generic packer also zero-fills the panel's unused rows,
     * which dominated a batch-1 step): a kernel given mr rows reads no others, and the
     * epilogue ignores tile rows ≥ mr in any case. */
    const size_t mr = (size_t)r->mr, kr = (size_t)r->kr, kg = kp / kr;
    for (size_t i = 0; i < B; i++) {
        const uint8_t *src = x->hq + i * kp;
        const size_t base = ((i / mr) * kg * mr + i % mr) * kr;
        if (r->elem == 1) {
            uint8_t *dst = x->apack + base;
            for (size_t g = 0; g < kg; g++) memcpy(dst + g * mr * kr, src + g * kr, kr);
        } else {
            uint16_t *dst = (uint16_t *)x->apack + base;
            for (size_t g = 0; g < kg; g++)
                for (size_t q = 0; q < kr; q++) dst[g * mr * kr + q] = src[g * kr + q];
        }
    }
}

/* R-rows [n0, n1) (whole panels) against the packed h; the F32 epilogue writes or accumulates
 * into out[b*ldo + n]. With the record's fused dequantizing kernels (qe_gemm_params.h) the dot
 * products go from registers straight into out; otherwise ukernel/gemv + epilogue, the same bits. */
static void qe_rnn_gemv(const qe_rnn_shared *sh, qe_rnn_local *x, size_t n0, size_t n1,
                        float *out, size_t ldo, const float *bias, int accumulate) {
    const qe_rnn_layer *L = sh->L;
    const qe_gemm_kernel_rec *r = sh->rec;
    const size_t B = (size_t)L->B, kg = (size_t)L->r->kp / r->kr, nr = (size_t)r->nr;
    const size_t apanel = (size_t)r->mr * kg * r->kr * r->elem;
    const size_t wpanel = nr * kg * r->kr * r->elem;
    const size_t row_step = L->per_row ? 1 : 0;
    qe_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.kind = QE_EPI_F32;
    ep.a_zp = x->a_zp;
    ep.a_scale = x->a_scale;
    ep.row_step = (int32_t)row_step;
    ep.w_scale = L->r_scale;
    ep.bias = bias;
    ep.accumulate = accumulate;
    if (B == 1 && r->gemv) {
        const size_t a_stride = (size_t)r->mr * r->kr * r->elem;
        for (size_t n = n0; n < n1; n += 4 * nr) {
            const size_t np = (n1 - n) / nr < 4 ? (n1 - n) / nr : 4;
            const char *wp = (const char *)L->r->data + (n / nr) * wpanel;
            if (r->gemv_dequant) {
                const qe_gemm_dequant_tile q = qe_gemm_dequant_tile_at(L->r, &ep, out, ldo, 0, n,
                                                                       np * nr);
                r->gemv_dequant(np, kg, x->apack, a_stride, wp, wpanel, &q);
                continue;
            }
            r->gemv(np, kg, x->apack, a_stride, wp, wpanel, x->tile);
            const qe_gemm_tile t = {x->tile, np * nr, 1, np * nr, 0, n, NULL};
            r->epilogue(&t, L->r, &ep, out, ldo);
        }
        return;
    }
    for (size_t n = n0; n < n1; n += nr) {
        const char *wp = (const char *)L->r->data + (n / nr) * wpanel;
        for (size_t m0 = 0; m0 < B; m0 += r->mr) {
            const size_t mr = B - m0 < (size_t)r->mr ? B - m0 : (size_t)r->mr;
            const uint8_t *ap = x->apack + (m0 / r->mr) * apanel;
            if (r->ukernel_dequant) {
                const qe_gemm_dequant_tile q = qe_gemm_dequant_tile_at(L->r, &ep, out, ldo, m0, n,
                                                                       nr);
                r->ukernel_dequant(mr, kg, ap, wp, &q);
                continue;
            }
            r->ukernel(mr, kg, ap, wp, x->tile, 0);
            const qe_gemm_tile t = {x->tile, nr, mr, nr, m0, n, NULL};
            r->epilogue(&t, L->r, &ep, out, ldo);
        }
    }
}

static inline int qe_rnn_active(const qe_rnn_layer *L, int s, size_t b) {
    return !L->lens || s < L->lens[b];
}

/* One step of blocks [j0, j1) for LSTM: per block, the R rows of its four gates, then the
 * cells of its units for every batch row while the block's pre-activations are in L1. */
static void qe_rnn_lstm_step(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j0,
                             size_t j1, const float *hp, float *hn) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, B = (size_t)L->B, Hp = (size_t)L->Hp;
    float *g = L->gx + s * L->gx_s;
    /* Odd steps walk the blocks backwards: R is streamed every step, and when it exceeds L2 a
     * cyclic walk misses on every line (LRU), while alternating directions reuses the part
     * that the previous step left in cache. */
    for (size_t jj = j0; jj < j1; jj++) {
        const size_t j = (s & 1) ? j0 + j1 - 1 - jj : jj;
        qe_rnn_gemv(sh, x, j * 4 * NB, (j + 1) * 4 * NB, g, (size_t)L->gx_b, NULL, 1);
        for (size_t b = 0; b < B; b++) {
            if (!qe_rnn_active(L, s, b)) {
                memcpy(hn + b * Hp + j * NB, hp + b * Hp + j * NB, NB * sizeof(float));
                continue;
            }
            const float *gj = g + b * L->gx_b + j * 4 * NB;
            sh->gates.lstm_cell(NB, gj, gj + NB, gj + 2 * NB, gj + 3 * NB, L->c + b * Hp + j * NB,
                                hn + b * Hp + j * NB);
        }
    }
}

/* GRU phase 1: S = R_zr·h (+Rb), z and r for blocks [j0, j1). lbr=1 also does R_h here. */
static void qe_rnn_gru_zr(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j0, size_t j1,
                          const float *hp) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, GH = 3 * (size_t)L->Hp;
    float *g = L->gx + s * L->gx_s;
    for (size_t j = j0; j < j1; j++) {
        const size_t n0 = j * 3 * NB, n1 = n0 + (L->linear_before_reset ? 3 : 2) * NB;
        qe_rnn_gemv(sh, x, n0, n1, sh->s, GH, L->r_bias, 0);
    }
    /* Inactive rows (past their sequence length) are computed too and then discarded: with
     * per-tensor quantization, r ⊙ h of every row enters the next GEMV's scale. */
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *gb = g + b * L->gx_b;
        const float *sb = sh->s + b * GH;
        for (size_t j = j0; j < j1; j++) {
            float *gz = gb + j * 3 * NB, *gr = gz + NB;
            const float *sz = sb + j * 3 * NB, *sr = sz + NB;
            for (size_t u = 0; u < NB; u++) { gz[u] = gz[u] + sz[u]; gr[u] = gr[u] + sr[u]; }
            sh->gates.gru_zr(NB, gz, gr);
            if (!L->linear_before_reset) {
                const float *hb = hp + b * L->Hp + j * NB;
                float *rh = sh->rh + b * L->Hp + j * NB;
                for (size_t u = 0; u < NB; u++) rh[u] = gr[u] * hb[u];
            }
        }
    }
}

/* GRU phase 2: h̃ and the new h for blocks [j0, j1). */
static void qe_rnn_gru_h(const qe_rnn_shared *sh, qe_rnn_local *x, int s, size_t j0, size_t j1,
                         const float *hp, float *hn) {
    const qe_rnn_layer *L = sh->L;
    const size_t NB = QE_RNN_NB, GH = 3 * (size_t)L->Hp;
    float *g = L->gx + s * L->gx_s;
    if (!L->linear_before_reset)
        for (size_t j = j0; j < j1; j++)
            qe_rnn_gemv(sh, x, j * 3 * NB + 2 * NB, j * 3 * NB + 3 * NB, sh->s, GH, L->r_bias, 0);
    for (size_t b = 0; b < (size_t)L->B; b++) {
        const size_t u0 = j0 * NB, nu = (j1 - j0) * NB;
        if (!qe_rnn_active(L, s, b)) {
            memcpy(hn + b * L->Hp + u0, hp + b * L->Hp + u0, nu * sizeof(float));
            continue;
        }
        float *gb = g + b * L->gx_b;
        const float *sb = sh->s + b * GH;
        for (size_t j = j0; j < j1; j++) {
            float *gz = gb + j * 3 * NB, *gr = gz + NB, *gh = gz + 2 * NB;
            const float *sh_ = sb + j * 3 * NB + 2 * NB;
            const float *hpj = hp + b * L->Hp + j * NB;
            float *hnj = hn + b * L->Hp + j * NB;
            if (L->linear_before_reset) {
                sh->gates.gru_h(NB, gz, gr, gh, sh_, hpj, hnj);
            } else {
                for (size_t u = 0; u < NB; u++) gh[u] = gh[u] + sh_[u];
                sh->gates.gru_h(NB, gz, NULL, gh, NULL, hpj, hnj);
            }
        }
    }
}

static void qe_rnn_write_y(const qe_rnn_layer *L, int s, size_t j0, size_t j1, const float *hn) {
    if (!L->y) return;
    const size_t NB = QE_RNN_NB;
    const size_t u0 = j0 * NB, u1 = j1 * NB < (size_t)L->H ? j1 * NB : (size_t)L->H;
    if (u0 >= u1) return;
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *y = L->y + s * L->y_s + b * L->y_b;
        if (qe_rnn_active(L, s, b))
            memcpy(y + u0, hn + b * L->Hp + u0, (u1 - u0) * sizeof(float));
        else
            memset(y + u0, 0, (u1 - u0) * sizeof(float));
    }
}

/* The per-thread body: blocks [j0, j1), all T steps, `sync` between steps. */
#define QE_RNN_BODY(SYNC)                                                                     \
    do {                                                                                       \
        for (int s = 0; s < L->T; s++) {                                                       \
            const float *hp = sh.hbuf[s & 1];                                                  \
            float *hn = sh.hbuf[(s + 1) & 1];                                                  \
            qe_rnn_quantize_h(&sh, &loc, hp);                                                  \
            if (L->kind == QE_RNN_LSTM) {                                                      \
                qe_rnn_lstm_step(&sh, &loc, s, j0, j1, hp, hn);                                \
            } else {                                                                           \
                qe_rnn_gru_zr(&sh, &loc, s, j0, j1, hp);                                       \
                if (!L->linear_before_reset) {                                                 \
                    SYNC;                                                                      \
                    qe_rnn_quantize_h(&sh, &loc, sh.rh);                                       \
                }                                                                              \
                qe_rnn_gru_h(&sh, &loc, s, j0, j1, hp, hn);                                    \
            }                                                                                  \
            qe_rnn_write_y(L, s, j0, j1, hn);                                                  \
            SYNC;                                                                              \
        }                                                                                      \
    } while (0)

static int qe_rnn_layer_run(const qe_rnn_layer *L) {
    const qe_gemm_kernel_rec *rec = qe_gemm_kernel_for_isa(L->isa);
    if (!rec || L->r->isa != L->isa) return QE_RNN_EISA;
    const int G = L->kind == QE_RNN_LSTM ? 4 : 3;
    if (L->T < 0 || L->B < 1 || L->H < 1 || L->Hp % QE_RNN_NB || L->Hp < L->H ||
        L->r->n != G * L->Hp || L->r->k != L->Hp || (L->kind == QE_RNN_GRU && !L->r_bias))
        return QE_RNN_EARG;
    qe_rnn_shared sh;
    sh.L = L; sh.rec = rec; sh.gates = qe_gates_for_isa(L->isa); sh.G = G;
    sh.nblocks = L->Hp / QE_RNN_NB;
    const size_t BH = (size_t)L->B * L->Hp;
    /* shared by the team: the calling thread's QE_WS_CALL workspace */
    float *mem = (float *)qe_workspace(
        QE_WS_CALL, sizeof(float) * (BH * (L->kind == QE_RNN_GRU ? 3 + G : 2) + 16));
    if (!mem) return QE_RNN_ENOMEM;
    sh.hbuf[0] = mem;
    sh.hbuf[1] = mem + BH;
    sh.s = mem + 2 * BH;
    sh.rh = sh.s + (size_t)G * BH;
    memcpy(sh.hbuf[0], L->h, BH * sizeof(float));
    memcpy(sh.hbuf[1], L->h, BH * sizeof(float));
    if (L->kind == QE_RNN_GRU) memset(sh.rh, 0, BH * sizeof(float));

    int nt = qe_threads(L->nthreads);
    if ((double)L->B * G * L->Hp * L->Hp < (double)QE_RNN_PAR_MIN_MACS) nt = 1;
    if (nt > sh.nblocks) nt = sh.nblocks;
    int err = QE_RNN_OK;
    if (nt <= 1) {
        qe_rnn_local loc;
        err = qe_rnn_local_init(&loc, rec, (size_t)L->B, (size_t)L->Hp);
        if (!err) {
            const size_t j0 = 0, j1 = (size_t)sh.nblocks;
            QE_RNN_BODY((void)0);
        }
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int tid = omp_get_thread_num(), n = omp_get_num_threads();
            const size_t j0 = (size_t)sh.nblocks * tid / n, j1 = (size_t)sh.nblocks * (tid + 1) / n;
            qe_rnn_local loc;
            const int e = qe_rnn_local_init(&loc, rec, (size_t)L->B, (size_t)L->Hp);
            int any_err = 0;
            /* every thread must reach the same barriers: agree on failure first */
            #pragma omp atomic
            err |= e;
            #pragma omp barrier
            #pragma omp atomic read
            any_err = err;
            if (!any_err) QE_RNN_BODY(_Pragma("omp barrier"));
        }
#endif
    }
    if (!err) {
        memcpy(L->h, sh.hbuf[L->T & 1], BH * sizeof(float));
    }
    return err ? QE_RNN_ENOMEM : QE_RNN_OK;
}

#endif
