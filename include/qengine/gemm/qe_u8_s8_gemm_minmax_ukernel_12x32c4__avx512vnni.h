/* u8 × s8 → u8/s8, 12 rows × 32 columns, K in groups of 4, AVX-512 VNNI, requantized in
 * registers: the K loop of qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni, then per accumulator
 * the operations of qe_gemm_epilogue__avx512 (hence of qe_requantize, numerics.md epilogue (b))
 * in the same order — + col_bias, cvtepi32_ps, × multiplier, max lo − z_y, min hi − z_y,
 * cvtps_epi32 (half to even under the default MXCSR), + z_y (in bytes, see below) — and a
 * masked byte store. The
 * int32 tile never goes to memory, which is what small-N (Cout = 64) and small-K (1×1 with
 * Cin = 16) layers were paying for. Callers use it only when a_zp is NULL and z_w = 0.
 */
#ifndef QE_U8_S8_GEMM_MINMAX_UKERNEL_12X32C4__AVX512VNNI_H
#define QE_U8_S8_GEMM_MINMAX_UKERNEL_12X32C4__AVX512VNNI_H

#include "qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni.h"

#if QE_HAVE_X86_SIMD
/* acc[0..MRV) → MRV rows of requantized bytes at out (row stride ldc), through the state that
 * QE_VNNI_REQUANT_SETUP declares */
#define QE_VNNI_REQUANT_STORE(MRV)                                                             \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                               \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                              \
                __m512 v = _mm512_cvtepi32_ps(_mm512_add_epi32(acc[i][h], bias[h]));           \
                v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, mult[h]), vlo), vhi);         \
                const __m128i y = _mm_add_epi8(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)), vzp); \
                _mm_mask_storeu_epi8(out + i * ldc + 16 * h, km[h], y);                        \
            }                                                                                  \
        }

/* + z_y after narrowing, in bytes: rhe(v) ∈ [lo − z_y, hi − z_y] and y = rhe(v) + z_y lies in
 * the output type, so adding modulo 256 to rhe(v) mod 256 gives y's bits exactly */
#define QE_VNNI_REQUANT_SETUP(q)                                                               \
    char *out = (char *)(q)->out;                                                              \
    const size_t ldc = (q)->ldc;                                                               \
    const uint32_t bits = (q)->nr >= 32 ? 0xffffffffu : (1u << (q)->nr) - 1u;                  \
    const __mmask16 km[2] = {(__mmask16)(bits & 0xffff), (__mmask16)(bits >> 16)};            \
    __m512i bias[2];                                                                           \
    __m512 mult[2];                                                                            \
    for (int h = 0; h < 2; h++) {                                                              \
        bias[h] = (q)->col_bias ? _mm512_maskz_loadu_epi32(km[h], (q)->col_bias + 16 * h)      \
                                : _mm512_setzero_si512();                                      \
        mult[h] = _mm512_maskz_loadu_ps(km[h], (q)->multiplier + 16 * h);                      \
    }                                                                                          \
    const __m512 vlo = _mm512_set1_ps((float)((q)->lo - (q)->out_zp));                         \
    const __m512 vhi = _mm512_set1_ps((float)((q)->hi - (q)->out_zp));                         \
    const __m128i vzp = _mm_set1_epi8((char)(q)->out_zp)

#define QE_VNNI_REQUANT_BODY(MRV, KS)                                                          \
    do {                                                                                       \
        QE_VNNI_ACCUMULATE(MRV, KS)                                                            \
        QE_VNNI_REQUANT_STORE(MRV)                                                             \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_gemm_minmax_ukernel_12x32c4__avx512vnni(size_t mr, size_t kg, const void *a,
                                                             const void *w,
                                                             const qe_gemm_requant_tile *q) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    QE_VNNI_REQUANT_SETUP(q);
    switch (mr) {
    case 1: QE_VNNI_REQUANT_BODY(1, 4); break;
    case 2: QE_VNNI_REQUANT_BODY(2, 4); break;
    case 3: QE_VNNI_REQUANT_BODY(3, 4); break;
    case 4: QE_VNNI_REQUANT_BODY(4, 2); break;
    case 5: QE_VNNI_REQUANT_BODY(5, 2); break;
    case 6: QE_VNNI_REQUANT_BODY(6, 2); break;
    case 7: QE_VNNI_REQUANT_BODY(7, 1); break;
    case 8: QE_VNNI_REQUANT_BODY(8, 1); break;
    case 9: QE_VNNI_REQUANT_BODY(9, 1); break;
    case 10: QE_VNNI_REQUANT_BODY(10, 1); break;
    case 11: QE_VNNI_REQUANT_BODY(11, 1); break;
    default: QE_VNNI_REQUANT_BODY(12, 1); break;
    }
}
#undef QE_VNNI_REQUANT_BODY
#endif

#endif
