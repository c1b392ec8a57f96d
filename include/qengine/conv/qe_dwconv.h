/* Depthwise 2-D convolution driver (groups = channels, multiplier 1), NHWC u8 → u8.
 * The multiplier > 1 case is run by qengine/quantized/conv.py on the input with each channel
 * repeated `multiplier` times, which turns it into multiplier 1.
 *
 * Per output row, the pixels whose taps all lie inside the input horizontally form one run:
 * the microkernel gets one tap pointer per (ky, kx) for the first of them and advances every
 * pointer by stride_w·C per pixel (qe_dwconv_params.h), so it keeps its weights loaded across
 * pixels and the driver does no per-pixel work. A tap row in the top/bottom padding points
 * into `zbuf` (W·C bytes of z_a, so the same offsets stay inside it); the few edge pixels with a
 * tap in the left/right padding are run one at a time with zbuf for those taps. A padded tap
 * then contributes z_a·w, which the folded bias cancels.
 * OpenMP over (output row, channel chunk) items; each thread keeps its own pointer array.
 *
 * qe_conv2d_dw_dequant is the dynamic-quantization twin: the same rows and runs through the
 * record's dequant kernel (float32 out, docs/numerics.md epilogue (a)), with the per-call
 * −z_a·Σw and float32(s_a·s_w) made here, and the output written NCHW — the layout the graph's
 * float ops use — by transposing each finished (row, channel chunk) from a per-thread row
 * buffer while it is still in L1/L2, instead of a separate pass over the whole tensor.
 */
#ifndef QE_DWCONV_H
#define QE_DWCONV_H

#include "../qe_threads.h"
#include <stdlib.h>
#include <string.h>
#include "../qe_cpu.h"
#include "qe_conv_im2col.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c1__scalar.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c8__avx2.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c16__avx2.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h"
#include "qe_u8_s8_dwconv_dequant_ukernel_c1__scalar.h"
#include "qe_u8_s8_dwconv_dequant_ukernel_c8__avx2.h"
#include "qe_u8_s8_dwconv_dequant_ukernel_c64__avx512vnni.h"
#include "../layout/qe_transpose.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_DWCONV_PAR_MIN_MACS (1 << 18)

/* The kernels of an ISA (requantizing and dequantizing: the same accumulation, the same packed
 * layout) with the layout they read and their channel block (chunks handed to them start at
 * multiples of cblock). */
typedef struct qe_dwconv_kernel_rec {
    qe_dwconv_ukernel_fn fn;
    const char *name;
    qe_dwconv_dequant_ukernel_fn dequant;
    const char *dequant_name;
    int32_t layout;
    size_t cblock;
} qe_dwconv_kernel_rec;

#define QE_DW_REC(minmax, dequant, layout, cblock) {minmax, #minmax, dequant, #dequant, layout, cblock}

static const qe_dwconv_kernel_rec *qe_dwconv_kernel_for_isa(int isa) {
    static const qe_dwconv_kernel_rec scalar = QE_DW_REC(
        qe_u8_s8_dwconv_minmax_ukernel_c1__scalar, qe_u8_s8_dwconv_dequant_ukernel_c1__scalar,
        QE_DW_LAYOUT_I32, 1);
#if QE_HAVE_X86_SIMD
    static const qe_dwconv_kernel_rec avx2 = QE_DW_REC(
        qe_u8_s8_dwconv_minmax_ukernel_c16__avx2, qe_u8_s8_dwconv_dequant_ukernel_c8__avx2,
        QE_DW_LAYOUT_I32, 16);
    static const qe_dwconv_kernel_rec vnni = QE_DW_REC(
        qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni,
        qe_u8_s8_dwconv_dequant_ukernel_c64__avx512vnni, QE_DW_LAYOUT_C64, 64);
    if (isa == QE_ISA_AVX512VNNI) return &vnni;
    if (isa == QE_ISA_AVX2) return &avx2;
#endif
    (void)isa;
    return &scalar;
}
#undef QE_DW_REC

static const char *qe_dwconv_ukernel_name(int isa) { return qe_dwconv_kernel_for_isa(isa)->name; }
static const char *qe_dwconv_dequant_ukernel_name(int isa) {
    return qe_dwconv_kernel_for_isa(isa)->dequant_name;
}
static int qe_dwconv_layout(int isa) { return qe_dwconv_kernel_for_isa(isa)->layout; }

