/* qe_gemm_epilogue_f32_rows__scalar.h 8 columns at a time: the same integer adds (wrapping) and
 * float32 operations in the same order; maxps/minps with the bound first keep NaN as
 * qe_clamp_f32 does. The column tail (< 8) is the scalar definition. */
#ifndef QE_GEMM_EPILOGUE_F32_ROWS__AVX2_H
#define QE_GEMM_EPILOGUE_F32_ROWS__AVX2_H

#include "../qe_target.h"
#include "qe_gemm_epilogue_f32_rows__scalar.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2
static void qe_gemm_epilogue_f32_rows__avx2(const int32_t *t, size_t ldt, size_t mr, size_t nr,
                                            size_t m0, size_t n0, const qe_rows_epilogue *e,
                                            float *y, size_t ldy) {
    const __m256 vlo = _mm256_set1_ps(e->lo), vhi = _mm256_set1_ps(e->hi);
    const size_t nv = nr / 8 * 8;
    for (size_t i = 0; i < mr; i++) {
        const size_t m = m0 + i;
        const __m256i rt = _mm256_set1_epi32(e->rowterm[m]);
        const __m256 c = _mm256_set1_ps(e->c[m]);
        const __m256 b = _mm256_set1_ps(e->bias ? e->bias[m] : 0.0f);
        float *ym = y + m * ldy + n0;
        for (size_t j = 0; j < nv; j += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(t + i * ldt + j));
            v = _mm256_add_epi32(_mm256_add_epi32(v, rt),
                                 _mm256_loadu_si256((const __m256i *)(e->colterm + n0 + j)));
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), c);
            if (e->bias) f = _mm256_add_ps(f, b);
            f = _mm256_min_ps(vhi, _mm256_max_ps(vlo, f));
            _mm256_storeu_ps(ym + j, f);
        }
        for (size_t j = nv; j < nr; j++) ym[j] = qe_rows_epilogue_one(t[i * ldt + j], m, n0 + j, e);
    }
}
#endif

#endif
