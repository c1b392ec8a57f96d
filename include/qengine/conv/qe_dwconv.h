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
#include "qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_DWCONV_PAR_MIN_MACS (1 << 18)

/* The kernel of an ISA with the packed layout it reads and its channel block (chunks handed to
 * it start at multiples of cblock). */
typedef struct qe_dwconv_kernel_rec {
    qe_dwconv_ukernel_fn fn;
    const char *name;
    int32_t layout;
    size_t cblock;
} qe_dwconv_kernel_rec;

static const qe_dwconv_kernel_rec *qe_dwconv_kernel_for_isa(int isa) {
    static const qe_dwconv_kernel_rec scalar = {
        qe_u8_s8_dwconv_minmax_ukernel_c1__scalar,
        "qe_u8_s8_dwconv_minmax_ukernel_c1__scalar", QE_DW_LAYOUT_I32, 1};
#if QE_HAVE_X86_SIMD
    static const qe_dwconv_kernel_rec avx2 = {
        qe_u8_s8_dwconv_minmax_ukernel_c8__avx2,
        "qe_u8_s8_dwconv_minmax_ukernel_c8__avx2", QE_DW_LAYOUT_I32, 8};
    static const qe_dwconv_kernel_rec vnni = {
        qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni,
        "qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni", QE_DW_LAYOUT_C64, 64};
    if (isa == QE_ISA_AVX512VNNI) return &vnni;
    if (isa == QE_ISA_AVX2) return &avx2;
#endif
    (void)isa;
    return &scalar;
}

static const char *qe_dwconv_ukernel_name(int isa) { return qe_dwconv_kernel_for_isa(isa)->name; }
static int qe_dwconv_layout(int isa) { return qe_dwconv_kernel_for_isa(isa)->layout; }

/* Output row `row` (n·oh + oy), channels [c0, c1). scratch: ntaps + kh pointers. */
static void qe_dwconv_row(const qe_dwconv_kernel_rec *r, const qe_conv_shape *s,
                          const uint8_t *x, const uint8_t *zbuf, const qe_dwconv_params *p,
                          uint8_t *y, size_t row, size_t c0, size_t c1, ptrdiff_t ox_a,
                          ptrdiff_t ox_b, const uint8_t **scratch) {
    const size_t ntaps = s->kh * s->kw, c = s->c;
    const uint8_t **taps = scratch, **rows = scratch + ntaps;
    const size_t b = row / s->oh, oy = row % s->oh;
    const uint8_t *img = x + b * s->h * s->w * c;
    for (size_t ky = 0; ky < s->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
        rows[ky] = iy >= 0 && iy < (ptrdiff_t)s->h ? img + (size_t)iy * s->w * c : zbuf;
    }
    uint8_t *yrow = y + row * s->ow * c;
    for (ptrdiff_t ox = 0; ox < (ptrdiff_t)s->ow;) {
        const int run = ox == ox_a && ox_a < ox_b;
        size_t t = 0;
        for (size_t ky = 0; ky < s->kh; ky++)
            for (size_t kx = 0; kx < s->kw; kx++, t++) {
                const ptrdiff_t ix = ox * (ptrdiff_t)s->sw + (ptrdiff_t)(kx * s->dw) - (ptrdiff_t)s->pl;
                taps[t] = ix >= 0 && ix < (ptrdiff_t)s->w ? rows[ky] + (size_t)ix * c : zbuf;
            }
        const size_t npix = run ? (size_t)(ox_b - ox_a) : 1;
        r->fn(c0, c1, npix, ntaps, taps, s->sw * c, p, yrow + (size_t)ox * c, c);
        ox += (ptrdiff_t)npix;
    }
}

/* x uint8 NHWC [n, h, w, c], y uint8 NHWC [n, oh, ow, c]; p packed in the layout of the ISA's
 * kernel (qe_dwconv_layout). Returns 0, -2 (no memory) or -4 (bad arguments). */
static int qe_conv2d_dw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                        const qe_dwconv_params *p, uint8_t *y, int nthreads) {
    const qe_dwconv_kernel_rec *r = qe_dwconv_kernel_for_isa(isa);
    if (s->c != s->cout || p->layout != r->layout ||
        (p->layout == QE_DW_LAYOUT_I32 && p->wstride < s->c) || p->lo > p->hi || p->lo < 0 ||
        p->hi > 255 || a_zp < 0 || a_zp > 255 || s->kh * s->kw < 1 || s->sw < 1 || s->sh < 1)
        return -4;
    const size_t rows = s->n * s->oh, ntaps = s->kh * s->kw;
    if (rows == 0 || s->ow == 0 || s->c == 0) return 0;
    /* output columns whose taps are all inside the input: [ox_a, ox_b) */
    const ptrdiff_t sw = (ptrdiff_t)s->sw, pl = (ptrdiff_t)s->pl;
    const ptrdiff_t ox_a = (pl + sw - 1) / sw;
    const ptrdiff_t last = (ptrdiff_t)s->w - 1 + pl - (ptrdiff_t)((s->kw - 1) * s->dw);
    ptrdiff_t ox_b = last < 0 ? 0 : last / sw + 1;
    if (ox_b > (ptrdiff_t)s->ow) ox_b = (ptrdiff_t)s->ow;

    int nt = qe_threads(nthreads);
    if ((double)rows * (double)s->ow * (double)s->c * (double)ntaps < (double)QE_DWCONV_PAR_MIN_MACS) nt = 1;
    /* split channels too when there are few rows for the threads (late layers: 7×7, 960 ch) */
    const size_t nblocks = (s->c + r->cblock - 1) / r->cblock;
    size_t nchunks = 1;
    if (nt > 1 && rows < (size_t)(8 * nt)) {
        nchunks = ((size_t)(8 * nt) + rows - 1) / rows;
        if (nchunks > nblocks) nchunks = nblocks;
    }
    const size_t chunk = (nblocks + nchunks - 1) / nchunks * r->cblock;
    nchunks = (s->c + chunk - 1) / chunk;
    const size_t items = rows * nchunks;
    if ((size_t)nt > items) nt = (int)items;

    /* the calling thread's workspace: each thread's tap pointers, then W·C bytes of z_a */
    const size_t nscratch = ntaps + s->kh;
    const size_t zlen = (s->w ? s->w : 1) * s->c;
    const uint8_t **scratch = (const uint8_t **)qe_workspace(
        QE_WS_CALL, sizeof(*scratch) * nscratch * (size_t)nt + zlen);
    if (!scratch) return -2;
    uint8_t *zbuf = (uint8_t *)(scratch + nscratch * (size_t)nt);
    memset(zbuf, a_zp, zlen);
    if (nt <= 1) {
        for (size_t it = 0; it < items; it++) {
            const size_t c0 = (it % nchunks) * chunk, c1 = c0 + chunk < s->c ? c0 + chunk : s->c;
            qe_dwconv_row(r, s, x, zbuf, p, y, it / nchunks, c0, c1, ox_a, ox_b, scratch);
        }
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const uint8_t **mine = scratch + (size_t)omp_get_thread_num() * nscratch;
            #pragma omp for schedule(static)
            for (size_t it = 0; it < items; it++) {
                const size_t c0 = (it % nchunks) * chunk;
                const size_t c1 = c0 + chunk < s->c ? c0 + chunk : s->c;
                qe_dwconv_row(r, s, x, zbuf, p, y, it / nchunks, c0, c1, ox_a, ox_b, mine);
            }
        }
#endif
    }
    return 0;
}

#endif
