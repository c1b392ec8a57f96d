/* Histogram of float32 values on the global grid of qe_hist.h; the portable twin. */
#ifndef QE_F32_HIST_SCALAR_H
#define QE_F32_HIST_SCALAR_H

#include <math.h>
#include "qengine/calib/qe_hist_types.h"

/* Bin one finite value. Shared by the SIMD kernels for their tails, so the rule is written once. */
static inline void qe_hist_bin1(float xf, const qe_hist_grid* g, double glo, double ghi,
                                int64_t* hist, qe_hist_stats* st)
{
    const double x = (double)xf;
    if (x >= g->skip_lo && x < g->skip_hi) {
        st->skipped++;
        return;
    }
    if (!(x >= glo && x < ghi)) {       /* also true when the grid is empty (glo == ghi) */
        if (st->outside < g->spill_cap) g->spill[st->outside] = xf;
        st->outside++;
        return;
    }
    /* x is inside the grid, so the estimate is within one of the true index: no overflow. */
    int64_t k = (int64_t)floor(x / g->w);
    if (x < (double)k * g->w) k--;
    else if (x >= (double)(k + 1) * g->w) k++;
    int64_t i = k - g->m;
    if (i < 0) i = 0;                   /* unreachable with exact edges; keeps memory safe */
    if (i >= g->nbins) i = g->nbins - 1;
    hist[i]++;
    st->binned++;
}

static void qe_f32_hist__scalar(size_t n, const float* x, const qe_hist_grid* g, int64_t* hist,
                                qe_hist_stats* st)
{
    const double glo = (double)g->m * g->w;
    const double ghi = (double)(g->m + g->nbins) * g->w;
    qe_hist_stats s = *st;   /* a local copy: `hist` may alias the counters otherwise */
    for (size_t j = 0; j < n; j++) {
        const float v = x[j];
        if (v != v) { s.nan++; continue; }
        if (v == __builtin_inff()) { s.pinf++; continue; }
        if (v == -__builtin_inff()) { s.ninf++; continue; }
        if (v < s.min) s.min = v;
        if (v > s.max) s.max = v;
        qe_hist_bin1(v, g, glo, ghi, hist, &s);
    }
    *st = s;
}

#endif
