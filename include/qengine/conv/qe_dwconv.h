/* Depthwise 2-D convolution driver (groups = channels, multiplier 1), NHWC u8 → u8.
 * The multiplier > 1 case is run by qengine/quantized/conv.py on the input with each channel
 * repeated `multiplier` times, which turns it into multiplier 1.
 *
 * Indirection: per output pixel, one pointer per tap to channel 0 of its input pixel (or to a
 * row of z_a when the tap falls in the padding), so the microkernel has no bounds logic at all.
 * OpenMP over output rows (n, oy); each thread keeps its own pointer array.
 */
#ifndef QE_DWCONV_H
#define QE_DWCONV_H

#include <stdlib.h>
#include <string.h>
#include "../qe_cpu.h"
#include "qe_conv_im2col.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c1__scalar.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c8__avx2.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c16__avx512.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_DWCONV_PAR_MIN_MACS (1 << 20)

static qe_dwconv_ukernel_fn qe_dwconv_ukernel_for_isa(int isa) {
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return qe_u8_s8_dwconv_minmax_ukernel_c16__avx512;
    if (isa == QE_ISA_AVX2) return qe_u8_s8_dwconv_minmax_ukernel_c8__avx2;
#endif
    (void)isa;
    return qe_u8_s8_dwconv_minmax_ukernel_c1__scalar;
}

static const char *qe_dwconv_ukernel_name(int isa) {
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return "qe_u8_s8_dwconv_minmax_ukernel_c16__avx512";
    if (isa == QE_ISA_AVX2) return "qe_u8_s8_dwconv_minmax_ukernel_c8__avx2";
#endif
    (void)isa;
    return "qe_u8_s8_dwconv_minmax_ukernel_c1__scalar";
}

static void qe_dwconv_row(qe_dwconv_ukernel_fn uk, const qe_conv_shape *s, const uint8_t *x,
                          const uint8_t *zrow, const qe_dwconv_params *p, uint8_t *y,
                          size_t row, const uint8_t **taps) {
    const size_t b = row / s->oh, oy = row % s->oh;
    const uint8_t *img = x + b * s->h * s->w * s->c;
    for (size_t ox = 0; ox < s->ow; ox++) {
        size_t t = 0;
        for (size_t ky = 0; ky < s->kh; ky++) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
            const int yin = iy >= 0 && iy < (ptrdiff_t)s->h;
            for (size_t kx = 0; kx < s->kw; kx++, t++) {
                const ptrdiff_t ix = (ptrdiff_t)(ox * s->sw + kx * s->dw) - (ptrdiff_t)s->pl;
                taps[t] = yin && ix >= 0 && ix < (ptrdiff_t)s->w
                    ? img + ((size_t)iy * s->w + (size_t)ix) * s->c : zrow;
            }
        }
        uk(s->c, t, taps, p, y + (row * s->ow + ox) * s->c);
    }
}

/* x uint8 NHWC [n, h, w, c], y uint8 NHWC [n, oh, ow, c]; p->w [kh·kw][wstride ≥ c].
 * Returns 0, -2 (no memory) or -4 (bad arguments). */
static int qe_conv2d_dw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                        const qe_dwconv_params *p, uint8_t *y, int nthreads) {
    if (s->c != s->cout || p->wstride < s->c || p->lo > p->hi || p->lo < 0 || p->hi > 255 ||
        a_zp < 0 || a_zp > 255 || s->kh * s->kw < 1)
        return -4;
    const size_t rows = s->n * s->oh, ntaps = s->kh * s->kw;
    if (rows == 0 || s->ow == 0 || s->c == 0) return 0;
    const qe_dwconv_ukernel_fn uk = qe_dwconv_ukernel_for_isa(isa);
    int nt = 1;
#ifdef _OPENMP
    nt = nthreads > 0 ? nthreads : omp_get_max_threads();
#else
    (void)nthreads;
#endif
    if ((double)rows * (double)s->ow * (double)s->c * (double)ntaps < (double)QE_DWCONV_PAR_MIN_MACS) nt = 1;
    if ((size_t)nt > rows) nt = (int)rows;
    uint8_t *zrow = (uint8_t *)malloc(s->c);
    const uint8_t **taps = (const uint8_t **)malloc(sizeof(*taps) * ntaps * (size_t)nt);
    if (!zrow || !taps) { free(zrow); free(taps); return -2; }
    memset(zrow, a_zp, s->c);
    if (nt <= 1) {
        for (size_t r = 0; r < rows; r++) qe_dwconv_row(uk, s, x, zrow, p, y, r, taps);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            const uint8_t **mine = taps + (size_t)omp_get_thread_num() * ntaps;
            #pragma omp for schedule(static)
            for (size_t r = 0; r < rows; r++) qe_dwconv_row(uk, s, x, zrow, p, y, r, mine);
        }
#endif
    }
    free(taps);
    free(zrow);
    return 0;
}

#endif
