/* FP32 depthwise convolution of a plane by rows, AVX-512: 64 outputs of a row per step in four
 * independent FMA chains; the first and last 64-pixel blocks of a row read through column
 * masks computed once per plane, the blocks in between with plain loads
 * (qe_f32_dwconv_row_params.h). */
#ifndef QE_F32_DWCONV_ROW_MINMAX_UKERNEL__AVX512_H
#define QE_F32_DWCONV_ROW_MINMAX_UKERNEL__AVX512_H

#include "../qe_target.h"
#include "qe_f32_dwconv_row_params.h"

#ifdef QE_HAVE_X86_SIMD

/* lanes l < n with 0 <= ix0 + l < w_in */
static inline __mmask16 qe_f32_dwrow_mask16(ptrdiff_t ix0, ptrdiff_t n, size_t w_in) {
    const ptrdiff_t lo = ix0 < 0 ? -ix0 : 0;
    ptrdiff_t hi = (ptrdiff_t)w_in - ix0;
    if (hi > n) hi = n;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

/* masks[kx][v] of the 64-pixel block starting at ox; returns whether none is needed */
static inline int qe_f32_dwrow_block_masks16(const qe_f32_dwrow *g, size_t ox,
                                             __mmask16 masks[][4]) {
    const ptrdiff_t n = (ptrdiff_t)(g->ow - ox < 64 ? g->ow - ox : 64);
    int all = n == 64;
    for (size_t kx = 0; kx < g->kw; kx++)
        for (int v = 0; v < 4; v++) {
            const ptrdiff_t ix = (ptrdiff_t)(ox + kx * g->dw) - (ptrdiff_t)g->pl + 16 * v;
            masks[kx][v] = qe_f32_dwrow_mask16(ix, n - 16 * v, g->w_in);
            all &= masks[kx][v] == 0xFFFF;
        }
    return all;
}

QE_TARGET_AVX512VNNI static void qe_f32_dwconv_row_minmax_ukernel__avx512(
        const qe_f32_dwrow *g, const float *x, const float *w, float bias, float *y,
        const qe_f32_minmax *p) {
    const __m512 lo = _mm512_set1_ps(p->lo), hi = _mm512_set1_ps(p->hi);
    const size_t nblk = (g->ow + 63) / 64;
    __mmask16 first[QE_F32_DWROW_MAX_KW][4], last[QE_F32_DWROW_MAX_KW][4];
    const int first_plain = qe_f32_dwrow_block_masks16(g, 0, first);
    const int last_plain = qe_f32_dwrow_block_masks16(g, (nblk - 1) * 64, last);
    __mmask16 store_last[4];
    for (int v = 0; v < 4; v++) {
        const ptrdiff_t nv = (ptrdiff_t)(g->ow - (nblk - 1) * 64) - 16 * v;
        store_last[v] = nv >= 16 ? 0xFFFF : nv <= 0 ? 0 : (__mmask16)((1u << nv) - 1);
    }
    for (size_t oy = 0; oy < g->oh; oy++) {
        size_t ky0, ky1;
        qe_f32_dwrow_taps(g, oy, &ky0, &ky1);
        const float *row0 = x + (ptrdiff_t)(oy * g->sh) * (ptrdiff_t)g->w_in -
                            (ptrdiff_t)(g->pt * g->w_in) - (ptrdiff_t)g->pl;
        float *yr = y + oy * g->ow;
        for (size_t b = 0; b < nblk; b++) {
            const size_t ox = b * 64;
            /* a middle block has no masks only when the row is wide enough: check it too */
            __mmask16 mid[QE_F32_DWROW_MAX_KW][4];
            int plain;
            __mmask16 (*m)[4];
            if (b == 0) {
                plain = first_plain;
                m = first;
            } else if (b == nblk - 1) {
                plain = last_plain;
                m = last;
            } else {
                plain = qe_f32_dwrow_block_masks16(g, ox, mid);
                m = mid;
            }
            __m512 a[4];
            for (int v = 0; v < 4; v++) a[v] = _mm512_set1_ps(bias);
            for (size_t ky = ky0; ky < ky1; ky++) {
                const float *row = row0 + (ky * g->dh) * g->w_in + ox;
                for (size_t kx = 0; kx < g->kw; kx++) {
                    const float *src = row + kx * g->dw;
                    const __m512 wt = _mm512_set1_ps(w[ky * g->kw + kx]);
                    if (plain) {
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            a[v] = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src + 16 * v), a[v]);
                    } else {
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            a[v] = _mm512_fmadd_ps(
                                wt, _mm512_maskz_loadu_ps(m[kx][v], src + 16 * v), a[v]);
                    }
                }
            }
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                _mm512_mask_storeu_ps(yr + ox + 16 * v, b == nblk - 1 ? store_last[v] : 0xFFFF,
                                      _mm512_min_ps(hi, _mm512_max_ps(lo, a[v])));
        }
    }
}

#endif
#endif
