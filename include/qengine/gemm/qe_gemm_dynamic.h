/* Dynamic activation quantization (f32 → u8, asymmetric, per tensor or per row) and the fused
 * dynamic linear layer built on it. Definitions: docs/numerics.md "Quantize" and "Choosing scale
 * and zero point"; qengine/reference/gemm.py quantize_activations_ref mirrors this in NumPy.
 *
 *   range : rmin = min(0, finite x), rmax = max(0, finite x)   (NaN and ±Inf are not ranged)
 *   scale : s = float32((double)rmax − rmin) / 255), 1.0 if rmax == rmin, ≥ FLT_MIN
 *   zero  : z = clamp(−rhe((double)rmin / s), 0, 255)
 *   value : v = x / s (float32); NaN → 0; v = min(max(v, −z), 255 − z); q = rhe(v) + z
 * ±Inf saturate to 255 / 0 through the clamp; NaN becomes z (it is treated as 0.0).
 * Min/max are exact and order-free and x / s is one IEEE division, so the SIMD paths equal the
 * scalar one bit for bit.
 *
 * Entry points:
 *   qe_dynq_u8(isa, m, k, x, ldx, per_row, q, ldq, scale, zp)   q: uint8 [m, ldq ≥ k], columns
 *       k..ldq−1 zeroed; scale/zp: [m] if per_row else [1]
 *   qe_gemm_linear_dynamic_ws_bytes(isa, m, k)
 *   qe_gemm_linear_dynamic(isa, m, x, ldx, per_row, &w, w_scale, bias, out, ldc, accumulate,
 *                          nthreads, ws, ws_bytes)
 *       out[m, n] (+)= float32(acc)·float32(s_a[m]·w_scale[n]) + bias[n], everything nogil;
 *       ws as for qe_gemm (NULL: the calling thread's workspace, which the GEMM then shares).
 */
#ifndef QE_GEMM_DYNAMIC_H
#define QE_GEMM_DYNAMIC_H

#include <float.h>
#include <math.h>
#include "qe_gemm.h"

static inline void qe_dynq_qparams(float rmin, float rmax, float *s, int32_t *z) {
    const double d = (double)rmax - (double)rmin;
    float sc = d == 0.0 ? 1.0f : (float)(d / 255.0);
    if (sc < FLT_MIN) sc = FLT_MIN;
    double zz = -nearbyint((double)rmin / (double)sc);
    zz = zz < 0.0 ? 0.0 : (zz > 255.0 ? 255.0 : zz);
    *s = sc;
    *z = (int32_t)zz;
}

static void qe_dynq_range__scalar(size_t k, const float *x, float *rmin, float *rmax) {
    float lo = *rmin, hi = *rmax;
    for (size_t i = 0; i < k; i++) {
        const float v = x[i];
        if (fabsf(v) <= FLT_MAX) { lo = v < lo ? v : lo; hi = v > hi ? v : hi; }
    }
    *rmin = lo; *rmax = hi;
}

static void qe_dynq_row__scalar(size_t k, const float *x, float s, int32_t z, uint8_t *q) {
    const float lo = (float)-z, hi = (float)(255 - z);
    for (size_t i = 0; i < k; i++) {
        float v = x[i] / s;
        if (v != v) v = 0.0f;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        q[i] = (uint8_t)((int32_t)lrintf(v) + z);
    }
}

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI
static void qe_dynq_range__avx512(size_t k, const float *x, float *rmin, float *rmax) {
    __m512 lo = _mm512_set1_ps(*rmin), hi = _mm512_set1_ps(*rmax);
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    size_t i = 0;
    for (; i < k; i += 16) {
        const __mmask16 t = k - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(t, x + i);
        const __mmask16 fin = _mm512_mask_cmp_ps_mask(t, _mm512_abs_ps(v), big, _CMP_LE_OQ);
        lo = _mm512_mask_min_ps(lo, fin, lo, v);
        hi = _mm512_mask_max_ps(hi, fin, hi, v);
    }
    *rmin = _mm512_reduce_min_ps(lo);
    *rmax = _mm512_reduce_max_ps(hi);
}

QE_TARGET_AVX512VNNI
static void qe_dynq_row__avx512(size_t k, const float *x, float s, int32_t z, uint8_t *q) {
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps((float)-z);
    const __m512 hi = _mm512_set1_ps((float)(255 - z));
    const __m512i vz = _mm512_set1_epi32(z);
    for (size_t i = 0; i < k; i += 16) {
        const __mmask16 t = k - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(t, x + i), vs);
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);   /* NaN → 0 */
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        const __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
        _mm_mask_storeu_epi8(q + i, t, _mm512_cvtepi32_epi8(r));
    }
}

