/* u8 × int4 → f32, up to 4 rows × one 16-row W panel, AVX-512 VNNI; equals the scalar twin bit
 * for bit. A 64-byte block's low nibbles (AND 15) are the [16 rows][4 K] weights of K 8b..8b+3
 * as unsigned w + 8, its high nibbles (16-bit shift by 4, AND 15) those of 8b+4..8b+7: one
 * vpdpbusd each against 4 broadcast activation bytes (u8 × s8 → int32, exact). */
#ifndef QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__AVX512VNNI_H
#define QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__AVX512VNNI_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_w4_params.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX512VNNI QE_INLINE __m512i qe_w4_bcast4__avx512(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

QE_TARGET_AVX512VNNI QE_INLINE void qe_w4_rows__avx512vnni(const qe_w4_tile *t, const int MR) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const size_t ng = t->ng, gb = t->gb;
    const uint8_t *pw = t->w;
    __m512 y[QE_W4_MR];   /* set by group 0 (ng ≥ 1); zeroed for the compiler's sake */
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) y[i] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        /* two chains per row (even and odd blocks): half the vpdpbusd latency per chain */
        __m512i acc[QE_W4_MR][2];
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
            acc[i][0] = acc[i][1] = _mm512_setzero_si512();
        for (size_t bb = 0; bb < gb; bb += 2, pw += 128) {
            const size_t k0 = (g * gb + bb) * 8;
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                const __m512i v = _mm512_loadu_si512((const void *)(pw + 64 * h));
                const __m512i lo = _mm512_and_si512(v, m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
                    const uint8_t *a = t->a + (size_t)i * t->lda + k0 + 8 * h;
                    acc[i][h] = _mm512_dpbusd_epi32(acc[i][h], qe_w4_bcast4__avx512(a), lo);
                    acc[i][h] = _mm512_dpbusd_epi32(acc[i][h], qe_w4_bcast4__avx512(a + 4), hi);
                }
            }
        }
        const __m512i cs = _mm512_loadu_si512((const void *)(t->colsum + g * 16));
        const __m512 ws = _mm512_loadu_ps(t->scale + g * 16);
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
            const __m512i rt = _mm512_set1_epi32(t->rterm[(size_t)i * ng + g]);
            const __m512i za = _mm512_set1_epi32(t->a_zp ? t->a_zp[(size_t)i * t->row_step] : 0);
            const __m512 c = _mm512_mul_ps(
                _mm512_set1_ps(t->acc_out ? 0.0f : t->a_scale[(size_t)i * t->row_step]), ws);
            const __m512i v = _mm512_sub_epi32(
                _mm512_add_epi32(_mm512_add_epi32(acc[i][0], acc[i][1]), rt),
                _mm512_mullo_epi32(za, cs));
            if (t->acc_out) {   /* integer result: the groups' sums added in L1 */
                int32_t *o = t->acc_out + (size_t)i * t->acc_ld;
                _mm512_storeu_si512((void *)o,
                                    g ? _mm512_add_epi32(_mm512_loadu_si512((const void *)o), v) : v);
                continue;
            }
            const __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(v), c);
            y[i] = g ? _mm512_add_ps(y[i], p) : p;
        }
    }
    if (t->acc_out) return;
    const __mmask16 k = t->nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << t->nr) - 1);
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
        float *o = t->out + (size_t)i * t->ldc;
        __m512 v = y[i];
        if (t->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, t->bias));
        if (t->accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, o), v);
        _mm512_mask_storeu_ps(o, k, v);
    }
}

QE_TARGET_AVX512VNNI
static void qe_u8_s4_gemm_dequant_ukernel_4x16c8__avx512vnni(size_t mr, const qe_w4_tile *t) {
    switch (mr) {
    case 1: qe_w4_rows__avx512vnni(t, 1); break;
    case 2: qe_w4_rows__avx512vnni(t, 2); break;
    case 3: qe_w4_rows__avx512vnni(t, 3); break;
    default: qe_w4_rows__avx512vnni(t, 4); break;
    }
}
#endif

#endif
