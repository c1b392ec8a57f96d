/* im2col straight into the GEMM microkernels' packed-A layout (qe_gemm_pack.h), so the general
 * k×k convolution needs no separate [M, K] im2col matrix and no second packing pass.
 *
 * Row m of the virtual im2col matrix is output pixel m (NHWC order: n, oy, ox); its K values are
 * the (ky, kx, ci) receptive field of one group, ci fastest — the order the weights are packed in
 * (qengine/quantized/conv.py transposes OIHW to [Cout, kh, kw, Cin/g]). A tap outside the input
 * reads `zrow`, cin_g copies of the input zero point: since the bias already holds
 * −z_a·Σ_k w (folded at pack time), a padded tap then contributes (z_a − z_a)·w = 0 exactly,
 * the definition of zero padding in real values.
 */
#ifndef QE_CONV_IM2COL_H
#define QE_CONV_IM2COL_H

#include <stdint.h>
#include <string.h>
#include "../gemm/qe_gemm_params.h"
#include "../gemm/qe_gemm_pack.h"

typedef struct qe_conv_shape {
    size_t n, h, w, c;            /* input NHWC; c = all channels (groups · cin_g) */
    size_t oh, ow, cout;          /* output NHWC; cout = all channels (groups · cout_g) */
    size_t kh, kw, sh, sw, dh, dw;
    size_t pt, pl;                /* top/left padding (bottom/right are implied by oh, ow) */
    size_t groups, cin_g, cout_g;
} qe_conv_shape;

/* Write src[0..len) as K positions kk0.. of row i of one packed panel. */
static inline void qe_conv_pack_segment(const qe_gemm_kernel_rec *r, void *panel, size_t i,
                                        size_t kk0, const uint8_t *src, size_t len) {
    const size_t mr = (size_t)r->mr, kr = (size_t)r->kr;
    size_t kk = kk0, end = kk0 + len;
    if (r->elem == 1) {
        uint8_t *p = (uint8_t *)panel;
        /* kr = 4 (VNNI, scalar): whole K-groups are one 4-byte store each */
        for (; kk < end && kk % kr; kk++, src++) p[((kk / kr) * mr + i) * kr + kk % kr] = *src;
        if (kr == 4)
            for (; kk + 4 <= end; kk += 4, src += 4) memcpy(p + ((kk / 4) * mr + i) * 4, src, 4);
        for (; kk < end; kk++, src++) p[((kk / kr) * mr + i) * kr + kk % kr] = *src;
    } else {
        int16_t *p = (int16_t *)panel;   /* AVX2: zero-extended to int16 for exact vpmaddwd */
        for (; kk < end; kk++, src++) p[((kk / kr) * mr + i) * kr + kk % kr] = *src;
    }
}

/* n bytes, n usually tiny here (cin_g = 1..3 for image stems): constant-size copies are inlined
 * where a memcpy call of a run-time size 1 would cost more than the byte it moves. */
static inline void qe_conv_copy_small(uint8_t *d, const uint8_t *s, size_t n) {
    switch (n) {
    case 1: d[0] = s[0]; return;
    case 2: memcpy(d, s, 2); return;
    case 3: memcpy(d, s, 2); d[2] = s[2]; return;
    default: memcpy(d, s, n);
    }
}

/* n bytes, n = kw·c of a stem convolution's kernel row (7·3 = 21, 3·3 = 9, LeNet's 5·1 = 5):
 * overlapping fixed-size copies instead of a libc call per row. */
static inline void qe_conv_copy_run(uint8_t *d, const uint8_t *s, size_t n) {
    if (n >= 16 && n <= 32) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8 && n < 16) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        memcpy(d, s, n);
    }
}

/* Output pixel m as (image b, row oy, column ox), and stepping to the next pixel: the packers
 * visit pixels in order, so one division per panel replaces three per pixel. */
typedef struct { size_t b, oy, ox; } qe_conv_pixel;

static inline qe_conv_pixel qe_conv_pixel_at(const qe_conv_shape *s, size_t m) {
    const size_t ohw = s->oh * s->ow;
    qe_conv_pixel p = {m / ohw, (m % ohw) / s->ow, m % s->ow};
    return p;
}

