/* Static-int8 2-D convolution drivers, NHWC, u8 activations × s8 weights → u8 (docs/numerics.md,
 * "Integer GEMM", epilogue (b)). C, GIL-free; src_pyx/_conv.pyx wraps them.
 *
 *   qe_conv2d_gemm    any kernel/stride/dilation/padding/groups: im2col of a block of output
 *                     pixels written straight into the GEMM microkernel's packed-A layout
 *                     (qe_conv_im2col.h) in a per-thread buffer, then the GEMM microkernel and
 *                     requant epilogue of the same dispatch record as the packed weights.
 *                     When cin_g % KR == 0 and the record has igemm kernels, the block gets an
 *                     indirection buffer instead (one pointer per pixel and tap into x, or into
 *                     the z_a row for padding) and the igemm kernels read x in place: the im2col
 *                     copy of every input byte kh·kw times was 6–15% of ResNet-18's 3×3 convs.
 *   qe_conv2d_gemm_add  qe_conv2d_gemm with a residual QAdd fused into its epilogue: every
 *                     tile's requantized output block becomes QAdd(block, skip block) in place
 *                     while it is in L1, in the same parallel loop (../eltwise/qe_u8_residual.h).
 *   qe_conv2d_dw      depthwise (groups = C, one filter per channel): qe_dwconv.h.
 * 1×1 stride-1 unpadded convolutions need no im2col at all: the NHWC input already is the
 * [pixels, C] matrix, so _conv.pyx hands it to qe_gemm (qe_gemm_ex with a residual) directly
 * (per group: a column offset).
 *
 * Tiling: output tiles of (MC panels × MR pixels) × (NC columns) per group, handed out by
 * OpenMP. A tile packs its pixels once (MC·MR·KP bytes: ≤ 96·576 = 54 KiB for a 3×3×64 conv,
 * L2-resident) and runs every W panel of its column range over them. Columns are split only
 * when there are too few pixel blocks to keep the threads busy (late ResNet stages: 7×7 pixels,
 * 512 channels); the im2col of a block is then repeated per column block, which is cheap next
 * to the MACs it feeds. The bias passed in already holds bias_q − z_a·colsum (pack time), so the
 * epilogue runs with a_zp = NULL.
 *
 * qe_conv2d_gemm_nchw (dynamic quantization, F32 epilogue) writes float32 NCHW — the layout the
 * graph's float ops exchange — instead of NHWC: each column panel of a tile goes through the
 * epilogue into a per-thread [pixels × NR] buffer, which is then transposed into the NCHW rows
 * (qe_transpose_f32, with the fused clamp of an activation) while it is still in L1. The float
 * output, 4× the bytes of the u8 one, then crosses memory once instead of three times (NHWC
 * write, read, NCHW write).
 */
#ifndef QE_CONV_H
#define QE_CONV_H

#include "../qe_threads.h"
#include <stdlib.h>
#include "../gemm/qe_gemm.h"
#include "qe_conv_im2col.h"
#include "../layout/qe_transpose.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_CONV_BLOCK_BYTES (128u << 10)   /* upper bound for one tile's packed pixels */
#define QE_CONV_IND_PANELS 32              /* indirect: pixel panels per tile (27 KiB of 3×3 pointers) */
#define QE_CONV_W_SPLIT_BYTES (512u << 10) /* indirect: W above this splits columns first */

typedef struct qe_conv_ctx {
    const qe_gemm_kernel_rec *r;
    const qe_conv_shape *s;
    const qe_packed_w *w;              /* [groups], all packed for r */
    const qe_gemm_epilogue *ep;        /* col_bias/multiplier over all cout channels */
    const qe_u8_residual *res;         /* U8 only: NULL or the QAdd fused after each tile */
    const uint8_t *x, *zrow;
    uint8_t *y;
    size_t m, kp, mcp, ncp, nmb, nnb, npanels;
    int indirect;                      /* igemm over pointers into x instead of packed pixels */
    int nchw;                          /* F32 only: y is float NCHW, through the tile buffer */
    float lo, hi;                      /* nchw: the fused clamp (±inf: none) */
} qe_conv_ctx;

/* nchw: the panel's float block tb [rows][NR] (columns n0..n0+nr of group g, pixels m0..)
 * into y NCHW, split where the pixels cross from one image to the next */
static void qe_conv_store_nchw(const qe_conv_ctx *c, const float *tb, size_t ldt, size_t g,
                               size_t m0, size_t rows, size_t n0, size_t nr) {
    const qe_conv_shape *s = c->s;
    const size_t plane = s->oh * s->ow;
    float *y = (float *)c->y;
    for (size_t i = 0; i < rows;) {
        const size_t b = (m0 + i) / plane, pix = (m0 + i) % plane;
        const size_t len = rows - i < plane - pix ? rows - i : plane - pix;
        qe_transpose_f32(len, nr, tb + i * ldt, ldt,
                         y + (b * s->cout + g * s->cout_g + n0) * plane + pix, plane, c->lo, c->hi);
        i += len;
    }
}

