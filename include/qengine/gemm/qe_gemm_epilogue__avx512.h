/* AVX-512 epilogue: qe_gemm_epilogue__scalar 16 columns at a time (masked tails), with the same
 * float32 operations in the same order, so the same bits. cvtps2dq rounds half to even under
 * the default MXCSR, like lrintf. */
#ifndef QE_GEMM_EPILOGUE_AVX512_H
#define QE_GEMM_EPILOGUE_AVX512_H

#include "../qe_target.h"
#include "qe_gemm_params.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI
static void qe_gemm_epilogue__avx512(const qe_gemm_tile *t, const qe_packed_w *w,
                                     const qe_gemm_epilogue *ep, void *out, size_t ldc) {
    const __m512 vlo = _mm512_set1_ps((float)(ep->lo - ep->out_zp));
    const __m512 vhi = _mm512_set1_ps((float)(ep->hi - ep->out_zp));
    const __m512i vzp = _mm512_set1_epi32(ep->out_zp);
    for (size_t i = 0; i < t->mr; i++) {
        const size_t m = t->m0 + i;
        const __m512i za = _mm512_set1_epi32(ep->a_zp ? ep->a_zp[m * ep->row_step] : 0);
        const __m512i rt = _mm512_set1_epi32(w->w_zp ? t->rterm[i] : 0);
        const __m512 sa = _mm512_set1_ps(ep->kind == QE_EPI_F32 ? ep->a_scale[m * ep->row_step] : 0.f);
        for (size_t j = 0; j < t->nr; j += 16) {
            const size_t n = t->n0 + j, o = m * ldc + n;
            const __mmask16 k = t->nr - j >= 16 ? (__mmask16)0xffff
                                                : (__mmask16)((1u << (t->nr - j)) - 1);
            __m512i acc = _mm512_loadu_si512(t->t + i * t->ldt + j);
            acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(za, _mm512_maskz_loadu_epi32(k, w->colsum + n)));
            if (w->w_zp)
                acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(rt, _mm512_maskz_loadu_epi32(k, w->w_zp + n)));
            if (ep->col_bias)
                acc = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(k, ep->col_bias + n));
            if (ep->kind == QE_EPI_INT32) {
                _mm512_mask_storeu_epi32((int32_t *)out + o, k, acc);
            } else if (ep->kind == QE_EPI_F32) {
                const __m512 c = _mm512_mul_ps(sa, _mm512_maskz_loadu_ps(k, ep->w_scale + n));
                __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), c);
                if (ep->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, ep->bias + n));
                if (ep->accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(k, (float *)out + o), y);
                _mm512_mask_storeu_ps((float *)out + o, k, y);
            } else {
                __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc),
                                         _mm512_maskz_loadu_ps(k, ep->multiplier + n));
                v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
                const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
                /* q is already inside [lo, hi] ⊂ the output type: plain truncation is exact */
                _mm_mask_storeu_epi8((char *)out + o, k, _mm512_cvtepi32_epi8(q));
            }
        }
    }
}
#endif

#endif