static inline void qe_conv_pixel_next(const qe_conv_shape *s, qe_conv_pixel *p) {
    if (++p->ox == s->ow) {
        p->ox = 0;
        if (++p->oy == s->oh) { p->oy = 0; p->b++; }
    }
}

/* Write a whole gathered row (kp values, zero-padded past K) as row i of one packed panel. */
static inline void qe_conv_pack_row(const qe_gemm_kernel_rec *r, void *panel, size_t i,
                                    const uint8_t *row, size_t kp) {
    const size_t mr = (size_t)r->mr, kr = (size_t)r->kr;
    if (r->elem == 1 && kr == 4) {
        uint8_t *p = (uint8_t *)panel + i * 4;
        for (size_t g = 0; g < kp / 4; g++) memcpy(p + g * mr * 4, row + 4 * g, 4);
    } else if (r->elem == 1) {
        uint8_t *p = (uint8_t *)panel + i * kr;
        for (size_t g = 0; g < kp / kr; g++) memcpy(p + g * mr * kr, row + kr * g, kr);
    } else {
        int16_t *p = (int16_t *)panel + i * kr;
        for (size_t g = 0; g < kp / kr; g++)
            for (size_t q = 0; q < kr; q++) p[g * mr * kr + q] = row[kr * g + q];
    }
}

/* 4 u8 per K-group (VNNI, scalar) and whole K-groups per tap (cin_g % 4 == 0): packed panel by
 * panel, tap by tap, so that the stores run sequentially through the panel — K-group q of the
 * tap is MR consecutive 4-byte values, one per pixel, read from MR source rows — instead of one
 * pixel's 4-byte values scattered MR·4 bytes apart (which measured ~3.5 cycles per store). */
static void qe_conv_im2col_pack_c4(const qe_gemm_kernel_rec *r, const qe_conv_shape *s,
                                   const uint8_t *x, const uint8_t *zrow, size_t g, size_t m0,
                                   size_t rows, size_t kp, uint8_t *dst) {
    const size_t mr = (size_t)r->mr, k = s->kh * s->kw * s->cin_g, panel = mr * kp;
    const size_t cin_g = s->cin_g;
    const uint8_t *img[QE_GEMM_MR_MAX], *src[QE_GEMM_MR_MAX];
    ptrdiff_t iy0[QE_GEMM_MR_MAX], ix0[QE_GEMM_MR_MAX];
    qe_conv_pixel px = qe_conv_pixel_at(s, m0);
    for (size_t p0 = 0; p0 < rows; p0 += mr) {
        uint8_t *pan = dst + (p0 / mr) * panel;
        const size_t pr = rows - p0 < mr ? rows - p0 : mr;
        if (pr < mr || k != kp) memset(pan, 0, panel);
        for (size_t i = 0; i < pr; i++, qe_conv_pixel_next(s, &px)) {
            img[i] = x + px.b * s->h * s->w * s->c + g * cin_g;
            iy0[i] = (ptrdiff_t)(px.oy * s->sh) - (ptrdiff_t)s->pt;
            ix0[i] = (ptrdiff_t)(px.ox * s->sw) - (ptrdiff_t)s->pl;
        }
        uint8_t *d = pan;
        for (size_t ky = 0; ky < s->kh; ky++) {
            for (size_t kx = 0; kx < s->kw; kx++) {
                for (size_t i = 0; i < pr; i++) {
                    const ptrdiff_t iy = iy0[i] + (ptrdiff_t)(ky * s->dh);
                    const ptrdiff_t ix = ix0[i] + (ptrdiff_t)(kx * s->dw);
                    src[i] = iy >= 0 && iy < (ptrdiff_t)s->h && ix >= 0 && ix < (ptrdiff_t)s->w
                        ? img[i] + ((size_t)iy * s->w + (size_t)ix) * s->c : zrow;
                }
                if (pr == QE_GEMM_MR_MAX && mr == QE_GEMM_MR_MAX) {
                    for (size_t q = 0; q < cin_g; q += 4, d += QE_GEMM_MR_MAX * 4)
                        _Pragma("GCC unroll 12") for (size_t i = 0; i < QE_GEMM_MR_MAX; i++)
                            memcpy(d + 4 * i, src[i] + q, 4);
                } else {
                    for (size_t q = 0; q < cin_g; q += 4, d += mr * 4)
                        for (size_t i = 0; i < pr; i++) memcpy(d + 4 * i, src[i] + q, 4);
                }
            }
        }
    }
}

