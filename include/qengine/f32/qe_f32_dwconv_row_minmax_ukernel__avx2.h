/* FP32 depthwise convolution of a plane by rows, AVX2 + FMA: 32 outputs of a row per step in
 * four FMA chains; the row's first and last blocks read through vmaskmov column masks computed
 * once per plane (no fault on masked-off lanes), the others with plain loads
 * (qe_f32_dwconv_row_params.h). */
#ifndef QE_F32_DWCONV_ROW_MINMAX_UKERNEL__AVX2_H
#define QE_F32_DWCONV_ROW_MINMAX_UKERNEL__AVX2_H

#include "../qe_target.h"
#include "qe_f32_dwconv_row_params.h"

#ifdef QE_HAVE_X86_SIMD

/* lanes l < n with 0 <= ix0 + l < w_in, as a vmaskmov mask */
QE_TARGET_AVX2 static inline __m256i qe_f32_dwrow_mask8__avx2(ptrdiff_t ix0, ptrdiff_t n,
                                                              size_t w_in) {
    const __m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int lo = ix0 < 0 ? (ix0 < -8 ? 8 : (int)-ix0) : 0;
    ptrdiff_t hi = (ptrdiff_t)w_in - ix0;
    if (hi > n) hi = n;
    if (hi > 8) hi = 8;
    if (hi < 0) hi = 0;
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), l),
                            _mm256_cmpgt_epi32(l, _mm256_set1_epi32(lo - 1)));
}

QE_TARGET_AVX2 static int qe_f32_dwrow_block_masks8__avx2(const qe_f32_dwrow *g, size_t ox,
                                                          __m256i masks[][4]) {
    const ptrdiff_t n = (ptrdiff_t)(g->ow - ox < 32 ? g->ow - ox : 32);
    int all = n == 32;
    for (size_t kx = 0; kx < g->kw; kx++)
        for (int v = 0; v < 4; v++) {
            const ptrdiff_t ix = (ptrdiff_t)(ox + kx * g->dw) - (ptrdiff_t)g->pl + 8 * v;
            masks[kx][v] = qe_f32_dwrow_mask8__avx2(ix, n - 8 * v, g->w_in);
            all &= _mm256_movemask_ps(_mm256_castsi256_ps(masks[kx][v])) == 0xFF;
        }
    return all;
}

QE_TARGET_AVX2 static void qe_f32_dwconv_row_minmax_ukernel__avx2(
        const qe_f32_dwrow *g, const float *x, const float *w, float bias, float *y,
        const qe_f32_minmax *p) {
    const __m256 lo = _mm256_set1_ps(p->lo), hi = _mm256_set1_ps(p->hi);
    const size_t nblk = (g->ow + 31) / 32;
    __m256i first[QE_F32_DWROW_MAX_KW][4], last[QE_F32_DWROW_MAX_KW][4], mid[QE_F32_DWROW_MAX_KW][4];
    const int first_plain = qe_f32_dwrow_block_masks8__avx2(g, 0, first);
    const int last_plain = qe_f32_dwrow_block_masks8__avx2(g, (nblk - 1) * 32, last);
    __m256i store_last[4];
    for (int v = 0; v < 4; v++)
        store_last[v] = qe_f32_dwrow_mask8__avx2(0, (ptrdiff_t)(g->ow - (nblk - 1) * 32) - 8 * v, 8);
    const __m256i ones = _mm256_set1_epi32(-1);
    for (size_t oy = 0; oy < g->oh; oy++) {
        size_t ky0, ky1;
        qe_f32_dwrow_taps(g, oy, &ky0, &ky1);
        const float *row0 = x + (ptrdiff_t)(oy * g->sh) * (ptrdiff_t)g->w_in -
                            (ptrdiff_t)(g->pt * g->w_in) - (ptrdiff_t)g->pl;
        float *yr = y + oy * g->ow;
        for (size_t b = 0; b < nblk; b++) {
            const size_t ox = b * 32;
            int plain;
            __m256i (*m)[4];
            if (b == 0) {
                plain = first_plain;
                m = first;
            } else if (b == nblk - 1) {
                plain = last_plain;
                m = last;
            } else {
                plain = qe_f32_dwrow_block_masks8__avx2(g, ox, mid);
                m = mid;
            }
            __m256 a[4];
            for (int v = 0; v < 4; v++) a[v] = _mm256_set1_ps(bias);
            for (size_t ky = ky0; ky < ky1; ky++) {
                const float *row = row0 + (ky * g->dh) * g->w_in + ox;
                for (size_t kx = 0; kx < g->kw; kx++) {
                    const float *src = row + kx * g->dw;
                    const __m256 wt = _mm256_broadcast_ss(w + ky * g->kw + kx);
                    if (plain) {
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            a[v] = _mm256_fmadd_ps(wt, _mm256_loadu_ps(src + 8 * v), a[v]);
                    } else {
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            a[v] = _mm256_fmadd_ps(wt, _mm256_maskload_ps(src + 8 * v, m[kx][v]),
                                                   a[v]);
                    }
                }
            }
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                _mm256_maskstore_ps(yr + ox + 8 * v, b == nblk - 1 ? store_last[v] : ones,
                                    _mm256_min_ps(hi, _mm256_max_ps(lo, a[v])));
        }
    }
}

#endif
#endif
