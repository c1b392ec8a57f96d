/* Histogram of float32 values on the global grid of qe_hist.h; AVX2.
 * Classification, min/max and the bin index (float64, 4 lanes twice) are vectorized; the
 * increments are scalar (a scatter-add has no SIMD form that handles repeated indices).
 * The edges are the same fl(k * w) products as the scalar twin's, so the bins are identical. */
#ifndef QE_F32_HIST_AVX2_H
#define QE_F32_HIST_AVX2_H

#include "qengine/calib/qe_f32_hist__scalar.h"

#ifdef QE_HAVE_X86_SIMD

/* Bin index relative to the grid for 4 finite doubles, or -1 for lanes not to bin; counts
 * skipped/outside lanes. */
QE_TARGET_AVX2 static inline __m256d qe_hist_index4__avx2(const qe_hist_grid* g, __m256d x,
    __m256d fin, __m256d vw, __m256d vm, __m256d glo, __m256d ghi, __m256d slo, __m256d shi,
    int64_t* skipped, int64_t* outside)
{
    const __m256d skip = _mm256_and_pd(fin, _mm256_and_pd(_mm256_cmp_pd(x, slo, _CMP_GE_OQ),
                                                          _mm256_cmp_pd(x, shi, _CMP_LT_OQ)));
    const __m256d in = _mm256_and_pd(_mm256_cmp_pd(x, glo, _CMP_GE_OQ),
                                     _mm256_cmp_pd(x, ghi, _CMP_LT_OQ));
    const __m256d take = _mm256_andnot_pd(skip, _mm256_and_pd(fin, in));
    const __m256d out = _mm256_andnot_pd(skip, _mm256_andnot_pd(in, fin));
    *skipped += __builtin_popcount(_mm256_movemask_pd(skip));
    const int omask = _mm256_movemask_pd(out);
    if (omask) {                        /* rare once the grid has grown: spill them */
        double xv[4];
        _mm256_storeu_pd(xv, x);
        for (int l = 0; l < 4; l++) {
            if (omask & (1 << l)) {
                if (*outside < g->spill_cap) g->spill[*outside] = (float)xv[l];
                (*outside)++;
            }
        }
    }
    /* Lanes not taken may hold huge x / w; replace them by the grid start before dividing. */
    const __m256d xs = _mm256_blendv_pd(glo, x, take);
    __m256d k = _mm256_floor_pd(_mm256_div_pd(xs, vw));
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d lo_edge = _mm256_mul_pd(k, vw);
    const __m256d hi_edge = _mm256_mul_pd(_mm256_add_pd(k, one), vw);
    k = _mm256_sub_pd(k, _mm256_and_pd(_mm256_cmp_pd(xs, lo_edge, _CMP_LT_OQ), one));
    k = _mm256_add_pd(k, _mm256_and_pd(_mm256_cmp_pd(xs, hi_edge, _CMP_GE_OQ), one));
    const __m256d rel = _mm256_sub_pd(k, vm);
    return _mm256_blendv_pd(_mm256_set1_pd(-1.0), rel, take);
}

QE_TARGET_AVX2 static void qe_f32_hist__avx2(size_t n, const float* x, const qe_hist_grid* g,
                                             int64_t* hist, qe_hist_stats* st)
{
    const double glo_s = (double)g->m * g->w;
    const double ghi_s = (double)(g->m + g->nbins) * g->w;
    const __m256 inf = _mm256_set1_ps(__builtin_inff()), ninf = _mm256_set1_ps(-__builtin_inff());
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256d vw = _mm256_set1_pd(g->w), vm = _mm256_set1_pd((double)g->m);
    const __m256d glo = _mm256_set1_pd(glo_s), ghi = _mm256_set1_pd(ghi_s);
    const __m256d slo = _mm256_set1_pd(g->skip_lo), shi = _mm256_set1_pd(g->skip_hi);
    __m256 vmin = inf, vmax = ninf;
    int64_t skipped = 0, outside = st->outside, binned = 0;   /* outside indexes the spill */
    const int64_t nb = g->nbins;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        const __m256 fin = _mm256_cmp_ps(_mm256_and_ps(v, absmask), inf, _CMP_LT_OQ);
        const int fmask = _mm256_movemask_ps(fin);
        if (fmask != 0xff) {
            st->nan += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
            st->pinf += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, inf, _CMP_EQ_OQ)));
            st->ninf += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, ninf, _CMP_EQ_OQ)));
        }
        vmin = _mm256_min_ps(vmin, _mm256_blendv_ps(inf, v, fin));
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, v, fin));
        if (nb == 0 && g->skip_lo >= g->skip_hi && outside >= g->spill_cap) {
            outside += __builtin_popcount(fmask);    /* min/max-only pass, spill buffer full */
            continue;
        }
        const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        const __m256 finz = fin;
        const __m256d f0 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(
            _mm_castps_si128(_mm256_castps256_ps128(finz))));
        const __m256d f1 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(
            _mm_castps_si128(_mm256_extractf128_ps(finz, 1))));
        const __m128i i0 = _mm256_cvtpd_epi32(
            qe_hist_index4__avx2(g, x0, f0, vw, vm, glo, ghi, slo, shi, &skipped, &outside));
        const __m128i i1 = _mm256_cvtpd_epi32(
            qe_hist_index4__avx2(g, x1, f1, vw, vm, glo, ghi, slo, shi, &skipped, &outside));
        int32_t idx[8];
        _mm_storeu_si128((__m128i*)idx, i0);
        _mm_storeu_si128((__m128i*)(idx + 4), i1);
        for (int l = 0; l < 8; l++) {
            const int32_t b = idx[l];
            if (b >= 0) {
                hist[b < nb ? b : nb - 1]++;
                binned++;
            }
        }
    }
    float mn[8], mx[8];
    _mm256_storeu_ps(mn, vmin);
    _mm256_storeu_ps(mx, vmax);
    for (int l = 0; l < 8; l++) {
        if (mn[l] < st->min) st->min = mn[l];
        if (mx[l] > st->max) st->max = mx[l];
    }
    st->skipped += skipped;
    st->outside = outside;
    st->binned += binned;
    if (j < n)
        qe_f32_hist__scalar(n - j, x + j, g, hist, st);
}

#endif

#endif
