/* FP32 LSTM and GRU layers: the time loop of one direction in C, GIL-free.
 *
 * The caller (qengine/ops/rnn.py through src_pyx/_f32.pyx) has computed the input projection
 * of every time step with one GEMM (qe_f32_gemm.h): gx[t, b, :] = X[t, b]·Wᵀ + biases. Each step
 * then multiplies the previous h by R (the 4-panel GEMV kernel at batch 1, the pc GEMM tile
 * above), adds it to the step's gx, and runs the gate math of rnn/qe_gates.h (LSTM cell; GRU
 * z, r and h̃), ONNX equations (qengine/reference/rnn.py), with `clip` applied to every gate
 * pre-activation as ONNX says.
 *
 * Layout, as the dynamic-int8 layers (rnn/qe_rnn_dynamic.h): the columns of W, R and the
 * biases are permuted at pack time into blocks of QE_F32_RNN_NB hidden units, block j holding
 * the G gates (LSTM i, o, f, c; GRU z, r, h) of units [j·NB, (j+1)·NB), and the hidden size is
 * padded to Hp, a multiple of NB, with zero weights and biases (padded units stay exactly 0).
 * A thread owns whole blocks: each step it multiplies its own columns of R (which stay in its
 * core's cache), runs the gates of its own units and writes its slice of the new h; one barrier
 * per step publishes h (two for a GRU with linear_before_reset = 0, whose h̃ reads r ⊙ h of
 * every unit). Every output is computed by one thread in one fixed order, so the result does
 * not depend on the thread count; the GEMV and the pc tile compute the same FMA chain, so it
 * does not depend on the batch size either, and every ISA gives the scalar twin's bits (the
 * gate kernels are bit-identical across ISAs too).
 *
 * Sequence lengths: row b is active at time t while t < len[b] (walking backwards for the
 * reverse direction, so a short row starts late); an inactive row keeps its state and gets
 * y = 0 (ONNX semantics).
 */
#ifndef QE_F32_RNN_H
#define QE_F32_RNN_H

#include "../qe_threads.h"
#include <string.h>
#include "qe_f32_gemm.h"
#include "../rnn/qe_gates.h"

#define QE_F32_RNN_NB 32                   /* a multiple of every ISA's pc_nr */
#define QE_F32_RNN_PAR_MIN_MACS (1 << 17)  /* per step; below it one thread is faster */

enum { QE_F32_RNN_LSTM = 0, QE_F32_RNN_GRU = 1 };

typedef struct qe_f32_rnn_layer {
    int32_t kind, T, B, H, Hp;
    int32_t linear_before_reset;       /* GRU */
    int32_t reverse;                   /* walk t = T−1 … 0 */
    float *gx;                         /* gx[t*gx_s + b*gx_b + col], col < G·Hp, block order;
                                          updated in place */
    ptrdiff_t gx_s, gx_b;
    float *y;                          /* y[t*y_s + b*y_b + u], u < H; may be NULL */
    ptrdiff_t y_s, y_b;
    float *h, *c;                      /* [B][Hp] initial state in, final state out (c: LSTM) */
    const int32_t *lens;               /* [B] or NULL = all T */
    const float *r;                    /* R: pc panels over the G·Hp block-order columns, k = Hp */
    size_t r_tile;                     /* the pc_nr R was packed with (checked) */
    const float *rbh;                  /* GRU linear_before_reset = 1: Rbh [Hp] by unit, or NULL */
    float clip;                        /* > 0: clamp each gate pre-activation to [−clip, clip] */
    int32_t isa, nthreads;
} qe_f32_rnn_layer;

typedef struct qe_f32_rnn_shared {
    const qe_f32_rnn_layer *L;
    const qe_f32_conv_kernel_rec *rec;
    qe_f32_gemv_ukernel_fn gemv;
    qe_gates_ops gates;
    size_t G, nblocks, GH;             /* GH = G·Hp: the gate columns */
    const ptrdiff_t *off;              /* [Hp]: off[i] = i */
    float *hbuf[2];                    /* double-buffered h, [B][Hp] */
    float *s;                          /* R·h of the step, [B][G·Hp] */
    float *rh;                         /* GRU lbr = 0: r ⊙ h, [B][Hp] */
} qe_f32_rnn_shared;