/* Output row `row` (n·oh + oy), channels [c0, c1), written at yrow (that row's pixel 0, C
 * values per pixel): uint8 through r->fn, or float32 through r->dequant when f32.
 * scratch: ntaps + kh pointers. */
static void qe_dwconv_row(const qe_dwconv_kernel_rec *r, const qe_conv_shape *s,
                          const uint8_t *x, const uint8_t *zbuf, const qe_dwconv_params *p,
                          void *yrow, int f32, size_t row, size_t c0, size_t c1, ptrdiff_t ox_a,
                          ptrdiff_t ox_b, const uint8_t **scratch) {
    const size_t ntaps = s->kh * s->kw, c = s->c;
    const uint8_t **taps = scratch, **rows = scratch + ntaps;
    const size_t b = row / s->oh, oy = row % s->oh;
    const uint8_t *img = x + b * s->h * s->w * c;
    for (size_t ky = 0; ky < s->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
        rows[ky] = iy >= 0 && iy < (ptrdiff_t)s->h ? img + (size_t)iy * s->w * c : zbuf;
    }
    for (ptrdiff_t ox = 0; ox < (ptrdiff_t)s->ow;) {
        const int run = ox == ox_a && ox_a < ox_b;
        size_t t = 0;
        for (size_t ky = 0; ky < s->kh; ky++)
            for (size_t kx = 0; kx < s->kw; kx++, t++) {
                const ptrdiff_t ix = ox * (ptrdiff_t)s->sw + (ptrdiff_t)(kx * s->dw) - (ptrdiff_t)s->pl;
                taps[t] = ix >= 0 && ix < (ptrdiff_t)s->w ? rows[ky] + (size_t)ix * c : zbuf;
            }
        const size_t npix = run ? (size_t)(ox_b - ox_a) : 1;
        if (f32)
            r->dequant(c0, c1, npix, ntaps, taps, s->sw * c, p, (float *)yrow + (size_t)ox * c, c);
        else
            r->fn(c0, c1, npix, ntaps, taps, s->sw * c, p, (uint8_t *)yrow + (size_t)ox * c, c);
        ox += (ptrdiff_t)npix;
    }
}

/* How a call is split: the run [ox_a, ox_b) of output columns whose taps are all inside the
 * input, the thread count, and items = rows × channel chunks of `chunk` channels. */
typedef struct qe_dwconv_plan {
    ptrdiff_t ox_a, ox_b;
    int nt;
    size_t nchunks, chunk, items;
} qe_dwconv_plan;

static qe_dwconv_plan qe_dwconv_make_plan(const qe_dwconv_kernel_rec *r, const qe_conv_shape *s,
                                          int nthreads) {
    qe_dwconv_plan pl;
    const size_t rows = s->n * s->oh, ntaps = s->kh * s->kw;
    const ptrdiff_t sw = (ptrdiff_t)s->sw, pleft = (ptrdiff_t)s->pl;
    pl.ox_a = (pleft + sw - 1) / sw;
    const ptrdiff_t last = (ptrdiff_t)s->w - 1 + pleft - (ptrdiff_t)((s->kw - 1) * s->dw);
    pl.ox_b = last < 0 ? 0 : last / sw + 1;
    if (pl.ox_b > (ptrdiff_t)s->ow) pl.ox_b = (ptrdiff_t)s->ow;
    int nt = qe_threads(nthreads);
    if ((double)rows * (double)s->ow * (double)s->c * (double)ntaps < (double)QE_DWCONV_PAR_MIN_MACS) nt = 1;
    /* split channels too when there are few rows for the threads (late layers: 7×7, 960 ch) */
    const size_t nblocks = (s->c + r->cblock - 1) / r->cblock;
    size_t nchunks = 1;
    if (nt > 1 && rows < (size_t)(8 * nt)) {
        nchunks = ((size_t)(8 * nt) + rows - 1) / rows;
        if (nchunks > nblocks) nchunks = nblocks;
    }
    pl.chunk = (nblocks + nchunks - 1) / nchunks * r->cblock;
    pl.nchunks = (s->c + pl.chunk - 1) / pl.chunk;
    pl.items = rows * pl.nchunks;
    if ((size_t)nt > pl.items) nt = (int)pl.items;
    pl.nt = nt;
    return pl;
}

