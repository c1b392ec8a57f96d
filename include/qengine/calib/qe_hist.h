/* Histogram accumulation for calibration observers (qengine/calibration/histogram.py).
 *
 * The grid. Bin edges are e_k = fl(k * w) for integer k (a *global* index, anchored at 0.0),
 * computed in float64 with one rounding; a histogram holds the bins k = m .. m + nbins - 1,
 * i.e. the half-open range [e_m, e_{m+nbins}). Bin k holds every x with e_k <= x < e_{k+1}.
 * Because the width only ever changes by powers of two (w -> 2^j w), e(2^j K, w) and
 * e(K, 2^j w) are the same float64 number (both are fl of the same real product; a product with
 * a power of two is exact), so the coarse bins are exact unions of fine bins: re-binning a
 * histogram into a wider grid (summing runs of 2^j bins) gives exactly the counts that
 * binning the data into the wide grid directly would have given.
 *
 * The kernel. One pass over n float32 values:
 *   - NaN, +Inf and -Inf are counted and otherwise ignored;
 *   - min and max of the finite values are tracked;
 *   - finite values inside the exclusion range [skip_lo, skip_hi) are skipped (the driver
 *     passes the previous grid there when a second pass bins only what the first pass could
 *     not);
 *   - the rest are binned if they fall into the grid, else counted as `outside`.
 * The bin index is estimated as floor(x / w) and corrected by comparing x with the exact
 * edges, so every ISA path produces exactly the bin the definition above gives.
 * Counts are integers: identical for every ISA and thread split.
 */
#ifndef QE_HIST_H
#define QE_HIST_H

#include <stddef.h>
#include <stdint.h>
#include "qengine/qe_cpu.h"
#include "qengine/qe_target.h"

#include "qengine/calib/qe_hist_types.h"
#include "qengine/calib/qe_f32_hist__scalar.h"
#include "qengine/calib/qe_f32_hist__avx2.h"

typedef void (*qe_f32_hist_fn)(size_t, const float*, const qe_hist_grid*, int64_t*,
                               qe_hist_stats*);

/* AVX-512 and NEON have no kernel of their own yet: the scatter into the histogram dominates
 * once the index computation is vectorized, so they use the AVX2 / scalar twin. */
#ifdef QE_HAVE_X86_SIMD
static const qe_f32_hist_fn qe_f32_hist_table[QE_ISA_COUNT] = {
    qe_f32_hist__scalar, qe_f32_hist__avx2, qe_f32_hist__avx2, qe_f32_hist__scalar};
static const char* const qe_f32_hist_names[QE_ISA_COUNT] = {
    "qe_f32_hist__scalar", "qe_f32_hist__avx2", "qe_f32_hist__avx2", "qe_f32_hist__scalar"};
#else
static const qe_f32_hist_fn qe_f32_hist_table[QE_ISA_COUNT] = {
    qe_f32_hist__scalar, qe_f32_hist__scalar, qe_f32_hist__scalar, qe_f32_hist__scalar};
static const char* const qe_f32_hist_names[QE_ISA_COUNT] = {
    "qe_f32_hist__scalar", "qe_f32_hist__scalar", "qe_f32_hist__scalar", "qe_f32_hist__scalar"};
#endif

#endif
