/* Static-int8 convolution and GEMM with 4-bit weights held two per byte in memory
 * (StaticQuantConfig(weight_bits=4), QAT W4, INT4 QDQ imports): u8 NHWC × int4 → u8 NHWC.
 *
 * The result is epilogue (b) of docs/numerics.md on the same int32 accumulator as the int8
 * drivers (qe_conv.h): the 4-bit kernels (qe_gemm_w4.h) in their integer mode produce
 * Σ_k a·w exactly — the nibbles are the int8 weights' own values, +8, and the offset is removed
 * per row — and the int8 dispatch record's requantizing epilogue finishes it (col_bias holds
 * bias_q − z_a·colsum, folded at pack time, so a_zp is NULL there as in qe_conv.h). The bytes
 * equal the int8 kernels' on the same int8 weights, on every ISA and thread count.
 *
 * One driver for Conv and Gemm: a Gemm [M, K] is the 1×1 stride-1 unpadded convolution of an
 * image of 1 × M pixels with K channels. A block of QE_CONV_W4_MB output pixels gathers its
 * receptive fields as rows of KP bytes (K, then a zero tail: KP = the weights' gs, a multiple of
 * 16; a padded tap reads z_a, which the folded bias cancels as in qe_conv_im2col.h), or reads the
 * input in place when it already is those rows (1×1, stride 1, no padding, one group, C = KP).
 * Each 4-row quad of the block then meets every 16-row weight panel of its group, one kernel call
 * each into an int32 block [4][N], and one epilogue call requantizes that block while it is in
 * L1 (4·N·4 bytes: 16 KiB at N = 1024); with a residual
 * (QConvAdd), the block's output then gets its QAdd in place, as in qe_conv2d_gemm_add.
 * Threads take (group, pixel block) tiles; the weights of one group (≤ 0.5 byte per weight) are
 * re-read by every block from L2.
 *
 * Entry point (0 or a negative QE_GEMM_E* code, never an abort):
 *   qe_conv2d_w4(isa, shape, x, a_zp, w[groups], ep (U8 / S8), res or NULL, y, nthreads)
 * w[g] holds one group per row (ng = 1: a static layer's weight scales are per channel; the
 * scales inside the packing are unused here, the multipliers being in ep).
 */
#ifndef QE_CONV_W4_H
#define QE_CONV_W4_H

#include "../qe_threads.h"
#include <string.h>
#include "../gemm/qe_gemm.h"
#include "../gemm/qe_gemm_w4.h"
#include "../eltwise/qe_u8_residual.h"
#include "qe_conv_im2col.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_CONV_W4_MB 64   /* output pixels per block: rows of ≤ 64·KP bytes, L2-resident */

typedef struct qe_conv_w4_ctx {
    const qe_w4_kernel_rec *r4;
    const qe_gemm_kernel_rec *r8;      /* its epilogue only */
    const qe_conv_shape *s;
    const qe_packed_w4 *w;
    const qe_gemm_epilogue *ep;
    const qe_u8_residual *res;
    const uint8_t *x, *zrow;
    uint8_t *y;
    size_t m, k, kp, np, nmb, esize;  /* np: 16-row weight panels per group */
    int in_place;                      /* the input already is the rows */
} qe_conv_w4_ctx;

/* Rows [m0, m0 + rows) of group g's virtual im2col matrix into buf (stride kp; the tail past K
 * is left as it is: zero from the caller). */
static void qe_conv_w4_gather(const qe_conv_w4_ctx *c, size_t g, size_t m0, size_t rows,
                              uint8_t *buf) {
    const qe_conv_shape *s = c->s;
    const size_t cin_g = s->cin_g;
    qe_conv_pixel px = qe_conv_pixel_at(s, m0);
    for (size_t i = 0; i < rows; i++, qe_conv_pixel_next(s, &px)) {
        const uint8_t *img = c->x + px.b * s->h * s->w * s->c + g * cin_g;
        const ptrdiff_t iy0 = (ptrdiff_t)(px.oy * s->sh) - (ptrdiff_t)s->pt;
        const ptrdiff_t ix0 = (ptrdiff_t)(px.ox * s->sw) - (ptrdiff_t)s->pl;
        uint8_t *d = buf + i * c->kp;
        for (size_t ky = 0; ky < s->kh; ky++) {
            const ptrdiff_t iy = iy0 + (ptrdiff_t)(ky * s->dh);
            for (size_t kx = 0; kx < s->kw; kx++, d += cin_g) {
                const ptrdiff_t ix = ix0 + (ptrdiff_t)(kx * s->dw);
                const int in = iy >= 0 && iy < (ptrdiff_t)s->h && ix >= 0 && ix < (ptrdiff_t)s->w;
                qe_conv_copy_small(d, in ? img + ((size_t)iy * s->w + (size_t)ix) * s->c : c->zrow,
                                   cin_g);
            }
        }
    }
}

