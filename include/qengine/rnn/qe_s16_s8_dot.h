/* Exact int16 × int8 dot products for the integer LSTM / GRU (qe_rnn_static.h):
 *   out[j] = Σ_{k < kp} a[k] · w[j·ldw + k]        j < n, as an exact int64
 * a: int16 [kp] (the layer's centered activation codes, zero past K); w: int8 rows, zero past K;
 * kp a multiple of QE_S16S8_KB. Every product is ≤ 32768·128 = 2^22 in magnitude, so an int32
 * holding the sum of at most 256 of them (≤ 2^30) cannot overflow: each kernel adds its int32
 * partial sums into int64 at least every QE_S16S8_CHUNK K values, and every ISA returns the same
 * exact integers (the scalar kernel sums in int64 directly). Rows go 4 or 8 at a time, so that
 * a is loaded once for them.
 *   AVX2 / AVX-512: 16 / 32 weights sign-extended to int16 (vpmovsxbw), vpmaddwd against a;
 *   NEON: 8 weights widened (vmovl_s8), vmlal_s16 against a.
 */
#ifndef QE_S16_S8_DOT_H
#define QE_S16_S8_DOT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "../qe_target.h"

#define QE_S16S8_KB 32          /* kp granularity (the widest kernel's step) */
#define QE_S16S8_CHUNK 256      /* K values between int32 → int64 flushes */

typedef void (*qe_s16s8_dot_fn)(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                size_t ldw, int64_t *out);

static void qe_s16s8_dot__scalar(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                 size_t ldw, int64_t *out) {
    for (size_t j = 0; j < n; j++) {
        int64_t s = 0;
        const int8_t *r = w + j * ldw;
        for (size_t k = 0; k < kp; k++) s += (int64_t)a[k] * r[k];
        out[j] = s;
    }
}

/* The input projection on AVX2 multiplies int16 pairs against W widened to int16 in panels of
 * 16 rows, K-pair interleaved: panel p, pair g, row c, element e at
 * ((p·kp/2 + g)·16 + c)·2 + e; rows past n are zero. Every step's x pair is broadcast against
 * a panel (no horizontal sums, no vpmovsxbw per use: the panel stays in L1 while the steps
 * pass it). */
static size_t qe_s16_panels_bytes(size_t n, size_t kp) { return (n + 15) / 16 * 16 * kp * 2; }

static void qe_s16_pack_panels(size_t n, size_t kp, const int8_t *w, size_t ldw, int16_t *out) {
    memset(out, 0, qe_s16_panels_bytes(n, kp));
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < kp; k++)
            out[((r / 16 * (kp / 2) + k / 2) * 16 + r % 16) * 2 + k % 2] = w[r * ldw + k];
}

/* out[i·ldo + 16·p + c] = Σ_k a[i·lda + k] · row 16·p + c, for i < m, p < np (panels at wp) */
static void qe_s16_panels__scalar(size_t m, size_t kp, const int16_t *a, size_t lda,
                                  const int16_t *wp, size_t np, int64_t *out, size_t ldo) {
    for (size_t i = 0; i < m; i++)
        for (size_t p = 0; p < np; p++)
            for (size_t c = 0; c < 16; c++) {
                int64_t s = 0;
                for (size_t k = 0; k < kp; k++)
                    s += (int64_t)a[i * lda + k] * wp[((p * (kp / 2) + k / 2) * 16 + c) * 2 + k % 2];
                out[i * ldo + 16 * p + c] = s;
            }
}

#if QE_HAVE_X86_SIMD
/* 8 rows' int32 lane accumulators → one vector of the 8 rows' chunk sums (a vphaddd tree: a
 * row's chunk sum is ≤ 256·2^22 = 2^30), widened and added to the int64 row sums lo (rows 0-3)
 * and hi (rows 4-7) */
