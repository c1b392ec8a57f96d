/* u8 × int4 → f32, up to 4 rows × one 16-row W panel, AVX2; equals the scalar twin bit for bit.
 *
 * A 64-byte block is two 32-byte halves (rows 0-7, 8-15); a half's low nibbles (AND 15) are the
 * [8 rows][4 K] weights of K 8b..8b+3, its high nibbles (16-bit shift by 4, AND 15) those of
 * 8b+4..8b+7, as unsigned w + 8 ≤ 15. vpmaddubsw multiplies them with 4 broadcast activation
 * bytes: each int16 lane is a pair sum ≤ 2·255·15 = 7650, so four of them (two blocks) add up in
 * int16 without overflow (≤ 30600 < 2^15) before one vpmaddwd by 1 widens them to int32: exact,
 * no saturation anywhere. The group epilogue is the scalar one's operations in its order.
 */
#ifndef QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__AVX2_H
#define QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__AVX2_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_w4_params.h"

#if QE_HAVE_X86_SIMD
QE_TARGET_AVX2 QE_INLINE __m256i qe_w4_bcast4__avx2(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

QE_TARGET_AVX2 QE_INLINE void qe_w4_rows__avx2(const qe_w4_tile *t, const int MR) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const size_t ng = t->ng, gb = t->gb;
    const uint8_t *pw = t->w;
    __m256 y[QE_W4_MR][2];   /* set by group 0 (ng ≥ 1); zeroed for the compiler's sake */
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) y[i][0] = y[i][1] = _mm256_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        __m256i acc[QE_W4_MR][2];
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
            acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        for (size_t bb = 0; bb < gb; bb += 2, pw += 128) {
            const size_t k0 = (g * gb + bb) * 8;
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)(pw + 32 * h));
                const __m256i v1 = _mm256_loadu_si256((const __m256i *)(pw + 64 + 32 * h));
                const __m256i l0 = _mm256_and_si256(v0, m4);
                const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
                const __m256i l1 = _mm256_and_si256(v1, m4);
                const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
                _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
                    const uint8_t *a = t->a + (size_t)i * t->lda + k0;
                    __m256i s = _mm256_maddubs_epi16(qe_w4_bcast4__avx2(a), l0);
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(qe_w4_bcast4__avx2(a + 4), h0));
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(qe_w4_bcast4__avx2(a + 8), l1));
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(qe_w4_bcast4__avx2(a + 12), h1));
                    acc[i][h] = _mm256_add_epi32(acc[i][h], _mm256_madd_epi16(s, ones));
                }
            }
        }
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
            const __m256i rt = _mm256_set1_epi32(t->rterm[(size_t)i * ng + g]);
            const __m256i za = _mm256_set1_epi32(t->a_zp ? t->a_zp[(size_t)i * t->row_step] : 0);
            const __m256 sa = _mm256_set1_ps(t->acc_out ? 0.0f : t->a_scale[(size_t)i * t->row_step]);
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                const __m256i cs = _mm256_loadu_si256((const __m256i *)(t->colsum + g * 16 + 8 * h));
                const __m256i v = _mm256_sub_epi32(_mm256_add_epi32(acc[i][h], rt),
                                                   _mm256_mullo_epi32(za, cs));
                if (t->acc_out) {   /* integer result: the groups' sums added in L1 */
                    __m256i *o = (__m256i *)(t->acc_out + (size_t)i * t->acc_ld + 8 * h);
                    _mm256_storeu_si256(o, g ? _mm256_add_epi32(_mm256_loadu_si256(o), v) : v);
                    continue;
                }
                const __m256 c = _mm256_mul_ps(sa, _mm256_loadu_ps(t->scale + g * 16 + 8 * h));
                const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(v), c);
                y[i][h] = g ? _mm256_add_ps(y[i][h], p) : p;
            }
        }
    }
    if (t->acc_out) return;
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {
        float *o = t->out + (size_t)i * t->ldc;
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            __m256 v = y[i][h];
            if (t->nr == 16) {
                if (t->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(t->bias + 8 * h));
                if (t->accumulate) v = _mm256_add_ps(_mm256_loadu_ps(o + 8 * h), v);
                _mm256_storeu_ps(o + 8 * h, v);
            } else {   /* the last panel's tail: the same two adds one lane at a time (no
                        * masked loads: docs/other_cpus.md, an emulator bug) */
                float yv[8];
                _mm256_storeu_ps(yv, v);
                for (size_t j = 8 * (size_t)h; j < t->nr && j < 8 * (size_t)h + 8; j++) {
                    float u = yv[j - 8 * (size_t)h];
                    if (t->bias) u = u + t->bias[j];
                    o[j] = t->accumulate ? o[j] + u : u;
                }
            }
        }
    }
}

QE_TARGET_AVX2
static void qe_u8_s4_gemm_dequant_ukernel_4x16c8__avx2(size_t mr, const qe_w4_tile *t) {
    switch (mr) {
    case 1: qe_w4_rows__avx2(t, 1); break;
    case 2: qe_w4_rows__avx2(t, 2); break;
    case 3: qe_w4_rows__avx2(t, 3); break;
    default: qe_w4_rows__avx2(t, 4); break;
    }
}
#endif

#endif
