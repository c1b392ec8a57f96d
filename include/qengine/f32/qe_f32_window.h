/* Sliding windows over NCHW float planes without im2col: the phase-split padded plane.
 *
 * Every FP32 window op here (convolution, depthwise convolution, max/average pooling) reads its
 * input through one rearranged copy of each input plane, X', built so that for EVERY tap the
 * values under the window, taken over consecutive output pixels, are consecutive in memory:
 *
 *   X' holds, per input channel, sh·sw "phase" planes of Hq × Wq floats;
 *   phase (a, b), element [i][j] = xpad[i·sh + a][j·sw + b]   (xpad = x with its pads, the pad
 *   value outside x: 0 for convolution and average pooling, −inf for max pooling).
 *
 * Output pixel (oy, ox) at tap (ky, kx) reads xpad[oy·sh + ky·dh][ox·sw + kx·dw], which is
 *   phase ((ky·dh) mod sh, (kx·dw) mod sw), element [oy + ky·dh div sh][ox + kx·dw div sw].
 * Number the output pixels in the "wide" raster p' = oy·Wq + ox (Wq ≥ ow: the columns
 * ox ∈ [ow, Wq) are computed and thrown away). Then tap t of pixel p' is X'[off[t] + p'] with
 *   off[t] = plane(t)·Hq·Wq + (ky·dh div sh)·Wq + (kx·dw div sw),
 * one offset per tap, the same for every pixel: a vector of consecutive pixels is one
 * unaligned load per tap. Stride 1 has one phase (X' is just the padded plane); stride 2 has
 * four planes, each a quarter of the input, so a strided window costs no gather either.
 *
 * Sizes: Hq = oh + (kh−1)·dh div sh, Wq = ow + (kw−1)·dw div sw, and the wide raster needs only
 * P' = (oh−1)·Wq + ow pixels, so no read ever leaves X'. When the input needs no padding and
 * stride is 1 (a VALID or 1×1 convolution), X' *is* x and nothing is copied ("direct").
 * Results land in the wide raster; qe_f32_window_compact drops the wide columns when Wq > ow.
 * The waste is (Wq − ow)/Wq of the lanes: 3 % at 56×56, 22 % at 7×7 for a 3×3 window.
 */
#ifndef QE_F32_WINDOW_H
#define QE_F32_WINDOW_H

#include <stddef.h>
#include <string.h>

typedef struct qe_f32_window {
    size_t h, w;              /* input plane */
    size_t oh, ow;            /* output plane */
    size_t kh, kw, sh, sw, dh, dw;
    size_t pt, pl;            /* begin pads (end pads and ceil_mode overhang follow from oh/ow) */
} qe_f32_window;

/* The phase-split plane geometry of a window. */
typedef struct qe_f32_wide {
    size_t hq, wq;            /* each phase plane */
    size_t plane;             /* hq·wq */
    size_t chan;              /* floats per input channel in X' (sh·sw·plane) */
    size_t pixels;            /* P' = (oh−1)·wq + ow, the wide raster's length */
    int direct;               /* X' is the input itself (stride 1, no padding) */
} qe_f32_wide;

static qe_f32_wide qe_f32_wide_of(const qe_f32_window *g) {
    qe_f32_wide q;
    q.hq = g->oh + (g->kh - 1) * g->dh / g->sh;
    q.wq = g->ow + (g->kw - 1) * g->dw / g->sw;
    q.direct = g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && q.hq <= g->h &&
               q.wq == g->w;
    if (q.direct) q.hq = g->h;
    q.plane = q.hq * q.wq;
    q.chan = g->sh * g->sw * q.plane;
    q.pixels = g->oh ? (g->oh - 1) * q.wq + g->ow : 0;
    return q;
}