QE_TARGET_AVX2 QE_INLINE void qe_s16s8_reduce8__avx2(const __m256i acc[8], __m256i *lo,
                                                    __m256i *hi) {
    const __m256i r03 = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]),
                                          _mm256_hadd_epi32(acc[2], acc[3]));
    const __m256i r47 = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[4], acc[5]),
                                          _mm256_hadd_epi32(acc[6], acc[7]));
    const __m256i rows = _mm256_add_epi32(_mm256_permute2x128_si256(r03, r47, 0x20),
                                          _mm256_permute2x128_si256(r03, r47, 0x31));
    *lo = _mm256_add_epi64(*lo, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(rows)));
    *hi = _mm256_add_epi64(*hi, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(rows, 1)));
}

/* 8 rows at a time, the 8 accumulators reduced once per chunk (qe_s16s8_reduce8__avx2) */
QE_TARGET_AVX2
static void qe_s16s8_dot__avx2(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                               size_t ldw, int64_t *out) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i s_lo = _mm256_setzero_si256(), s_hi = _mm256_setzero_si256();
        for (size_t k0 = 0; k0 < kp; k0 += QE_S16S8_CHUNK) {
            const size_t k1 = k0 + QE_S16S8_CHUNK < kp ? k0 + QE_S16S8_CHUNK : kp;
            __m256i acc[8];
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) acc[q] = _mm256_setzero_si256();
            for (size_t k = k0; k < k1; k += 16) {
                const __m256i va = _mm256_loadu_si256((const __m256i *)(a + k));
                _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) {
                    const __m256i b = _mm256_cvtepi8_epi16(
                        _mm_loadu_si128((const __m128i *)(w + (j + (size_t)q) * ldw + k)));
                    acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(va, b));
                }
            }
            qe_s16s8_reduce8__avx2(acc, &s_lo, &s_hi);
        }
        _mm256_storeu_si256((__m256i *)(out + j), s_lo);
        _mm256_storeu_si256((__m256i *)(out + j + 4), s_hi);
    }
    if (j < n) qe_s16s8_dot__scalar(n - j, kp, a, w + j * ldw, ldw, out + j);
}

/* qe_s16_panels__scalar, M activation rows (a constant after inlining) × one panel at a time:
 * 2·M accumulators of 8 rows' int32 lane sums, flushed into the int64 outputs every
 * QE_S16S8_CHUNK K values (a lane holds ≤ 256 products of ≤ 2^22) */
QE_TARGET_AVX2 QE_INLINE void qe_s16_panels_m__avx2(size_t kp, const int16_t *a, size_t lda,
                                                    const int16_t *wp, size_t np, int64_t *out,
                                                    size_t ldo, const int M) {
    for (size_t p = 0; p < np; p++) {
        const int16_t *w = wp + p * kp * 16;
        for (size_t k0 = 0; k0 < kp; k0 += QE_S16S8_CHUNK) {
            const size_t k1 = k0 + QE_S16S8_CHUNK < kp ? k0 + QE_S16S8_CHUNK : kp;
            __m256i acc[4][2];
            _Pragma("GCC unroll 4") for (int i = 0; i < M; i++)
                acc[i][0] = acc[i][1] = _mm256_setzero_si256();
            for (size_t g = k0 / 2; g < k1 / 2; g++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + g * 32));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + g * 32 + 16));
                _Pragma("GCC unroll 4") for (int i = 0; i < M; i++) {
                    int32_t pair;
                    memcpy(&pair, a + (size_t)i * lda + 2 * g, 4);
                    const __m256i va = _mm256_set1_epi32(pair);
                    acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(va, w0));
                    acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(va, w1));
                }
            }
            _Pragma("GCC unroll 4") for (int i = 0; i < M; i++) {
                int64_t *o = out + (size_t)i * ldo + 16 * p;
                const __m256i v[4] = {
                    _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc[i][0])),
                    _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc[i][0], 1)),
                    _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc[i][1])),
                    _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc[i][1], 1))};
                for (int r = 0; r < 4; r++) {
                    __m256i *d = (__m256i *)(o + 4 * r);
                    _mm256_storeu_si256(d, k0 ? _mm256_add_epi64(_mm256_loadu_si256(d), v[r]) : v[r]);
                }
            }
        }
    }
}