#if QE_HAVE_X86_SIMD
/* The AVX2 records' layout (int16, K in pairs, 4 rows: qe_u8_pack_a_4c2__avx2.h) with whole
 * K-pairs per tap (cin_g even): as qe_conv_im2col_pack_c4, panel by panel and tap by tap, each
 * tap's 4 segments of cin_g bytes interleaved and widened by vector code. A last panel with
 * fewer than 4 pixels reads its missing rows from zrow: rows ≥ mr are never read by a kernel. */
static void qe_conv_im2col_pack_c2(const qe_gemm_kernel_rec *r, const qe_conv_shape *s,
                                   const uint8_t *x, const uint8_t *zrow, size_t g, size_t m0,
                                   size_t rows, size_t kp, uint8_t *dst) {
    const size_t k = s->kh * s->kw * s->cin_g, panel = 4 * kp, cin_g = s->cin_g;
    const uint8_t *img[4], *src[4];
    /* set for every row, even those past pr (img NULL: their taps read zrow): gcc's
     * -Wmaybe-uninitialized cannot see that img[i] guards the read */
    ptrdiff_t iy0[4] = {0, 0, 0, 0}, ix0[4] = {0, 0, 0, 0};
    qe_conv_pixel px = qe_conv_pixel_at(s, m0);
    for (size_t p0 = 0; p0 < rows; p0 += 4) {
        int16_t *pan = (int16_t *)(void *)dst + (p0 / 4) * panel;
        const size_t pr = rows - p0 < 4 ? rows - p0 : 4;
        if (k != kp) memset(pan, 0, panel * sizeof(int16_t));
        for (size_t i = 0; i < 4; i++) {
            if (i >= pr) { img[i] = NULL; continue; }
            img[i] = x + px.b * s->h * s->w * s->c + g * cin_g;
            iy0[i] = (ptrdiff_t)(px.oy * s->sh) - (ptrdiff_t)s->pt;
            ix0[i] = (ptrdiff_t)(px.ox * s->sw) - (ptrdiff_t)s->pl;
            qe_conv_pixel_next(s, &px);
        }
        int16_t *d = pan;
        for (size_t ky = 0; ky < s->kh; ky++) {
            for (size_t kx = 0; kx < s->kw; kx++, d += 4 * cin_g) {
                for (size_t i = 0; i < 4; i++) {
                    const ptrdiff_t iy = iy0[i] + (ptrdiff_t)(ky * s->dh);
                    const ptrdiff_t ix = ix0[i] + (ptrdiff_t)(kx * s->dw);
                    src[i] = img[i] && iy >= 0 && iy < (ptrdiff_t)s->h && ix >= 0 &&
                             ix < (ptrdiff_t)s->w
                        ? img[i] + ((size_t)iy * s->w + (size_t)ix) * s->c : zrow;
                }
                qe_u8_pack_a_4c2__avx2(src, cin_g, d);
            }
        }
    }
    (void)r;
}
#endif

/* The indirection buffer of the igemm kernels instead of the packed pixels (whole K-groups per
 * tap, cin_g % 4 == 0): for panel p, tap t = ky·kw + kx and pixel i of the panel,
 * ind[(p·kh·kw + t)·MR + i] points at the tap's cin_g input bytes, or at zrow where the tap
 * falls in the padding; the kernel then reads the input in place. A pixel whose whole window
 * lies inside the image (most of them) takes fixed offsets from its window's corner, without
 * the per-tap bounds checks (which took ~5 cycles a pointer, 7% of a 56×56×64 3×3 conv). */