/* x uint8 NHWC [n, h, w, c], y uint8 NHWC [n, oh, ow, c]; p packed in the layout of the ISA's
 * kernel (qe_dwconv_layout). Returns 0, -2 (no memory) or -4 (bad arguments). */
static int qe_conv2d_dw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                        const qe_dwconv_params *p, uint8_t *y, int nthreads) {
    const qe_dwconv_kernel_rec *r = qe_dwconv_kernel_for_isa(isa);
    if (s->c != s->cout || p->layout != r->layout ||
        (p->layout == QE_DW_LAYOUT_I32 && p->wstride < s->c) || p->lo > p->hi || p->lo < 0 ||
        p->hi > 255 || p->zp < 0 || p->zp > 255 || a_zp < 0 || a_zp > 255 ||
        s->kh * s->kw < 1 || s->sw < 1 || s->sh < 1)
        return -4;
    const size_t ntaps = s->kh * s->kw;
    if (s->n * s->oh == 0 || s->ow == 0 || s->c == 0) return 0;
    const qe_dwconv_plan pl = qe_dwconv_make_plan(r, s, nthreads);
    const int nt = pl.nt;
    qe_dwconv_params pk = *p;
    pk.kw = (int32_t)s->kw;
    pk.mult_lt1 = 1;    /* per call: C floats, a vectorized scan (& not &&: no branches) */
    const size_t nmult = p->layout == QE_DW_LAYOUT_C64 ? (s->c + 63) / 64 * 64 : s->c;
    for (size_t i = 0; i < nmult; i++) pk.mult_lt1 &= (p->mult[i] < 1.0f) & (p->mult[i] > -1.0f);
    p = &pk;

    /* the calling thread's workspace: each thread's tap pointers, then W·C bytes of z_a */
    const size_t nscratch = ntaps + s->kh;
    const size_t zlen = (s->w ? s->w : 1) * s->c;
    const uint8_t **scratch = (const uint8_t **)qe_workspace(
        QE_WS_CALL, sizeof(*scratch) * nscratch * (size_t)nt + zlen);
    if (!scratch) return -2;
    uint8_t *zbuf = (uint8_t *)(scratch + nscratch * (size_t)nt);
    memset(zbuf, a_zp, zlen);
    const size_t rowlen = s->ow * s->c;
    if (nt <= 1) {
        for (size_t it = 0; it < pl.items; it++) {
            const size_t row = it / pl.nchunks, c0 = (it % pl.nchunks) * pl.chunk;
            const size_t c1 = c0 + pl.chunk < s->c ? c0 + pl.chunk : s->c;
            qe_dwconv_row(r, s, x, zbuf, p, y + row * rowlen, 0, row, c0, c1, pl.ox_a, pl.ox_b,
                          scratch);
        }
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const uint8_t **mine = scratch + (size_t)omp_get_thread_num() * nscratch;
            #pragma omp for schedule(static)
            for (size_t it = 0; it < pl.items; it++) {
                const size_t row = it / pl.nchunks, c0 = (it % pl.nchunks) * pl.chunk;
                const size_t c1 = c0 + pl.chunk < s->c ? c0 + pl.chunk : s->c;
                qe_dwconv_row(r, s, x, zbuf, p, y + row * rowlen, 0, row, c0, c1, pl.ox_a,
                              pl.ox_b, mine);
            }
        }
#endif
    }
    return 0;
}

/* Dynamic quantization. x uint8 NHWC [n, h, w, c] quantized with (a_scale, a_zp); weights packed
 * in the ISA kernel's layout (pk->w, pk->wstride, pk->layout; the rest of *pk is ignored), wsum
 * Σ_t w[t][c] in that layout's bias order (nwsum entries: C, or C padded to 64 for C64), w_scale
 * and bias (or NULL) [C] in channel order. y float32 NCHW [n, c, oh, ow]:
 *   y[b, c, oy, ox] = float32(Σ_t (x − z_a)·w) · float32(a_scale·w_scale[c]) (+ bias[c]),
 * clamped to [lo, hi] by the row transpose (qe_transpose_f32; ±inf: no clamp).
 * Returns 0, -2 (no memory) or -4 (bad arguments). */