static inline int qe_f32_rnn_active(const qe_f32_rnn_layer *L, int t, size_t b) {
    return !L->lens || t < L->lens[b];
}

/* s[b][cols] = a[b]·R[:, cols] for the columns [c0, c1) (whole panels), every row b. */
static void qe_f32_rnn_matvec(const qe_f32_rnn_shared *sh, const float *a, size_t c0, size_t c1) {
    const qe_f32_rnn_layer *L = sh->L;
    const size_t nr = sh->rec->pc_nr, mr = sh->rec->pc_mr, k = (size_t)L->Hp, B = (size_t)L->B;
    const qe_f32_minmax none = {-INFINITY, INFINITY};
    if (B == 1) {
        for (size_t c = c0; c < c1; c += 4 * nr) {
            const size_t np = (c1 - c) / nr < 4 ? (c1 - c) / nr : 4;
            sh->gemv(np, k, a, L->r + (c / nr) * k * nr, k * nr, NULL, sh->s + c);
        }
        return;
    }
    const float *xr[QE_F32_CONV_PC_MR_MAX];
    for (size_t b0 = 0; b0 < B; b0 += mr) {
        const size_t rows = B - b0 < mr ? B - b0 : mr;
        for (size_t r = 0; r < mr; r++) xr[r] = a + (b0 + (r < rows ? r : rows - 1)) * k;
        for (size_t c = c0; c < c1; c += nr)
            sh->rec->pc_fn(rows, nr, k, xr, sh->off, L->r + (c / nr) * k * nr, NULL,
                           sh->s + b0 * sh->GH + c, sh->GH, 1, &none);
    }
}

static inline void qe_f32_rnn_add_clip(float *g, const float *s, size_t n, float clip) {
    for (size_t u = 0; u < n; u++) g[u] = g[u] + s[u];
    if (clip > 0.0f)
        for (size_t u = 0; u < n; u++)
            g[u] = qe_f32_min__scalar(clip, qe_f32_max__scalar(-clip, g[u]));
}

static inline void qe_f32_rnn_clip(float *g, size_t n, float clip) {
    if (clip > 0.0f)
        for (size_t u = 0; u < n; u++)
            g[u] = qe_f32_min__scalar(clip, qe_f32_max__scalar(-clip, g[u]));
}

/* Rows of blocks [j0, j1) whose sequence has ended keep h; returns whether row b is active. */
static inline int qe_f32_rnn_keep(const qe_f32_rnn_layer *L, int t, size_t b, size_t j0,
                                  size_t j1, const float *hp, float *hn) {
    if (qe_f32_rnn_active(L, t, b)) return 1;
    const size_t NB = QE_F32_RNN_NB, u0 = j0 * NB;
    memcpy(hn + b * L->Hp + u0, hp + b * L->Hp + u0, (j1 - j0) * NB * sizeof(float));
    return 0;
}

static void qe_f32_rnn_lstm_step(const qe_f32_rnn_shared *sh, int t, size_t j0, size_t j1,
                                 const float *hp, float *hn) {
    const qe_f32_rnn_layer *L = sh->L;
    const size_t NB = QE_F32_RNN_NB, GB = 4 * NB;
    qe_f32_rnn_matvec(sh, hp, j0 * GB, j1 * GB);
    for (size_t b = 0; b < (size_t)L->B; b++) {
        if (!qe_f32_rnn_keep(L, t, b, j0, j1, hp, hn)) continue;
        float *g = L->gx + t * L->gx_s + b * L->gx_b;
        const float *s = sh->s + b * sh->GH;
        for (size_t j = j0; j < j1; j++) {
            float *gj = g + j * GB;
            qe_f32_rnn_add_clip(gj, s + j * GB, GB, L->clip);
            sh->gates.lstm_cell(NB, gj, gj + NB, gj + 2 * NB, gj + 3 * NB,
                                L->c + b * L->Hp + j * NB, hn + b * L->Hp + j * NB);
        }
    }
}