static void qe_conv_indirection(const qe_gemm_kernel_rec *r, const qe_conv_shape *s,
                                const uint8_t *x, const uint8_t *zrow, size_t g, size_t m0,
                                size_t rows, const uint8_t **ind) {
    /* locals, not s->: built with -fno-strict-aliasing, every pointer store below would
     * otherwise reload the shape */
    const size_t mr = (size_t)r->mr, kh = s->kh, kw = s->kw, ks = kh * kw, c = s->c;
    const size_t ystep = s->dh * s->w * c, xstep = s->dw * c, dh = s->dh, dw = s->dw;
    const size_t sh = s->sh, sw = s->sw, img_bytes = s->h * s->w * c;
    const ptrdiff_t h = (ptrdiff_t)s->h, w = (ptrdiff_t)s->w, pt = (ptrdiff_t)s->pt,
                    pl = (ptrdiff_t)s->pl;
    const ptrdiff_t yspan = (ptrdiff_t)((kh - 1) * dh), xspan = (ptrdiff_t)((kw - 1) * dw);
    x += g * s->cin_g;
    qe_conv_pixel px = qe_conv_pixel_at(s, m0);
    for (size_t p0 = 0; p0 < rows; p0 += mr, ind += ks * mr) {
        const size_t pr = rows - p0 < mr ? rows - p0 : mr;
        for (size_t i = 0; i < pr; i++, qe_conv_pixel_next(s, &px)) {
            const uint8_t *img = x + px.b * img_bytes;
            const ptrdiff_t iy0 = (ptrdiff_t)(px.oy * sh) - pt, ix0 = (ptrdiff_t)(px.ox * sw) - pl;
            const uint8_t **d = ind + i;
            if (iy0 >= 0 && iy0 + yspan < h && ix0 >= 0 && ix0 + xspan < w) {
                const uint8_t *row = img + ((size_t)iy0 * (size_t)w + (size_t)ix0) * c;
                for (size_t ky = 0; ky < kh; ky++, row += ystep)
                    for (size_t kx = 0; kx < kw; kx++, d += mr) *d = row + kx * xstep;
                continue;
            }
            for (size_t ky = 0; ky < kh; ky++) {
                const ptrdiff_t iy = iy0 + (ptrdiff_t)(ky * dh);
                for (size_t kx = 0; kx < kw; kx++, d += mr) {
                    const ptrdiff_t ix = ix0 + (ptrdiff_t)(kx * dw);
                    *d = iy >= 0 && iy < h && ix >= 0 && ix < w
                        ? img + ((size_t)iy * (size_t)w + (size_t)ix) * c : zrow;
                }
            }
        }
    }
}

/* Short kernel rows (kw·cin_g < 8: LeNet's 5×5 on one channel) with 4 u8 per K-group: each
 * K-group's 4 bytes are gathered straight from the input and stored once. Copying the row's
 * few-byte segments into a scratch row first and reading it back as 4-byte groups made most
 * reads straddle two recent stores (a failed store-to-load forward each), and bounds checks per
 * tap made the border pixels dearer still: 29 µs for LeNet's first conv (784 pixels × 25 taps).
 * Here a small image is first copied into a zero-point-padded frame on the stack, so every
 * window lies inside it and every tap is one load at a fixed offset `off[t]`. */
#define QE_CONV_BYTES_MAX_K 256
#define QE_CONV_BYTES_FRAME 16384