QE_TARGET_AVX2
static void qe_dynq_range__avx2(size_t k, const float *x, float *rmin, float *rmax) {
    __m256 lo = _mm256_set1_ps(*rmin), hi = _mm256_set1_ps(*rmax);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 fin = _mm256_cmp_ps(_mm256_and_ps(v, absmask), big, _CMP_LE_OQ);
        lo = _mm256_blendv_ps(lo, _mm256_min_ps(lo, v), fin);
        hi = _mm256_blendv_ps(hi, _mm256_max_ps(hi, v), fin);
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, lo);
    _mm256_storeu_ps(h, hi);
    for (int j = 0; j < 8; j++) {
        *rmin = l[j] < *rmin ? l[j] : *rmin;
        *rmax = h[j] > *rmax ? h[j] : *rmax;
    }
    qe_dynq_range__scalar(k - i, x + i, rmin, rmax);
}

QE_TARGET_AVX2
static void qe_dynq_row__avx2(size_t k, const float *x, float s, int32_t z, uint8_t *q) {
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps((float)-z);
    const __m256 hi = _mm256_set1_ps((float)(255 - z));
    const __m256i vz = _mm256_set1_epi32(z);
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));                   /* NaN → 0 */
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        const __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(v), vz);
        const __m128i r16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packus_epi16(r16, r16));
    }
    qe_dynq_row__scalar(k - i, x + i, s, z, q + i);
}
#endif

typedef void (*qe_dynq_range_fn)(size_t, const float *, float *, float *);
typedef void (*qe_dynq_row_fn)(size_t, const float *, float, int32_t, uint8_t *);

static void qe_dynq_fns(int isa, qe_dynq_range_fn *range, qe_dynq_row_fn *row) {
    *range = qe_dynq_range__scalar;
    *row = qe_dynq_row__scalar;
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) { *range = qe_dynq_range__avx512; *row = qe_dynq_row__avx512; }
    if (isa == QE_ISA_AVX2) { *range = qe_dynq_range__avx2; *row = qe_dynq_row__avx2; }
#endif
    (void)isa;   /* aarch64: every ISA uses the scalar pair */
}

static int qe_dynq_u8(int isa, size_t m, size_t k, const float *x, size_t ldx, int per_row,
                      uint8_t *q, size_t ldq, float *scale, int32_t *zp) {
    if (ldx < k || ldq < k) return QE_GEMM_EARG;
    qe_dynq_range_fn range;
    qe_dynq_row_fn row;
    qe_dynq_fns(isa, &range, &row);
    float s = 1.0f;
    int32_t z = 0;
    if (!per_row) {
        float lo = 0.0f, hi = 0.0f;
        for (size_t i = 0; i < m; i++) range(k, x + i * ldx, &lo, &hi);
        qe_dynq_qparams(lo, hi, &s, &z);
        scale[0] = s;
        zp[0] = z;
    }
    for (size_t i = 0; i < m; i++) {
        if (per_row) {
            float lo = 0.0f, hi = 0.0f;
            range(k, x + i * ldx, &lo, &hi);
            qe_dynq_qparams(lo, hi, &s, &z);
            scale[i] = s;
            zp[i] = z;
        }
        row(k, x + i * ldx, s, z, q + i * ldq);
        if (ldq > k) memset(q + i * ldq + k, 0, ldq - k);
    }
    return QE_GEMM_OK;
}

static size_t qe_gemm_linear_dynamic_ws_bytes(int isa, size_t m, size_t k) {
    return m * k + 2 * (m + 16) * 4 + 64 + qe_gemm_workspace_bytes(isa, m, k);
}

static int qe_gemm_linear_dynamic(int isa, size_t m, const float *x, size_t ldx, int per_row,
                                  const qe_packed_w *w, const float *w_scale, const float *bias,
                                  float *out, size_t ldc, int accumulate, int nthreads,
                                  void *ws, size_t ws_bytes) {
    const size_t k = (size_t)w->k;
    if (m == 0) return QE_GEMM_OK;
    const size_t need = qe_gemm_linear_dynamic_ws_bytes(isa, m, k);
    if (!ws || ws_bytes < need) {
        ws = qe_workspace(QE_WS_CALL, need);
        if (!ws) return QE_GEMM_ENOMEM;
    }
    float *s = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    int32_t *z = (int32_t *)(s + m + 16);
    uint8_t *q = (uint8_t *)(z + m + 16);
    uint8_t *gws = q + m * k;
    int rc = qe_dynq_u8(isa, m, k, x, ldx, per_row, q, k, s, z);
    if (rc == QE_GEMM_OK) {
        qe_gemm_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.a_zp = z; ep.a_scale = s; ep.w_scale = w_scale; ep.bias = bias;
        ep.row_step = per_row ? 1 : 0;
        ep.kind = QE_EPI_F32;
        ep.accumulate = accumulate;
        rc = qe_gemm(isa, m, q, k, w, &ep, out, ldc, nthreads, gws,
                     need - (size_t)(gws - (uint8_t *)ws));
    }
    return rc;
}

#endif