static int qe_conv2d_dw_dequant(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                                float a_scale, const qe_dwconv_params *pk, const int32_t *wsum,
                                size_t nwsum, const float *w_scale, const float *bias, float lo,
                                float hi, float *y, int nthreads) {
    const qe_dwconv_kernel_rec *r = qe_dwconv_kernel_for_isa(isa);
    const size_t cpad = r->layout == QE_DW_LAYOUT_C64 ? (s->c + 63) / 64 * 64 : s->c;
    if (s->c != s->cout || pk->layout != r->layout || nwsum != cpad ||
        (pk->layout == QE_DW_LAYOUT_I32 && pk->wstride < s->c) || a_zp < 0 || a_zp > 255 ||
        s->kh * s->kw < 1 || s->sw < 1 || s->sh < 1)
        return -4;
    const size_t ntaps = s->kh * s->kw, rows = s->n * s->oh;
    if (rows == 0 || s->ow == 0 || s->c == 0) return 0;
    const qe_dwconv_plan pl = qe_dwconv_make_plan(r, s, nthreads);
    const int nt = pl.nt;

    /* the calling thread's workspace: the per-call −z_a·Σw [cpad] and float32(s_a·s_w) [C],
     * each thread's tap pointers and row buffer (ow·C floats), then W·C bytes of z_a */
    const size_t nscratch = ntaps + s->kh, rowlen = s->ow * s->c;
    const size_t zlen = (s->w ? s->w : 1) * s->c;
    const size_t head = ((cpad + s->c) * 4 + 63) / 64 * 64;
    const size_t ptrs = (sizeof(uint8_t *) * nscratch + 63) / 64 * 64;
    const size_t per_thread = ptrs + (rowlen * sizeof(float) + 63) / 64 * 64;
    uint8_t *ws = (uint8_t *)qe_workspace(QE_WS_CALL, head + per_thread * (size_t)nt + zlen);
    if (!ws) return -2;
    int32_t *zbias = (int32_t *)ws;
    float *mult = (float *)(zbias + cpad);
    uint8_t *zbuf = ws + head + per_thread * (size_t)nt;
    memset(zbuf, a_zp, zlen);
    for (size_t i = 0; i < cpad; i++) zbias[i] = (int32_t)(0u - (uint32_t)a_zp * (uint32_t)wsum[i]);
    for (size_t c = 0; c < s->c; c++) mult[c] = a_scale * w_scale[c];
    qe_dwconv_params p = *pk;
    p.bias = zbias;
    p.mult = mult;
    p.fbias = bias;
    p.kw = (int32_t)s->kw;
    p.zp = p.lo = 0;
    p.hi = 255;
    const size_t plane = s->oh * s->ow;
    if (nt <= 1) {
        const uint8_t **taps = (const uint8_t **)(ws + head);
        float *rowbuf = (float *)(ws + head + ptrs);
        for (size_t it = 0; it < pl.items; it++) {
            const size_t row = it / pl.nchunks, c0 = (it % pl.nchunks) * pl.chunk;
            const size_t c1 = c0 + pl.chunk < s->c ? c0 + pl.chunk : s->c;
            const size_t b = row / s->oh, oy = row % s->oh;
            qe_dwconv_row(r, s, x, zbuf, &p, rowbuf, 1, row, c0, c1, pl.ox_a, pl.ox_b, taps);
            qe_transpose_f32(s->ow, c1 - c0, rowbuf + c0, s->c,
                             y + (b * s->c + c0) * plane + oy * s->ow, plane, lo, hi);
        }
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            uint8_t *mine = ws + head + (size_t)omp_get_thread_num() * per_thread;
            const uint8_t **taps = (const uint8_t **)mine;
            float *rowbuf = (float *)(mine + ptrs);
            #pragma omp for schedule(static)
            for (size_t it = 0; it < pl.items; it++) {
                const size_t row = it / pl.nchunks, c0 = (it % pl.nchunks) * pl.chunk;
                const size_t c1 = c0 + pl.chunk < s->c ? c0 + pl.chunk : s->c;
                const size_t b = row / s->oh, oy = row % s->oh;
                qe_dwconv_row(r, s, x, zbuf, &p, rowbuf, 1, row, c0, c1, pl.ox_a, pl.ox_b, taps);
                qe_transpose_f32(s->ow, c1 - c0, rowbuf + c0, s->c,
                                 y + (b * s->c + c0) * plane + oy * s->ow, plane, lo, hi);
            }
        }
#endif
    }
    return 0;
}

#endif