/* GRU phase 1: z and r of blocks [j0, j1) (and, with linear_before_reset, R_h·h); lbr = 0
 * also writes r ⊙ h for phase 2. */
static void qe_f32_rnn_gru_zr(const qe_f32_rnn_shared *sh, int t, size_t j0, size_t j1,
                              const float *hp) {
    const qe_f32_rnn_layer *L = sh->L;
    const size_t NB = QE_F32_RNN_NB, GB = 3 * NB;
    const int lbr = L->linear_before_reset;
    for (size_t j = j0; j < j1; j++)
        qe_f32_rnn_matvec(sh, hp, j * GB, j * GB + (lbr ? 3 : 2) * NB);
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *g = L->gx + t * L->gx_s + b * L->gx_b;
        const float *s = sh->s + b * sh->GH;
        for (size_t j = j0; j < j1; j++) {
            float *gz = g + j * GB, *gr = gz + NB;
            qe_f32_rnn_add_clip(gz, s + j * GB, 2 * NB, L->clip);
            sh->gates.gru_zr(NB, gz, gr);
            if (!lbr) {
                const float *hb = hp + b * L->Hp + j * NB;
                float *rh = sh->rh + b * L->Hp + j * NB;
                for (size_t u = 0; u < NB; u++) rh[u] = gr[u] * hb[u];
            }
        }
    }
}

/* GRU phase 2: h̃ = tanh(gx_h + r ⊙ (R_h·h + Rbh)) (lbr = 1) or tanh(gx_h + R_h·(r ⊙ h))
 * (lbr = 0), h = (1 − z)·h̃ + z·h_prev, blocks [j0, j1). */
static void qe_f32_rnn_gru_h(const qe_f32_rnn_shared *sh, int t, size_t j0, size_t j1,
                             const float *hp, float *hn) {
    const qe_f32_rnn_layer *L = sh->L;
    const size_t NB = QE_F32_RNN_NB, GB = 3 * NB;
    const int lbr = L->linear_before_reset;
    if (!lbr)
        for (size_t j = j0; j < j1; j++) qe_f32_rnn_matvec(sh, sh->rh, j * GB + 2 * NB, (j + 1) * GB);
    for (size_t b = 0; b < (size_t)L->B; b++) {
        if (!qe_f32_rnn_keep(L, t, b, j0, j1, hp, hn)) continue;
        float *g = L->gx + t * L->gx_s + b * L->gx_b;
        const float *s = sh->s + b * sh->GH;
        for (size_t j = j0; j < j1; j++) {
            float *gz = g + j * GB, *gr = gz + NB, *gh = gz + 2 * NB;
            const float *sh_ = s + j * GB + 2 * NB;
            if (lbr) {
                const float *rb = L->rbh ? L->rbh + j * NB : NULL;
                for (size_t u = 0; u < NB; u++)
                    gh[u] = gh[u] + gr[u] * (rb ? sh_[u] + rb[u] : sh_[u]);
                qe_f32_rnn_clip(gh, NB, L->clip);
            } else {
                qe_f32_rnn_add_clip(gh, sh_, NB, L->clip);
            }
            sh->gates.gru_h(NB, gz, NULL, gh, NULL, hp + b * L->Hp + j * NB,
                            hn + b * L->Hp + j * NB);
        }
    }
}

static void qe_f32_rnn_write_y(const qe_f32_rnn_layer *L, int t, size_t j0, size_t j1,
                               const float *hn) {
    if (!L->y) return;
    const size_t NB = QE_F32_RNN_NB;
    const size_t u0 = j0 * NB, u1 = j1 * NB < (size_t)L->H ? j1 * NB : (size_t)L->H;
    if (u0 >= u1) return;
    for (size_t b = 0; b < (size_t)L->B; b++) {
        float *y = L->y + t * L->y_s + b * L->y_b;
        if (qe_f32_rnn_active(L, t, b))
            memcpy(y + u0, hn + b * L->Hp + u0, (u1 - u0) * sizeof(float));
        else
            memset(y + u0, 0, (u1 - u0) * sizeof(float));
    }
}