static void qe_conv_run_tile(const qe_conv_ctx *c, size_t t, uint8_t *apack, uint8_t *row,
                             float *tb) {
    const qe_gemm_kernel_rec *r = c->r;
    const qe_conv_shape *s = c->s;
    int32_t ct[QE_GEMM_MR_MAX * QE_GEMM_NR_MAX] __attribute__((aligned(64)));
    const size_t mb = t % c->nmb, nb = (t / c->nmb) % c->nnb, g = t / (c->nmb * c->nnb);
    const size_t mrows = c->mcp * (size_t)r->mr;
    const size_t m0 = mb * mrows, rows = c->m - m0 < mrows ? c->m - m0 : mrows;
    const size_t ks = s->kh * s->kw, kc = s->cin_g / (size_t)r->kr;
    const uint8_t **ind = (const uint8_t **)(void *)apack;
    const qe_gemm_int32_tile ctile = {ct, (size_t)r->nr, (size_t)r->nr, NULL, NULL, 0};
    if (c->indirect)
        qe_conv_indirection(r, s, c->x, c->zrow, g, m0, rows, ind);
    else
        qe_conv_im2col_pack(r, s, c->x, c->zrow, g, m0, rows, c->kp, apack, row);
    const qe_packed_w *w = &c->w[g];
    qe_gemm_epilogue ep = *c->ep;
    size_t esize = 1;
    if (ep.kind == QE_EPI_U8) {
        ep.col_bias = c->ep->col_bias + g * s->cout_g;
        ep.multiplier = c->ep->multiplier + g * s->cout_g;
        ep.a_zp = NULL;                   /* static: −z_a·colsum is folded into col_bias */
    } else {                              /* F32 (dynamic): z_a known only now, per call */
        ep.w_scale = c->ep->w_scale + g * s->cout_g;
        if (ep.bias) ep.bias = c->ep->bias + g * s->cout_g;
        esize = sizeof(float);
    }
    const size_t kg = c->kp / (size_t)r->kr;
    const size_t apanel = (size_t)r->mr * c->kp * (size_t)r->elem;
    const size_t wpanel = (size_t)r->nr * c->kp * (size_t)r->elem;
    const size_t pn0 = nb * c->ncp, pn1 = pn0 + c->ncp < c->npanels ? pn0 + c->ncp : c->npanels;
    uint8_t *out = c->y + g * s->cout_g * esize;
    const int fused = qe_gemm_can_fuse(r, w, &ep);
    for (size_t pn = pn0; pn < pn1; pn++) {
        const size_t n0 = pn * (size_t)r->nr;
        const size_t nr = s->cout_g - n0 < (size_t)r->nr ? s->cout_g - n0 : (size_t)r->nr;
        const char *wp = (const char *)w->data + pn * wpanel;
        if (c->nchw) {
            /* the epilogue sees this panel's columns as 0..nr and pixels from m0 as 0.. */
            qe_packed_w wv = *w;
            wv.colsum = w->colsum + n0;
            qe_gemm_epilogue ev = ep;
            ev.w_scale = ep.w_scale + n0;
            if (ev.bias) ev.bias = ep.bias + n0;
            for (size_t p = 0; p * r->mr < rows; p++) {
                const size_t mr = rows - p * r->mr < (size_t)r->mr ? rows - p * r->mr : (size_t)r->mr;
                if (c->indirect)
                    r->igemm(mr, ks, kc, ind + p * ks * r->mr, wp, &ctile);
                else
                    r->ukernel(mr, kg, apack + p * apanel, wp, ct, 0);
                const qe_gemm_tile tile = {ct, (size_t)r->nr, mr, nr, p * r->mr, 0, NULL};
                r->epilogue(&tile, &wv, &ev, tb, (size_t)r->nr);
            }
            qe_conv_store_nchw(c, tb, (size_t)r->nr, g, m0, rows, n0, nr);
            continue;
        }
        for (size_t p = 0; p * r->mr < rows; p++) {
            const size_t mr = rows - p * r->mr < (size_t)r->mr ? rows - p * r->mr : (size_t)r->mr;
            if (fused) {
                const qe_gemm_requant_tile q = qe_gemm_requant_tile_at(
                    &ep, out + ((m0 + p * r->mr) * s->cout + n0) * esize, s->cout, n0, nr);
                if (c->indirect)
                    r->igemm_requant(mr, ks, kc, ind + p * ks * r->mr, wp, &q);
                else
                    r->ukernel_requant(mr, kg, apack + p * apanel, wp, &q);
                continue;
            }
            if (c->indirect)
                r->igemm(mr, ks, kc, ind + p * ks * r->mr, wp, &ctile);
            else
                r->ukernel(mr, kg, apack + p * apanel, wp, ct, 0);
            const qe_gemm_tile tile = {ct, (size_t)r->nr, mr, nr, m0 + p * r->mr, n0, NULL};
            r->epilogue(&tile, w, &ep, out, s->cout);
        }
    }
    if (c->res) {       /* the tile's pixels × its columns of group g are final: add the skip */
        const size_t n0 = pn0 * (size_t)r->nr, n1 = pn1 * (size_t)r->nr;
        const size_t cols = (n1 < s->cout_g ? n1 : s->cout_g) - n0;
        qe_u8_residual_block(c->res, c->y, s->cout, m0, rows, g * s->cout_g + n0, cols);
    }
}