static void qe_conv_w4_run_tile(const qe_conv_w4_ctx *c, size_t t, uint8_t *buf,
                                int32_t *rterm, int32_t *ct) {
    const qe_conv_shape *s = c->s;
    const size_t g = t / c->nmb, m0 = t % c->nmb * QE_CONV_W4_MB;
    const size_t rows = c->m - m0 < QE_CONV_W4_MB ? c->m - m0 : QE_CONV_W4_MB;
    const qe_packed_w4 *w = &c->w[g];
    const uint8_t *a = buf;
    if (c->in_place)
        a = c->x + m0 * c->kp;
    else
        qe_conv_w4_gather(c, g, m0, rows, buf);
    qe_gemm_w4_row_terms(rows, a, c->kp, w, rterm);
    qe_gemm_epilogue ep = *c->ep;
    ep.col_bias = c->ep->col_bias + g * s->cout_g;
    ep.multiplier = c->ep->multiplier + g * s->cout_g;
    ep.a_zp = NULL;                       /* −z_a·colsum is folded into col_bias */
    /* the epilogue reads colsum[n] only to multiply it by z_a = 0; ng = 1 makes the packing's
     * [NP][1][16] column sums exactly that [N] vector */
    const qe_packed_w wv = {w->data, w->colsum, NULL, w->n, w->k, (int32_t)c->kp, c->r8->isa};
    uint8_t *out = c->y + g * s->cout_g * c->esize;
    for (size_t q = 0; q < rows; q += QE_W4_MR) {
        const size_t mr = rows - q < QE_W4_MR ? rows - q : QE_W4_MR;
        /* every panel of the quad into one int32 row block, then one epilogue call for all
         * its columns (per 4×16 tile, the call cost as much as the MACs of a small-K 1×1) */
        for (size_t p = 0; p < c->np; p++) {
            qe_w4_tile tile = qe_gemm_w4_tile_at(w, a, c->kp, rterm, NULL, NULL, 0, NULL, NULL, 0,
                                                 0, q, p);
            tile.acc_out = ct + p * QE_W4_NR;
            tile.acc_ld = c->np * QE_W4_NR;
            c->r4->ukernel(mr, &tile);
        }
        const qe_gemm_tile et = {ct, c->np * QE_W4_NR, mr, s->cout_g, m0 + q, 0, NULL};
        c->r8->epilogue(&et, &wv, &ep, out, s->cout);
    }
    if (c->res) qe_u8_residual_block(c->res, c->y, s->cout, m0, rows, g * s->cout_g, s->cout_g);
}

static int qe_conv2d_w4(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                        const qe_packed_w4 *w, const qe_gemm_epilogue *ep,
                        const qe_u8_residual *res, uint8_t *y, int nthreads) {
    qe_conv_w4_ctx c;
    c.r4 = qe_gemm_w4_kernel_for_isa(isa);
    c.r8 = qe_gemm_kernel_for_isa(isa);
    if (!c.r4 || !c.r8) return QE_GEMM_EISA;
    c.k = s->kh * s->kw * s->cin_g;
    if (c.k < 1 || c.k > QE_W4_MAX_K) return QE_GEMM_EK;
    const int ok_q = (ep->kind == QE_EPI_U8 || ep->kind == QE_EPI_S8) && ep->multiplier &&
                     ep->col_bias && ep->lo <= ep->hi;
    if (s->groups < 1 || s->cin_g * s->groups != s->c || s->cout_g * s->groups != s->cout ||
        !ok_q || a_zp < 0 || a_zp > 255 || (res && (ep->kind != QE_EPI_U8 ||
        qe_u8_residual_check(res) || res->lds < s->cout)))
        return QE_GEMM_EARG;
    c.kp = (size_t)w[0].gs;
    for (size_t g = 0; g < s->groups; g++)
        if ((size_t)w[g].k != c.k || (size_t)w[g].n != s->cout_g || w[g].ng != 1 ||
            (size_t)w[g].gs != c.kp || c.kp % 16 || c.kp < c.k)
            return QE_GEMM_EARG;
    c.s = s; c.w = w; c.ep = ep; c.res = res; c.x = x; c.y = y;
    c.esize = 1;
    c.m = s->n * s->oh * s->ow;
    if (c.m == 0 || s->cout == 0) return QE_GEMM_OK;
    c.in_place = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 &&
                 s->pl == 0 && s->groups == 1 && s->c == c.kp && s->oh == s->h && s->ow == s->w;
    c.nmb = (c.m + QE_CONV_W4_MB - 1) / QE_CONV_W4_MB;
    const size_t ntiles = s->groups * c.nmb;
    int nt = qe_threads(nthreads);
    if ((double)c.m * (double)s->cout * (double)c.k < (double)QE_GEMM_PAR_MIN_MACS) nt = 1;
    if ((size_t)nt > ntiles) nt = (int)ntiles;
    /* per thread: the block's rows (zero tails), its offset terms, the int32 rows of a quad;
     * after all threads, one row of z_a (the padding taps) */
    c.np = (s->cout_g + QE_W4_NR - 1) / QE_W4_NR;
    const size_t rbytes = qe_gemm_round_up(QE_CONV_W4_MB * c.kp, 64);
    const size_t tbytes = qe_gemm_round_up(QE_CONV_W4_MB * sizeof(int32_t), 64);
    const size_t block = rbytes + tbytes + QE_W4_MR * c.np * QE_W4_NR * sizeof(int32_t);
    uint8_t *base = (uint8_t *)qe_workspace(QE_WS_CALL, block * (size_t)nt + s->cin_g);
    if (!base) return QE_GEMM_ENOMEM;
    uint8_t *zrow = base + block * (size_t)nt;
    memset(zrow, a_zp, s->cin_g);
    c.zrow = zrow;
    for (int i = 0; i < nt; i++) memset(base + (size_t)i * block, 0, rbytes);
    if (nt <= 1) {
        for (size_t t = 0; t < ntiles; t++)
            qe_conv_w4_run_tile(&c, t, base, (int32_t *)(void *)(base + rbytes),
                                (int32_t *)(void *)(base + rbytes + tbytes));
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            uint8_t *mine = base + (size_t)omp_get_thread_num() * block;
            #pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ntiles; t++)
                qe_conv_w4_run_tile(&c, t, mine, (int32_t *)(void *)(mine + rbytes),
                                    (int32_t *)(void *)(mine + rbytes + tbytes));
        }
#endif
    }
    return QE_GEMM_OK;
}

#endif
