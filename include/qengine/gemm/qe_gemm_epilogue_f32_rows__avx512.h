/* qe_gemm_epilogue_f32_rows__scalar.h 16 columns at a time (masked tail): the same integer adds
 * (wrapping) and float32 operations in the same order; maxps/minps with the bound first keep NaN
 * as qe_clamp_f32 does. */
#ifndef QE_GEMM_EPILOGUE_F32_ROWS__AVX512_H
#define QE_GEMM_EPILOGUE_F32_ROWS__AVX512_H

#include "../qe_target.h"
#include "qe_gemm_epilogue_f32_rows__scalar.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI
static void qe_gemm_epilogue_f32_rows__avx512(const int32_t *t, size_t ldt, size_t mr, size_t nr,
                                              size_t m0, size_t n0, const qe_rows_epilogue *e,
                                              float *y, size_t ldy) {
    const __m512 vlo = _mm512_set1_ps(e->lo), vhi = _mm512_set1_ps(e->hi);
    for (size_t i = 0; i < mr; i++) {
        const size_t m = m0 + i;
        const __m512i rt = _mm512_set1_epi32(e->rowterm[m]);
        const __m512 c = _mm512_set1_ps(e->c[m]);
        const __m512 b = _mm512_set1_ps(e->bias ? e->bias[m] : 0.0f);
        float *ym = y + m * ldy + n0;
        for (size_t j = 0; j < nr; j += 16) {
            const __mmask16 k = nr - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nr - j)) - 1);
            __m512i v = _mm512_maskz_loadu_epi32(k, t + i * ldt + j);
            v = _mm512_add_epi32(_mm512_add_epi32(v, rt),
                                 _mm512_maskz_loadu_epi32(k, e->colterm + n0 + j));
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), c);
            if (e->bias) f = _mm512_add_ps(f, b);
            f = _mm512_min_ps(vhi, _mm512_max_ps(vlo, f));
            _mm512_mask_storeu_ps(ym + j, k, f);
        }
    }
}
#endif

#endif