/* x: uint8 NHWC [n, h, w, c]; w[g]: packed [cout_g, K] with K = kh·kw·cin_g in (ky, kx, ci)
 * order; a_zp: the input zero point (padding value). ep: either
 *   QE_EPI_U8  (static): col_bias (bias_q − z_a·colsum) / multiplier [cout]; y uint8 NHWC, or
 *   QE_EPI_F32 (dynamic quantization): a_scale / a_zp per tensor (the a_zp the input was
 *              quantized with, == a_zp), w_scale [cout], bias [cout] or NULL; y float NHWC.
 * Returns 0 or a QE_GEMM_E* code. */
static int qe_conv2d_gemm_impl(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                               const qe_packed_w *w, const qe_gemm_epilogue *ep,
                               const qe_u8_residual *res, uint8_t *y, int nchw, float lo,
                               float hi, int nthreads) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r) return QE_GEMM_EISA;
    const size_t k = s->kh * s->kw * s->cin_g;
    if (k < 1 || k > QE_GEMM_MAX_K) return QE_GEMM_EK;
    const int ok_u8 = ep->kind == QE_EPI_U8 && ep->multiplier && ep->col_bias && ep->lo <= ep->hi;
    const int ok_f32 = ep->kind == QE_EPI_F32 && ep->a_scale && ep->w_scale && ep->a_zp &&
                       ep->row_step == 0 && !ep->accumulate && *ep->a_zp == a_zp;
    if (s->groups < 1 || s->cin_g * s->groups != s->c || s->cout_g * s->groups != s->cout ||
        !(ok_u8 || ok_f32) || a_zp < 0 || a_zp > 255 || (nchw && !ok_f32))
        return QE_GEMM_EARG;
    if (res && (!ok_u8 || qe_u8_residual_check(res) || res->lds < s->cout)) return QE_GEMM_EARG;
    for (size_t g = 0; g < s->groups; g++)
        if (w[g].isa != isa || (size_t)w[g].k != k || (size_t)w[g].n != s->cout_g || w[g].w_zp ||
            (size_t)w[g].kp != qe_gemm_round_up(k, r->kpad))
            return QE_GEMM_EARG;
    qe_conv_ctx c;
    c.r = r; c.s = s; c.w = w; c.ep = ep; c.res = res; c.x = x; c.y = y;
    c.nchw = nchw; c.lo = lo; c.hi = hi;
    c.m = s->n * s->oh * s->ow;
    if (c.m == 0 || s->cout == 0) return QE_GEMM_OK;
    c.kp = qe_gemm_round_up(k, r->kpad);
    const size_t apanel = (size_t)r->mr * c.kp * (size_t)r->elem;
    const size_t mpanels = (c.m + r->mr - 1) / r->mr;
    c.npanels = (s->cout_g + r->nr - 1) / r->nr;
    c.ncp = c.npanels;
    c.indirect = r->igemm && r->igemm_requant && s->cin_g % (size_t)r->kr == 0;
    /* Packed pixels: a block holds at most QE_CONV_BLOCK_BYTES of them. Indirect: the block's
     * A is the input, read in place (its kh·kw-fold im2col never exists), so a block is as
     * large as its indirection buffer allows, and W, streamed once per pixel block, is what
     * the blocking saves (late ResNet layers: 49 pixels, 2.4 MB of W). */
    if (c.indirect) {
        c.mcp = mpanels < QE_CONV_IND_PANELS ? mpanels : QE_CONV_IND_PANELS;
    } else {
        c.mcp = QE_CONV_BLOCK_BYTES / apanel;
        c.mcp = c.mcp < 1 ? 1 : (c.mcp > QE_GEMM_MC_PANELS ? QE_GEMM_MC_PANELS : c.mcp);
    }

    int nt = qe_threads(nthreads);
    if ((double)c.m * (double)s->cout * (double)k < (double)QE_GEMM_PAR_MIN_MACS) nt = 1;
    /* enough tiles for the threads to share evenly: shrink pixel blocks, then split columns;
     * indirect with a W larger than half of L2 splits columns first, so that each W panel
     * still streams from memory once */
    const size_t wbytes = c.npanels * (size_t)r->nr * c.kp * (size_t)r->elem;
    if (c.indirect && wbytes > QE_CONV_W_SPLIT_BYTES)
        while (nt > 1 && c.ncp > 1 &&
               s->groups * ((mpanels + c.mcp - 1) / c.mcp) * ((c.npanels + c.ncp - 1) / c.ncp) <
                   (size_t)(4 * nt))
            c.ncp = (c.ncp + 1) / 2;
    while (nt > 1 && c.mcp > 1 &&
           s->groups * ((mpanels + c.mcp - 1) / c.mcp) * ((c.npanels + c.ncp - 1) / c.ncp) <
               (size_t)(4 * nt))
        c.mcp /= 2;
    c.nmb = (mpanels + c.mcp - 1) / c.mcp;
    while (nt > 1 && c.ncp > 1 && s->groups * c.nmb * ((c.npanels + c.ncp - 1) / c.ncp) < (size_t)(2 * nt))
        c.ncp = (c.ncp + 1) / 2;
    c.nnb = (c.npanels + c.ncp - 1) / c.ncp;
    const size_t ntiles = s->groups * c.nmb * c.nnb;
    if ((size_t)nt > ntiles) nt = (int)ntiles;

    /* per thread: the packed pixels (or their indirection pointers), then a panel's gathered receptive fields (MR_MAX · kp
     * bytes), then (nchw) the float tile buffer; each buffer stays 64-aligned. After them, one
     * row of z_a (the padding). */
    const size_t ind_bytes = c.mcp * (size_t)r->mr * s->kh * s->kw * sizeof(const uint8_t *);
    const size_t apart = qe_gemm_round_up(c.indirect ? ind_bytes : c.mcp * apanel, 64);
    const size_t gpart = qe_gemm_round_up(QE_GEMM_MR_MAX * c.kp, 64);
    const size_t block = apart + gpart +
                         (nchw ? qe_gemm_round_up(c.mcp * (size_t)r->mr * (size_t)r->nr * 4, 64) : 0);
    uint8_t *base = (uint8_t *)qe_workspace(QE_WS_CALL, block * (size_t)nt + s->cin_g);
    if (!base) return QE_GEMM_ENOMEM;
    uint8_t *zrow = base + block * (size_t)nt;
    memset(zrow, a_zp, s->cin_g);
    c.zrow = zrow;
    if (nt <= 1) {
        for (size_t t = 0; t < ntiles; t++)
            qe_conv_run_tile(&c, t, base, base + apart, (float *)(base + apart + gpart));
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            uint8_t *mine = base + (size_t)omp_get_thread_num() * block;
            #pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ntiles; t++)
                qe_conv_run_tile(&c, t, mine, mine + apart, (float *)(mine + apart + gpart));
        }