/* off[t] for the kh·kw taps of one input channel (row-major ky, kx), relative to its X'. */
static void qe_f32_window_offsets(const qe_f32_window *g, const qe_f32_wide *q, ptrdiff_t *off) {
    size_t t = 0;
    for (size_t ky = 0; ky < g->kh; ky++)
        for (size_t kx = 0; kx < g->kw; kx++, t++) {
            const size_t y = ky * g->dh, x = kx * g->dw;
            const size_t phase = (y % g->sh) * g->sw + x % g->sw;
            off[t] = (ptrdiff_t)(phase * q->plane + (y / g->sh) * q->wq + x / g->sw);
        }
}

/* Does some tap read phase (a, b)? (A 1×1 convolution with stride 2 reads one of four.) */
static int qe_f32_window_phase_used(const qe_f32_window *g, size_t a, size_t b) {
    int row = 0, col = 0;
    for (size_t ky = 0; ky < g->kh && !row; ky++) row = ky * g->dh % g->sh == a;
    for (size_t kx = 0; kx < g->kw && !col; kx++) col = kx * g->dw % g->sw == b;
    return row && col;
}

/* Build X' of one input plane x (h × w, row stride w) into dst (q->chan floats); phases no tap
 * reads are left unwritten. */
static void qe_f32_window_build(const qe_f32_window *g, const qe_f32_wide *q, const float *x,
                                float pad, float *dst) {
    for (size_t a = 0; a < g->sh; a++)
        for (size_t b = 0; b < g->sw; b++) {
            if (!qe_f32_window_phase_used(g, a, b)) continue;
            float *pl = dst + (a * g->sw + b) * q->plane;
            /* columns j with 0 <= j·sw + b − pl < w: [j0, j1) */
            const ptrdiff_t c0 = (ptrdiff_t)b - (ptrdiff_t)g->pl;          /* x column of j=0 */
            size_t j0 = c0 >= 0 ? 0 : (size_t)((-c0 + (ptrdiff_t)g->sw - 1) / (ptrdiff_t)g->sw);
            ptrdiff_t lim = (ptrdiff_t)g->w - c0;                            /* j·sw < lim */
            size_t j1 = lim <= 0 ? 0 : (size_t)((lim + (ptrdiff_t)g->sw - 1) / (ptrdiff_t)g->sw);
            if (j1 > q->wq) j1 = q->wq;
            if (j0 > j1) j0 = j1;
            for (size_t i = 0; i < q->hq; i++) {
                float *row = pl + i * q->wq;
                const ptrdiff_t iy = (ptrdiff_t)(i * g->sh + a) - (ptrdiff_t)g->pt;
                if (iy < 0 || iy >= (ptrdiff_t)g->h || j0 == j1) {
                    for (size_t j = 0; j < q->wq; j++) row[j] = pad;
                    continue;
                }
                const float *src = x + (size_t)iy * g->w + (ptrdiff_t)(j0 * g->sw) + c0;
                for (size_t j = 0; j < j0; j++) row[j] = pad;
                if (g->sw == 1) {
                    memcpy(row + j0, src, (j1 - j0) * sizeof(float));
                } else {
                    for (size_t j = j0; j < j1; j++, src += g->sw) row[j] = *src;
                }
                for (size_t j = j1; j < q->wq; j++) row[j] = pad;
            }
        }
}

/* Copy rows of a wide-raster result (mr rows of ldw floats, pixels [p0, p0 + n)) to the
 * compact output (rows of ldy floats, pixel oy·ow + ox), dropping the wide columns. */
static void qe_f32_window_scatter(const qe_f32_window *g, const qe_f32_wide *q, const float *src,
                                  size_t lds, size_t mr, size_t p0, size_t n, float *y,
                                  size_t ldy) {
    size_t p = p0;
    while (p < p0 + n) {
        const size_t oy = p / q->wq, ox = p % q->wq;
        size_t run = q->wq - ox;
        if (run > p0 + n - p) run = p0 + n - p;
        if (ox < g->ow) {
            const size_t len = ox + run <= g->ow ? run : g->ow - ox;
            for (size_t r = 0; r < mr; r++)
                memcpy(y + r * ldy + oy * g->ow + ox, src + r * lds + (p - p0), len * sizeof(float));
        }
        p += run;
    }
}

#endif