static void qe_conv_im2col_pack_bytes(const qe_gemm_kernel_rec *r, const qe_conv_shape *s,
                                      const uint8_t *x, uint8_t zp, size_t g, size_t m0,
                                      size_t rows, size_t kp, uint8_t *dst) {
    const size_t mr = (size_t)r->mr, k = s->kh * s->kw * s->cin_g, panel = mr * kp;
    const size_t kfull = k & ~(size_t)3, cg = s->cin_g;
    /* the frame: every row and column any window of this conv touches, from −pt / −pl */
    const size_t fh = (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1;
    const size_t fw = (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1;
    uint8_t frame[QE_CONV_BYTES_FRAME];
    size_t off[QE_CONV_BYTES_MAX_K];
    for (size_t t = 0; t < k; t++)
        off[t] = ((t / (cg * s->kw) * s->dh) * fw + (t / cg) % s->kw * s->dw) * cg + t % cg;
    size_t framed = (size_t)-1;            /* the image now in the frame */
    const qe_conv_pixel first = qe_conv_pixel_at(s, m0), last = qe_conv_pixel_at(s, m0 + rows - 1);
    const size_t xw = fw - s->pl < s->w ? fw - s->pl : s->w;    /* input columns in the frame */
    qe_conv_pixel px = first;
    for (size_t p0 = 0; p0 < rows; p0 += mr) {
        uint8_t *pan = dst + (p0 / mr) * panel;
        const size_t pr = rows - p0 < mr ? rows - p0 : mr;
        if (pr < mr) memset(pan, 0, panel);
        for (size_t i = 0; i < pr; i++, qe_conv_pixel_next(s, &px)) {
            if (px.b != framed) {      /* the frame rows this tile's windows read, of image b */
                const uint8_t *img = x + px.b * s->h * s->w * s->c + g * cg;
                const size_t fy0 = px.b == first.b ? first.oy * s->sh : 0;
                const size_t fy1 = px.b == last.b ? last.oy * s->sh + (s->kh - 1) * s->dh
                                                  : fh - 1;
                memset(frame + fy0 * fw * cg, zp, (fy1 + 1 - fy0) * fw * cg);
                for (size_t fy = fy0; fy <= fy1; fy++) {
                    const ptrdiff_t iy = (ptrdiff_t)fy - (ptrdiff_t)s->pt;
                    if (iy < 0 || iy >= (ptrdiff_t)s->h) continue;
                    const uint8_t *src = img + (size_t)iy * s->w * s->c;
                    uint8_t *to = frame + (fy * fw + s->pl) * cg;
                    if (s->groups == 1)
                        memcpy(to, src, xw * cg);
                    else
                        for (size_t ix = 0; ix < xw; ix++) memcpy(to + ix * cg, src + ix * s->c, cg);
                }
                framed = px.b;
            }
            const uint8_t *base = frame + (px.oy * s->sh * fw + px.ox * s->sw) * cg;
            uint8_t *d = pan + 4 * i;
            uint8_t v[4];
            size_t q = 0;
            for (; q < kfull; q += 4, d += 4 * mr) {
                v[0] = base[off[q]];
                v[1] = base[off[q + 1]];
                v[2] = base[off[q + 2]];
                v[3] = base[off[q + 3]];
                memcpy(d, v, 4);
            }
            if (q < kp) {
                for (size_t j = 0; j < 4; j++) v[j] = q + j < k ? base[off[q + j]] : 0;
                memcpy(d, v, 4);
            }
        }
    }
}

/* Pack output pixels [m0, m0 + rows) of group g into consecutive panels at dst. When cin_g is
 * not a multiple of KR (e.g. the RGB stem convolutions, cin_g = 3) the taps' segments straddle
 * K-groups: the receptive field is then first gathered contiguously into `row` (scratch of
 * QE_GEMM_MR_MAX · kp bytes) and packed group by group, instead of value by value. */
static void qe_conv_im2col_pack(const qe_gemm_kernel_rec *r, const qe_conv_shape *s,
                                const uint8_t *x, const uint8_t *zrow, size_t g, size_t m0,
                                size_t rows, size_t kp, uint8_t *dst, uint8_t *row) {
    const size_t mr = (size_t)r->mr, k = s->kh * s->kw * s->cin_g;
    const size_t panel = mr * kp * (size_t)r->elem;
    const int gather = s->cin_g % (size_t)r->kr != 0, c4 = r->elem == 1 && r->kr == 4;
    if (!gather && c4) {
        qe_conv_im2col_pack_c4(r, s, x, zrow, g, m0, rows, kp, dst);
        return;
    }
#if QE_HAVE_X86_SIMD
    const int c2 = r->isa == QE_ISA_AVX2 && r->elem == 2 && r->kr == 2 && mr == 4;
    if (!gather && c2) {
        qe_conv_im2col_pack_c2(r, s, x, zrow, g, m0, rows, kp, dst);
        return;
    }
#else
    const int c2 = 0;
#endif
    /* c4, c2: all MR rows are gathered first, then packed K-group by K-group */
    const int rows_first = c4 || c2;
    if (gather && c4 && s->kw * s->cin_g < 8 && k <= QE_CONV_BYTES_MAX_K &&
        ((s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1) *
        ((s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1) * s->cin_g <= QE_CONV_BYTES_FRAME) {
        qe_conv_im2col_pack_bytes(r, s, x, zrow[0], g, m0, rows, kp, dst);
        return;
    }
    if (gather)
        for (size_t i = 0; i < (rows_first ? mr : 1); i++) memset(row + i * kp + k, 0, kp - k);
    qe_conv_pixel px = qe_conv_pixel_at(s, m0);
    for (size_t p0 = 0; p0 < rows; p0 += mr) {
        uint8_t *pan = dst + (p0 / mr) * panel;
        const size_t pr = rows - p0 < mr ? rows - p0 : mr;
        if (pr < mr || (k != kp && !gather)) memset(pan, 0, panel);
        for (size_t i = 0; i < pr; i++, qe_conv_pixel_next(s, &px)) {
            const size_t b = px.b, oy = px.oy, ox = px.ox;
            uint8_t *const rowi = rows_first ? row + i * kp : row;
            const uint8_t *img = x + b * s->h * s->w * s->c + g * s->cin_g;
            size_t kk = 0;
            /* the whole kernel row inside the image: with one group and no horizontal
             * dilation its kw taps are kw·c contiguous input bytes (NHWC), one copy */
            const ptrdiff_t ix0 = (ptrdiff_t)(ox * s->sw) - (ptrdiff_t)s->pl;
            const int xin = gather && s->groups == 1 && s->dw == 1 && ix0 >= 0 &&
                            ix0 + (ptrdiff_t)s->kw <= (ptrdiff_t)s->w;
            for (size_t ky = 0; ky < s->kh; ky++) {
                const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
                const int yin = iy >= 0 && iy < (ptrdiff_t)s->h;
                if (xin && yin) {
                    qe_conv_copy_run(rowi + kk, img + ((size_t)iy * s->w + (size_t)ix0) * s->c,
                                     s->kw * s->c);
                    kk += s->kw * s->cin_g;
                    continue;
                }
                for (size_t kx = 0; kx < s->kw; kx++, kk += s->cin_g) {
                    const ptrdiff_t ix = (ptrdiff_t)(ox * s->sw + kx * s->dw) - (ptrdiff_t)s->pl;
                    const uint8_t *src = yin && ix >= 0 && ix < (ptrdiff_t)s->w
                        ? img + ((size_t)iy * s->w + (size_t)ix) * s->c : zrow;
                    if (gather) qe_conv_copy_small(rowi + kk, src, s->cin_g);
                    else qe_conv_pack_segment(r, pan, i, kk, src, s->cin_g);
                }
            }
            if (gather && !rows_first) qe_conv_pack_row(r, pan, i, row, kp);
        }
#if QE_HAVE_X86_SIMD
        if (gather && c2) {
            if (pr == 4) {
                const uint8_t *src[4] = {row, row + kp, row + 2 * kp, row + 3 * kp};
                qe_u8_pack_a_4c2__avx2(src, kp, (int16_t *)(void *)pan);
            } else {
                for (size_t i = 0; i < pr; i++) qe_conv_pack_row(r, pan, i, row + i * kp, kp);
            }
            continue;
        }
#endif
        if (gather && c4 && pr == QE_GEMM_MR_MAX && mr == QE_GEMM_MR_MAX) {
            for (size_t q = 0; q < kp; q += 4)
                _Pragma("GCC unroll 12") for (size_t i = 0; i < QE_GEMM_MR_MAX; i++)
                    memcpy(pan + q * QE_GEMM_MR_MAX + 4 * i, row + i * kp + q, 4);
        } else if (gather && c4) {
            for (size_t q = 0; q < kp; q += 4)
                for (size_t i = 0; i < pr; i++) memcpy(pan + q * mr + 4 * i, row + i * kp + q, 4);
        }
    }
}

#endif
