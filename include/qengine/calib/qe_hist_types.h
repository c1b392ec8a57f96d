/* The grid and statistics records of the histogram kernels (semantics: qe_hist.h). */
#ifndef QE_HIST_TYPES_H
#define QE_HIST_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double w;                  /* bin width (> 0) */
    int64_t m;                 /* global index of the first bin */
    int64_t nbins;             /* 0: no grid yet, everything finite is `outside` */
    double skip_lo, skip_hi;   /* finite x in [skip_lo, skip_hi) are ignored (empty if lo >= hi) */
    float* spill;              /* the first spill_cap `outside` values are copied here, so the */
    int64_t spill_cap;         /* caller can bin them after growing the grid without a 2nd pass */
} qe_hist_grid;

typedef struct {
    float min, max;            /* over finite values; +inf / -inf when there were none */
    int64_t nan, pinf, ninf;   /* non-finite values seen */
    int64_t binned, outside, skipped;
} qe_hist_stats;

static inline void qe_hist_stats_init(qe_hist_stats* st)
{
    st->min = __builtin_inff();
    st->max = -__builtin_inff();
    st->nan = st->pinf = st->ninf = 0;
    st->binned = st->outside = st->skipped = 0;
}

static inline void qe_hist_stats_merge(qe_hist_stats* into, const qe_hist_stats* from)
{
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
    into->nan += from->nan; into->pinf += from->pinf; into->ninf += from->ninf;
    into->binned += from->binned; into->outside += from->outside; into->skipped += from->skipped;
}

#endif