#endif
    }
    return QE_GEMM_OK;
}

static int qe_conv2d_gemm(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                          const qe_packed_w *w, const qe_gemm_epilogue *ep, uint8_t *y,
                          int nthreads) {
    return qe_conv2d_gemm_impl(isa, s, x, a_zp, w, ep, NULL, y, 0, 0.0f, 0.0f, nthreads);
}

/* qe_conv2d_gemm (ep QE_EPI_U8) followed by y = QAdd(y, skip) with res->skip [n·oh·ow][lds ≥
 * cout] in y's pixel and channel order: the add runs on each tile's output block right after
 * the tile is requantized, inside the same parallel loop; the bytes equal qe_conv2d_gemm then
 * qe_u8_binary(QE_BINARY_ADD, y, skip). skip must not overlap y. */
static int qe_conv2d_gemm_add(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                              const qe_packed_w *w, const qe_gemm_epilogue *ep,
                              const qe_u8_residual *res, uint8_t *y, int nthreads) {
    if (!res) return QE_GEMM_EARG;
    return qe_conv2d_gemm_impl(isa, s, x, a_zp, w, ep, res, y, 0, 0.0f, 0.0f, nthreads);
}

/* Dynamic quantization with float32 NCHW output: ep is QE_EPI_F32 as for qe_conv2d_gemm, y float
 * NCHW [n, cout, oh, ow], each value clamped to [lo, hi] (qe_transpose_f32's rule; ±inf: none). */
static int qe_conv2d_gemm_nchw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                               const qe_packed_w *w, const qe_gemm_epilogue *ep, float *y,
                               float lo, float hi, int nthreads) {
    return qe_conv2d_gemm_impl(isa, s, x, a_zp, w, ep, NULL, (uint8_t *)y, 1, lo, hi, nthreads);
}

#endif