/* The per-thread body: blocks [j0, j1), all T steps, SYNC between dependent phases. */
#define QE_F32_RNN_BODY(SYNC)                                                                 \
    do {                                                                                      \
        for (int s = 0; s < L->T; s++) {                                                      \
            const int t = L->reverse ? L->T - 1 - s : s;                                      \
            const float *hp = sh.hbuf[s & 1];                                                 \
            float *hn = sh.hbuf[(s + 1) & 1];                                                 \
            if (L->kind == QE_F32_RNN_LSTM) {                                                 \
                qe_f32_rnn_lstm_step(&sh, t, j0, j1, hp, hn);                                 \
            } else {                                                                          \
                qe_f32_rnn_gru_zr(&sh, t, j0, j1, hp);                                        \
                if (!L->linear_before_reset) { SYNC; }                                        \
                qe_f32_rnn_gru_h(&sh, t, j0, j1, hp, hn);                                     \
            }                                                                                 \
            qe_f32_rnn_write_y(L, t, j0, j1, hn);                                             \
            SYNC;                                                                             \
        }                                                                                     \
    } while (0)

/* Returns QE_F32_OK, QE_F32_ENOMEM or QE_F32_EARG. */
static int qe_f32_rnn_layer_run(const qe_f32_rnn_layer *L) {
    const size_t NB = QE_F32_RNN_NB;
    qe_f32_rnn_shared sh;
    sh.L = L;
    sh.rec = qe_f32_conv_kernel_for_isa(L->isa);
    sh.gemv = qe_f32_gemv_kernel_for_isa(L->isa);
    sh.gates = qe_gates_for_isa(L->isa);
    sh.G = L->kind == QE_F32_RNN_LSTM ? 4 : 3;
    if ((L->kind != QE_F32_RNN_LSTM && L->kind != QE_F32_RNN_GRU) || L->T < 0 || L->B < 1 ||
        L->H < 1 || L->Hp % NB || L->Hp < L->H || L->r_tile != sh.rec->pc_nr || NB % sh.rec->pc_nr)
        return QE_F32_EARG;
    sh.nblocks = (size_t)L->Hp / NB;
    sh.GH = sh.G * L->Hp;
    const size_t BH = (size_t)L->B * L->Hp;
    /* shared by the team: the calling thread's QE_WS_CALL workspace */
    char *mem = (char *)qe_workspace(QE_WS_CALL, (size_t)L->Hp * sizeof(ptrdiff_t) +
                                                     sizeof(float) * (BH * (3 + sh.G) + 64));
    if (!mem) return QE_F32_ENOMEM;
    ptrdiff_t *off = (ptrdiff_t *)mem;
    for (int i = 0; i < L->Hp; i++) off[i] = i;
    sh.off = off;
    float *f = (float *)(mem + (size_t)L->Hp * sizeof(ptrdiff_t));
    sh.hbuf[0] = f;
    sh.hbuf[1] = f + BH;
    sh.rh = f + 2 * BH;
    sh.s = f + 3 * BH;
    memcpy(sh.hbuf[0], L->h, BH * sizeof(float));
    memcpy(sh.hbuf[1], L->h, BH * sizeof(float));
    memset(sh.rh, 0, BH * sizeof(float));

    int nt = qe_threads(L->nthreads);
    if ((double)L->B * sh.G * L->Hp * L->Hp < (double)QE_F32_RNN_PAR_MIN_MACS) nt = 1;
    if ((size_t)nt > sh.nblocks) nt = (int)sh.nblocks;
    if (nt <= 1) {
        const size_t j0 = 0, j1 = sh.nblocks;
        QE_F32_RNN_BODY((void)0);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int tid = omp_get_thread_num(), n = omp_get_num_threads();
            const size_t j0 = sh.nblocks * tid / n, j1 = sh.nblocks * (tid + 1) / n;
            QE_F32_RNN_BODY(_Pragma("omp barrier"));
        }
#endif
    }
    memcpy(L->h, sh.hbuf[L->T & 1], BH * sizeof(float));
    return QE_F32_OK;
}

#endif
