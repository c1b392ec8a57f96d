/* 2-D pooling drivers, NHWC u8 → u8: max pooling and average pooling (count_include_pad either
 * way, ceil_mode through the output size the caller computes, dilation), global average pooling
 * as a window covering the whole image. One pointer per valid tap (indirection), OpenMP over
 * output rows. Kernels: qe_u8_maxpool_ukernel__scalar.h, qe_u8_avgpool_minmax_ukernel__scalar.h.
 */
#ifndef QE_POOL_H
#define QE_POOL_H

#include "../qe_threads.h"
#include <stdlib.h>
#include <string.h>
#include "../conv/qe_conv_im2col.h"
#include "qe_u8_maxpool_ukernel__scalar.h"
#include "qe_u8_avgpool_minmax_ukernel__scalar.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum { QE_POOL_MAX = 0, QE_POOL_AVG = 1 };

typedef struct qe_pool_params {
    int32_t kind;                /* QE_POOL_* */
    int32_t count_include_pad;   /* AVG: divisor counts taps inside the padded extent */
    size_t pb, pr;               /* bottom/right padding (the padded extent for the divisor) */
    int32_t x_zp, zp, lo, hi;    /* AVG */
    const float *mult;           /* AVG: [kh·kw + 1], mult[count] = float32(s_x / (s_y·count)) */
} qe_pool_params;

static void qe_pool_row(const qe_conv_shape *s, const qe_pool_params *p, const uint8_t *x,
                        uint8_t *y, size_t row, const uint8_t **taps, int32_t *sum) {
    const size_t b = row / s->oh, oy = row % s->oh;
    const uint8_t *img = x + b * s->h * s->w * s->c;
    const ptrdiff_t hp = (ptrdiff_t)(s->h + p->pb), wp = (ptrdiff_t)(s->w + p->pr);
    for (size_t ox = 0; ox < s->ow; ox++) {
        size_t nv = 0, npad = 0;
        for (size_t ky = 0; ky < s->kh; ky++) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
            for (size_t kx = 0; kx < s->kw; kx++) {
                const ptrdiff_t ix = (ptrdiff_t)(ox * s->sw + kx * s->dw) - (ptrdiff_t)s->pl;
                if (iy >= 0 && iy < (ptrdiff_t)s->h && ix >= 0 && ix < (ptrdiff_t)s->w)
                    taps[nv++] = img + ((size_t)iy * s->w + (size_t)ix) * s->c;
                else if (iy < hp && ix < wp)
                    npad++;   /* inside the padding, not past it (ceil_mode overhang) */
            }
        }
        uint8_t *o = y + (row * s->ow + ox) * s->c;
        if (p->kind == QE_POOL_MAX) {
            qe_u8_maxpool_ukernel__scalar(s->c, nv, taps, o);
        } else {
            const size_t cnt = p->count_include_pad ? nv + npad : nv;
            const float m = cnt ? p->mult[cnt] : 0.0f;   /* no tap at all: acc = 0 -> z_y */
            qe_u8_avgpool_minmax_ukernel__scalar(s->c, nv, taps, p->x_zp, m, p->zp, p->lo, p->hi,
                                                 sum, o);
        }
    }
}

/* Returns 0, -2 (no memory) or -4 (bad arguments). */
static int qe_pool2d(const qe_conv_shape *s, const qe_pool_params *p, const uint8_t *x,
                     uint8_t *y, int nthreads) {
    if (s->c != s->cout || s->kh * s->kw < 1 || p->lo > p->hi || p->lo < 0 || p->hi > 255 ||
        (p->kind == QE_POOL_AVG && !p->mult))
        return -4;
    const size_t rows = s->n * s->oh, ntaps = s->kh * s->kw;
    if (rows == 0 || s->ow == 0 || s->c == 0) return 0;
    int nt = qe_threads(nthreads);
    if ((double)rows * (double)s->ow * (double)s->c * (double)ntaps < (double)(1 << 20)) nt = 1;
    if ((size_t)nt > rows) nt = (int)rows;
    /* the calling thread's workspace: each thread's tap pointers, then its int32 sums */
    const uint8_t **taps = (const uint8_t **)qe_workspace(
        QE_WS_CALL, (sizeof(*taps) * ntaps + sizeof(int32_t) * s->c) * (size_t)nt);
    if (!taps) return -2;
    int32_t *sums = (int32_t *)(taps + ntaps * (size_t)nt);
    if (nt <= 1) {
        for (size_t r = 0; r < rows; r++) qe_pool_row(s, p, x, y, r, taps, sums);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int me = omp_get_thread_num();
            #pragma omp for schedule(static)
            for (size_t r = 0; r < rows; r++)
                qe_pool_row(s, p, x, y, r, taps + (size_t)me * ntaps, sums + (size_t)me * s->c);
        }
#endif
    }
    return 0;
}

#endif