QE_TARGET_AVX2
static void qe_s16_panels__avx2(size_t m, size_t kp, const int16_t *a, size_t lda,
                                const int16_t *wp, size_t np, int64_t *out, size_t ldo) {
    for (; m >= 4; m -= 4, a += 4 * lda, out += 4 * ldo)
        qe_s16_panels_m__avx2(kp, a, lda, wp, np, out, ldo, 4);
    switch (m) {
    case 3: qe_s16_panels_m__avx2(kp, a, lda, wp, np, out, ldo, 3); break;
    case 2: qe_s16_panels_m__avx2(kp, a, lda, wp, np, out, ldo, 2); break;
    case 1: qe_s16_panels_m__avx2(kp, a, lda, wp, np, out, ldo, 1); break;
    default: break;
    }
}

QE_TARGET_AVX512VNNI
static void qe_s16s8_dot__avx512(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                 size_t ldw, int64_t *out) {
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int64_t s[4] = {0, 0, 0, 0};
        for (size_t k0 = 0; k0 < kp; k0 += QE_S16S8_CHUNK) {
            const size_t k1 = k0 + QE_S16S8_CHUNK < kp ? k0 + QE_S16S8_CHUNK : kp;
            __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                              _mm512_setzero_si512(), _mm512_setzero_si512()};
            for (size_t k = k0; k < k1; k += 32) {
                const __m512i va = _mm512_loadu_si512((const void *)(a + k));
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
                    const __m256i b = _mm256_loadu_si256((const __m256i *)(w + (j + q) * ldw + k));
                    acc[q] = _mm512_dpwssd_epi32(acc[q], va, _mm512_cvtepi8_epi16(b));
                }
            }
            for (int q = 0; q < 4; q++) {
                const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc[q]));
                const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc[q], 1));
                s[q] += _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
            }
        }
        for (int q = 0; q < 4; q++) out[j + q] = s[q];
    }
    if (j < n) qe_s16s8_dot__scalar(n - j, kp, a, w + j * ldw, ldw, out + j);
}
#endif

#if QE_HAVE_NEONDOT
QE_TARGET_NEONDOT
static void qe_s16s8_dot__neon(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                               size_t ldw, int64_t *out) {
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int64_t s[4] = {0, 0, 0, 0};
        for (size_t k0 = 0; k0 < kp; k0 += QE_S16S8_CHUNK) {
            const size_t k1 = k0 + QE_S16S8_CHUNK < kp ? k0 + QE_S16S8_CHUNK : kp;
            int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            for (size_t k = k0; k < k1; k += 8) {
                const int16x8_t va = vld1q_s16(a + k);
                for (int q = 0; q < 4; q++) {
                    const int16x8_t b = vmovl_s8(vld1_s8(w + (j + q) * ldw + k));
                    acc[q] = vmlal_s16(acc[q], vget_low_s16(va), vget_low_s16(b));
                    acc[q] = vmlal_high_s16(acc[q], va, b);
                }
            }
            for (int q = 0; q < 4; q++) s[q] += vaddlvq_s32(acc[q]);
        }
        for (int q = 0; q < 4; q++) out[j + q] = s[q];
    }
    if (j < n) qe_s16s8_dot__scalar(n - j, kp, a, w + j * ldw, ldw, out + j);
}
#endif

static const char *const qe_s16s8_dot_names[4] = {"qe_s16s8_dot__scalar", "qe_s16s8_dot__avx2",
                                                  "qe_s16s8_dot__avx512", "qe_s16s8_dot__neon"};

/* The kernel for a runnable ISA (QE_ISA_*); the scalar one for anything else compiled out. */
static qe_s16s8_dot_fn qe_s16s8_dot_for_isa(int isa) {
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX2) return qe_s16s8_dot__avx2;
    if (isa == QE_ISA_AVX512VNNI) return qe_s16s8_dot__avx512;
#endif
#if QE_HAVE_NEONDOT
    if (isa == QE_ISA_NEONDOT) return qe_s16s8_dot__neon;
#endif
    (void)isa;
    return qe_s16s8_dot__scalar;
}

#endif
