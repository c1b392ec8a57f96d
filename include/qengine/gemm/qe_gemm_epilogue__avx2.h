/* AVX2 epilogue: qe_gemm_epilogue__scalar 8 columns at a time with the same float32 operations
 * in the same order (so the same bits); the column tail (< 8) goes through the scalar definition. */
#ifndef QE_GEMM_EPILOGUE_AVX2_H
#define QE_GEMM_EPILOGUE_AVX2_H

#include "../qe_target.h"
#include "qe_gemm_epilogue__scalar.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2
static void qe_gemm_epilogue__avx2(const qe_gemm_tile *t, const qe_packed_w *w,
                                   const qe_gemm_epilogue *ep, void *out, size_t ldc) {
    const __m256 vlo = _mm256_set1_ps((float)(ep->lo - ep->out_zp));
    const __m256 vhi = _mm256_set1_ps((float)(ep->hi - ep->out_zp));
    const __m256i vzp = _mm256_set1_epi32(ep->out_zp);
    const size_t nv = t->nr / 8 * 8;
    for (size_t i = 0; i < t->mr; i++) {
        const size_t m = t->m0 + i;
        const __m256i za = _mm256_set1_epi32(ep->a_zp ? ep->a_zp[m * ep->row_step] : 0);
        const __m256i rt = _mm256_set1_epi32(w->w_zp ? t->rterm[i] : 0);
        const __m256 sa = _mm256_set1_ps(ep->kind == QE_EPI_F32 ? ep->a_scale[m * ep->row_step] : 0.f);
        for (size_t j = 0; j < nv; j += 8) {
            const size_t n = t->n0 + j, o = m * ldc + n;
            __m256i acc = _mm256_loadu_si256((const __m256i *)(t->t + i * t->ldt + j));
            acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(za, _mm256_loadu_si256((const __m256i *)(w->colsum + n))));
            if (w->w_zp)
                acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(rt, _mm256_loadu_si256((const __m256i *)(w->w_zp + n))));
            if (ep->col_bias)
                acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(ep->col_bias + n)));
            if (ep->kind == QE_EPI_INT32) {
                _mm256_storeu_si256((__m256i *)((int32_t *)out + o), acc);
            } else if (ep->kind == QE_EPI_F32) {
                const __m256 c = _mm256_mul_ps(sa, _mm256_loadu_ps(ep->w_scale + n));
                __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), c);
                if (ep->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(ep->bias + n));
                if (ep->accumulate) y = _mm256_add_ps(_mm256_loadu_ps((float *)out + o), y);
                _mm256_storeu_ps((float *)out + o, y);
            } else {
                __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(ep->multiplier + n));
                v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
                const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
                /* q ∈ [lo, hi] fits the output type: pack without saturation effects */
                const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
                const __m128i q8 = ep->kind == QE_EPI_U8 ? _mm_packus_epi16(q16, q16) : _mm_packs_epi16(q16, q16);
                _mm_storel_epi64((__m128i *)((char *)out + o), q8);
            }
        }
    }
    if (nv < t->nr) qe_gemm_epilogue_cols__scalar(t, nv, w, ep, out, ldc);
}
#endif

#endif
