/* The integer (static) LSTM and GRU: one direction of one layer, the whole time loop in C,
 * GIL-free. Definition: docs/numerics.md "Integer LSTM and GRU"; NumPy twin:
 * qengine/reference/static_rnn.py (direction_ref), which this equals bit for bit on every ISA.
 *
 * Integer parts are exact: the dot products (qe_s16_s8_dot.h, the only ISA-specific code, all
 * returning the same int64) and the Q-format gate arithmetic below (int64, arithmetic shifts).
 * The float32 parts are single IEEE operations in the definition's order (-ffp-contract=off).
 *
 *   gx[t, n] = float32(Σ_k xc[t, k]·W[n, k])·mx[n] + bx[n]               all steps up front
 *   per step and active batch row: hc = h − z_h (int16, zero past H),
 *   LSTM  q = q12(gx + float32(Σ hc·R)·mh); i, o, f = σ(q), g = tanh(q)
 *         c = sat16(rsr(f·c, 15) + rsr(i·g, 15 + e_c));  h = h_out(o·tanh(c in Q3.12))
 *   GRU   z, r = σ(q12(gx + float32(Σ hc·R)·mh)) on the z / r rows;
 *         linear_before_reset: n = tanh(q12(gx + float32(rsr(r·q12(float32(Σ hc·Rn)·mh + bh), 15))))
 *         else:                n = tanh(q12(gx + float32(Σ rsr(r·hc, 15)·Rn)·mh))
 *         h = h_out((32768 − z)·n + z·h15)      h15 = hc (int16) or rhe(float32(hc)·mq) (int8)
 *   h_out(v) = int16: sat16(rsr(v, 15));  int8: Quantize(float32(v)·mo) onto (0..255, z_h).
 * Rows past their sequence length keep their state; their y stays at z_h (the caller's fill).
 */
#ifndef QE_RNN_STATIC_H
#define QE_RNN_STATIC_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../qe_threads.h"
#include "qe_rnn_luts.h"
#include "qe_s16_s8_dot.h"

enum { QE_SRNN_LSTM = 0, QE_SRNN_GRU = 1 };
enum { QE_SRNN_INT16 = 0, QE_SRNN_INT8 = 1 };
enum { QE_SRNN_OK = 0, QE_SRNN_EARG = -1, QE_SRNN_ENOMEM = -2 };

typedef struct qe_srnn_layer {
    int32_t kind, scheme, T, B, H, input_size;   /* not "I": complex.h's macro */
    int32_t reverse, linear_before_reset, e_c, z_h;
    float mo, mq;                      /* int8 scheme: float32(2^-30 / s_h), float32(s_h·32768) */
    const int16_t *x;                  /* centered input codes x − z_x, [T][B][kpx], time order */
    size_t kpx;                        /* I padded to QE_S16S8_KB (zeros) */
    const int8_t *w;                   /* [G·H][kpx] */
    const int16_t *w16;                /* AVX2: W as int16 panels, qe_s16_pack_panels (or NULL) */
    const int8_t *r;                   /* [G·H][kph], kph = H padded to QE_S16S8_KB */
    const float *mx, *mh, *bx, *bh;    /* [G·H]; bh: GRU linear_before_reset (else unused) */
    const int32_t *lens;               /* [B] or NULL (all T) */
    int16_t *h, *c;                    /* [B][H] codes in and out (c: LSTM) */
    int16_t *y;                        /* [T][B][H] codes out, or NULL */
    int32_t isa;
    int32_t nthreads;                  /* 0: the process setting when a step is worth a team */
} qe_srnn_layer;

static inline int64_t qe_srnn_rsr(int64_t x, int s) {   /* floor((x + 2^(s-1)) / 2^s) */
    return s == 0 ? x : (x + ((int64_t)1 << (s - 1))) >> s;   /* gcc/clang: arithmetic >> */
}

static inline int64_t qe_srnn_sat16(int64_t x) {
    return x < -32768 ? -32768 : (x > 32767 ? 32767 : x);
}

/* round half to even of a float within int32 range: cvtss2si (SSE, the default MXCSR mode)
 * inline on x86 — lrintf is a libm call there without SSE4.1 — and lrintf elsewhere */
static inline int32_t qe_srnn_rint(float v) {
#if QE_HAVE_X86_SIMD
    return _mm_cvtss_si32(_mm_set_ss(v));
#else
    return (int32_t)lrintf(v);
#endif
}

static inline int64_t qe_srnn_q12(float p) {
    p = p < -32768.0f ? -32768.0f : p;
    p = p > 32767.0f ? 32767.0f : p;
    return qe_srnn_rint(p);
}

static inline int64_t qe_srnn_lut(const int32_t *t, int64_t q) {
    const int64_t u = q + 32768, i = u >> QE_RNN_LUT_SHIFT;
    const int64_t f = u & ((1 << QE_RNN_LUT_SHIFT) - 1);
    const int64_t t0 = t[i], t1 = t[i + 1 < QE_RNN_LUT_SIZE ? i + 1 : QE_RNN_LUT_SIZE - 1];
    return t0 + (((t1 - t0) * f + (1 << (QE_RNN_LUT_SHIFT - 1))) >> QE_RNN_LUT_SHIFT);
}

static inline int16_t qe_srnn_h_out(const qe_srnn_layer *L, int64_t v) {
    if (L->scheme == QE_SRNN_INT16) return (int16_t)qe_srnn_sat16(qe_srnn_rsr(v, 15));
    float f = (float)v * L->mo;
    const float lo = (float)(0 - L->z_h), hi = (float)(255 - L->z_h);
    f = f < lo ? lo : f;
    f = f > hi ? hi : f;
    return (int16_t)(qe_srnn_rint(f) + L->z_h);
}

#if QE_HAVE_X86_SIMD
/* 4 at a time: int64 → double exactly (|v| < 2^51: add the bits of 2^52 + 2^51, subtract it as
 * a double), then one rounding to float32 — the same value as the scalar int64 → float32 */
QE_TARGET_AVX2
static size_t qe_srnn_affine__avx2(size_t n, const int64_t *acc, const float *m, const float *b,
                                   float *g) {
    const __m256i magic = _mm256_set1_epi64x(0x4338000000000000LL);
    const __m256d magic_d = _mm256_set1_pd(6755399441055744.0);   /* 2^52 + 2^51 */
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(acc + j));
        const __m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(v, magic)), magic_d);
        const __m128 f = _mm256_cvtpd_ps(d);
        _mm_storeu_ps(g + j, _mm_add_ps(_mm_mul_ps(f, _mm_loadu_ps(m + j)), _mm_loadu_ps(b + j)));
    }
    return j;
}
#endif

static inline size_t qe_srnn_pad(size_t k) {
    return (k + QE_S16S8_KB - 1) / QE_S16S8_KB * QE_S16S8_KB;
}

/* LSTM units [u0, u1) of one batch row: gate rows n = x·H + u of g (gx) and acc (Σ hc·R) */
static void qe_srnn_lstm_units(const qe_srnn_layer *L, size_t u0, size_t u1, const float *g,
                               const int64_t *acc, int16_t *c, int16_t *h) {
    const size_t H = (size_t)L->H;
    const int e = L->e_c;
    for (size_t u = u0; u < u1; u++) {
        int64_t q[4];
        for (size_t x = 0; x < 4; x++) {
            const size_t n = x * H + u;
            q[x] = qe_srnn_q12(g[n] + (float)acc[n] * L->mh[n]);
        }
        const int64_t i = qe_srnn_lut(qe_rnn_sigmoid_lut, q[0]);
        const int64_t o = qe_srnn_lut(qe_rnn_sigmoid_lut, q[1]);
        const int64_t f = qe_srnn_lut(qe_rnn_sigmoid_lut, q[2]);
        const int64_t gg = qe_srnn_lut(qe_rnn_tanh_lut, q[3]);
        const int64_t cn = qe_srnn_sat16(qe_srnn_rsr(f * c[u], 15) + qe_srnn_rsr(i * gg, 15 + e));
        c[u] = (int16_t)cn;
        const int64_t tin = e <= 3 ? qe_srnn_rsr(cn, 3 - e)
                                   : qe_srnn_sat16(cn * ((int64_t)1 << (e - 3)));
        h[u] = qe_srnn_h_out(L, o * qe_srnn_lut(qe_rnn_tanh_lut, tin));
    }
}

#if QE_HAVE_X86_SIMD
/* qe_srnn_lstm_units 8 units at a time, the same integers: every intermediate of the
 * definition fits int32 here (products of two Q0.15 values ≤ 2^30, rounding offsets ≤ 2^29,
 * cell codes shifted by ≤ 12 bits), and the float steps are the same single operations
 * (mul, add, max, min, cvtps2dq = rhe). Tables through vpgatherdd. */
QE_TARGET_AVX2 QE_INLINE __m256i qe_srnn_lut8__avx2(const int32_t *t, __m256i q) {
    const __m256i u = _mm256_add_epi32(q, _mm256_set1_epi32(32768));
    const __m256i i = _mm256_srli_epi32(u, QE_RNN_LUT_SHIFT);
    const __m256i f = _mm256_and_si256(u, _mm256_set1_epi32((1 << QE_RNN_LUT_SHIFT) - 1));
    const __m256i t0 = _mm256_i32gather_epi32((const int *)t, i, 4);
    const __m256i t1 = _mm256_i32gather_epi32((const int *)(t + 1), i, 4);   /* i ≤ 1023 */
    const __m256i d = _mm256_mullo_epi32(_mm256_sub_epi32(t1, t0), f);
    return _mm256_add_epi32(t0, _mm256_srai_epi32(
        _mm256_add_epi32(d, _mm256_set1_epi32(1 << (QE_RNN_LUT_SHIFT - 1))), QE_RNN_LUT_SHIFT));
}

QE_TARGET_AVX2 QE_INLINE __m256i qe_srnn_rsr8__avx2(__m256i x, int s) {
    if (s == 0) return x;
    return _mm256_sra_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(1 << (s - 1))),
                            _mm_cvtsi32_si128(s));
}

QE_TARGET_AVX2 QE_INLINE __m256i qe_srnn_sat16x8__avx2(__m256i x) {
    return _mm256_max_epi32(_mm256_min_epi32(x, _mm256_set1_epi32(32767)),
                            _mm256_set1_epi32(-32768));
}

QE_TARGET_AVX2 QE_INLINE void qe_srnn_store16x8__avx2(int16_t *d, __m256i v) {
    _mm_storeu_si128((__m128i *)d, _mm_packs_epi32(_mm256_castsi256_si128(v),
                                                   _mm256_extracti128_si256(v, 1)));
}

/* out[n] = table(q12(g[n] + float32(acc[n])·m[n])) for n < n8 = n / 8·8 (GRU's z and r rows);
 * returns n8 */
QE_TARGET_AVX2
static size_t qe_srnn_gate_lut__avx2(size_t n, const float *g, const int64_t *acc,
                                     const float *m, const int32_t *table, int64_t *out) {
    const size_t n8 = n / 8 * 8;
    const __m256 lo = _mm256_set1_ps(-32768.0f), hi = _mm256_set1_ps(32767.0f);
    for (size_t j = 0; j < n8; j += 8) {
        float a[8];
        for (int k = 0; k < 8; k++) a[k] = (float)acc[j + (size_t)k];
        __m256 p = _mm256_add_ps(_mm256_loadu_ps(g + j),
                                 _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(m + j)));
        const __m256i y = qe_srnn_lut8__avx2(
            table, _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(p, lo), hi)));
        _mm256_storeu_si256((__m256i *)(out + j), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(y)));
        _mm256_storeu_si256((__m256i *)(out + j + 4),
                            _mm256_cvtepi32_epi64(_mm256_extracti128_si256(y, 1)));
    }
    return n8;
}

QE_TARGET_AVX2
static size_t qe_srnn_lstm_units__avx2(const qe_srnn_layer *L, size_t u0, size_t u1,
                                       const float *g, const int64_t *acc, int16_t *c, int16_t *h) {
    const size_t H = (size_t)L->H, u8 = u0 + (u1 - u0) / 8 * 8;
    const int e = L->e_c;
    const __m256 lo = _mm256_set1_ps(-32768.0f), hi = _mm256_set1_ps(32767.0f);
    for (size_t u = u0; u < u8; u += 8) {
        __m256i q[4];
        for (size_t x = 0; x < 4; x++) {
            const size_t n = x * H + u;
            float a[8];
            for (int j = 0; j < 8; j++) a[j] = (float)acc[n + (size_t)j];
            __m256 p = _mm256_add_ps(_mm256_loadu_ps(g + n),
                                     _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(L->mh + n)));
            q[x] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(p, lo), hi));
        }
        const __m256i i = qe_srnn_lut8__avx2(qe_rnn_sigmoid_lut, q[0]);
        const __m256i o = qe_srnn_lut8__avx2(qe_rnn_sigmoid_lut, q[1]);
        const __m256i f = qe_srnn_lut8__avx2(qe_rnn_sigmoid_lut, q[2]);
        const __m256i gg = qe_srnn_lut8__avx2(qe_rnn_tanh_lut, q[3]);
        const __m256i c0 = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(c + u)));
        const __m256i cn = qe_srnn_sat16x8__avx2(_mm256_add_epi32(
            qe_srnn_rsr8__avx2(_mm256_mullo_epi32(f, c0), 15),
            qe_srnn_rsr8__avx2(_mm256_mullo_epi32(i, gg), 15 + e)));
        qe_srnn_store16x8__avx2(c + u, cn);
        const __m256i tin = e <= 3 ? qe_srnn_rsr8__avx2(cn, 3 - e)
                                   : qe_srnn_sat16x8__avx2(_mm256_sll_epi32(cn, _mm_cvtsi32_si128(e - 3)));
        const __m256i h30 = _mm256_mullo_epi32(o, qe_srnn_lut8__avx2(qe_rnn_tanh_lut, tin));
        __m256i hq;
        if (L->scheme == QE_SRNN_INT16) {
            hq = qe_srnn_sat16x8__avx2(qe_srnn_rsr8__avx2(h30, 15));
        } else {
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(h30), _mm256_set1_ps(L->mo));
            v = _mm256_max_ps(v, _mm256_set1_ps((float)(0 - L->z_h)));
            v = _mm256_min_ps(v, _mm256_set1_ps((float)(255 - L->z_h)));
            hq = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(L->z_h));
        }
        qe_srnn_store16x8__avx2(h + u, hq);
    }
    return u8;
}
#endif

/* g[j] = float32(acc[j])·m[j] + b[j] (int64 → float32 rounded once, then mul, add) */
static void qe_srnn_affine(int isa, size_t n, const int64_t *acc, const float *m,
                           const float *b, float *g) {
    size_t j = 0;
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX2 || isa == QE_ISA_AVX512VNNI) j = qe_srnn_affine__avx2(n, acc, m, b, g);
#else
    (void)isa;
#endif
    for (; j < n; j++) g[j] = (float)acc[j] * m[j] + b[j];
}

/* ---- the time loop and its threads ----------------------------------------------------------
 * The units are divided among the team in groups of 8 (the AVX2 gate width): member t owns
 * units [u0, u1) of every batch row — their gate rows x·H + u of R, their c and their slice of
 * the new h and of y. It copies the whole previous h (the dot products need all of it) into its
 * own hc, so h is double-buffered (hb[s & 1] → hb[(s + 1) & 1]) and a step ends with one
 * barrier; a GRU without linear_before_reset has a second one, after every member has written
 * its units of r ⊙ h (the candidate's dot products need all of them). At batch 1 a step streams
 * R: each member's rows stay in its own core's cache from step to step (int8 R of a 512-unit
 * LSTM is 1 MiB, 512 KiB per core on two). Which member computes a value changes nothing in
 * it: any team size gives the same bits. */
#define QE_SRNN_PAR_MIN_MACS (1 << 17)   /* per step (B·G·H·H); below it one thread is faster */

typedef struct qe_srnn_shared {
    const qe_srnn_layer *L;
    qe_s16s8_dot_fn dot;
    size_t GH, kph, nacc;
    float *gx;                         /* [T·B][GH], the input projection of every step */
    int16_t *hb[2];                    /* [B][H] h codes, double-buffered (hb[0] = L->h) */
    int16_t *rh;                       /* [B][kph] GRU lbr=0: rsr(r·hc, 15), zero past H */
} qe_srnn_shared;

typedef struct qe_srnn_member {
    size_t u0, u1;                     /* its units */
    int64_t *acc;                      /* [nacc]: GH (its rows only are used), ≥ the projection's */
    int64_t *q;                        /* [B][GH] gate values: a GRU's z outlives its stage */
    int16_t *hc;                       /* [kph] the previous h, centered, zero past H */
} qe_srnn_member;

static size_t qe_srnn_member_bytes(size_t nacc, size_t B, size_t GH, size_t kph) {
    return ((nacc + B * GH) * sizeof(int64_t) + kph * sizeof(int16_t) + 63) / 64 * 64;
}

static void qe_srnn_member_init(qe_srnn_member *m, char *mem, size_t nacc, size_t B, size_t GH,
                                size_t kph, size_t H, int t, int n) {
    const size_t ng = (H + 7) / 8, g0 = ng * (size_t)t / (size_t)n, g1 = ng * (size_t)(t + 1) / (size_t)n;
    m->u0 = 8 * g0;
    m->u1 = 8 * g1 < H ? 8 * g1 : H;
    m->acc = (int64_t *)(void *)mem;
    m->q = m->acc + nacc;
    m->hc = (int16_t *)(void *)(m->q + B * GH);
    memset(m->hc, 0, kph * sizeof(int16_t));
}

/* The input projection of every step, member t of n. AVX2 (W as int16 panels,
 * qe_s16_pack_panels): the member's panels a block of ≤ 16 KiB at a time, which stays in L1
 * while the steps pass it 4 at a time. Elsewhere: blocks of rb rows (≤ 32 KiB of int8 rows),
 * every step's x against a block. */
static size_t qe_srnn_panel_block(size_t kpx) {
    const size_t pb = (16u << 10) / (32 * kpx);
    return pb ? pb : 1;
}

static void qe_srnn_project(const qe_srnn_shared *sh, size_t rb, int t, int n, int64_t *acc) {
    const qe_srnn_layer *L = sh->L;
    const size_t TB = (size_t)L->T * (size_t)L->B, kpx = L->kpx;
#if QE_HAVE_X86_SIMD
    if (L->w16 && L->isa == QE_ISA_AVX2) {
        const size_t np = (sh->GH + 15) / 16, pb = qe_srnn_panel_block(kpx);
        const size_t p0 = np * (size_t)t / (size_t)n, p1 = np * (size_t)(t + 1) / (size_t)n;
        for (size_t pa = p0; pa < p1; pa += pb) {
            const size_t npb = p1 - pa < pb ? p1 - pa : pb, n0 = 16 * pa;
            const size_t nr = sh->GH - n0 < 16 * npb ? sh->GH - n0 : 16 * npb;
            for (size_t tb = 0; tb < TB; tb += 4) {
                const size_t m = TB - tb < 4 ? TB - tb : 4;
                qe_s16_panels__avx2(m, kpx, L->x + tb * kpx, kpx, L->w16 + pa * kpx * 16, npb,
                                    acc, 16 * npb);
                for (size_t i = 0; i < m; i++)
                    qe_srnn_affine(L->isa, nr, acc + i * 16 * npb, L->mx + n0, L->bx + n0,
                                   sh->gx + (tb + i) * sh->GH + n0);
            }
        }
        return;
    }
#endif
    const size_t nblk = (sh->GH + rb - 1) / rb;
    for (size_t j = nblk * (size_t)t / (size_t)n; j < nblk * (size_t)(t + 1) / (size_t)n; j++) {
        const size_t n0 = j * rb, nr = sh->GH - n0 < rb ? sh->GH - n0 : rb;
        for (size_t tb = 0; tb < TB; tb++) {
            sh->dot(nr, kpx, L->x + tb * kpx, L->w + n0 * kpx, kpx, acc);
            qe_srnn_affine(L->isa, nr, acc, L->mx + n0, L->bx + n0, sh->gx + tb * sh->GH + n0);
        }
    }
}

/* dot products of rows x·H + [u0, u1) for gates x in [x0, x1) against a */
static void qe_srnn_gate_dots(const qe_srnn_shared *sh, const qe_srnn_member *m, size_t x0,
                              size_t x1, const int16_t *a, int64_t *acc) {
    const size_t H = (size_t)sh->L->H, n = m->u1 - m->u0;
    for (size_t x = x0; x < x1; x++) {
        const size_t r0 = x * H + m->u0;
        sh->dot(n, sh->kph, a, sh->L->r + r0 * sh->kph, sh->kph, acc + r0);
    }
}

/* Step s of batch row b, stage `phase` (GRU lbr=0: 0 = z, r and r ⊙ h, 1 = candidate and h) for
 * the member's units; hp / hn: the previous / new h of the row. */
static void qe_srnn_step(const qe_srnn_shared *sh, qe_srnn_member *m, size_t s, size_t b,
                         int phase) {
    const qe_srnn_layer *L = sh->L;
    const size_t T = (size_t)L->T, B = (size_t)L->B, H = (size_t)L->H, GH = sh->GH;
    const size_t u0 = m->u0, u1 = m->u1;
    const int16_t *hp = sh->hb[s & 1] + b * H;
    int16_t *hn = sh->hb[(s + 1) & 1] + b * H;
    const size_t len = L->lens ? (size_t)L->lens[b] : T;
    if (s >= len) {                    /* the state is kept (y stays at z_h) */
        if (phase == 0) memcpy(hn + u0, hp + u0, (u1 - u0) * sizeof(int16_t));
        return;
    }
    const size_t t = L->reverse ? len - 1 - s : s;
    const float *g = sh->gx + (t * B + b) * GH;
    int64_t *acc = m->acc, *q = m->q + b * GH;
    int16_t *hc = m->hc;
    if (phase == 0)
        for (size_t k = 0; k < H; k++) hc[k] = (int16_t)(hp[k] - L->z_h);
    if (L->kind == QE_SRNN_LSTM) {
        int16_t *c = L->c + b * H;
        qe_srnn_gate_dots(sh, m, 0, 4, hc, acc);
        size_t v = u0;
#if QE_HAVE_X86_SIMD
        if (L->isa == QE_ISA_AVX2 || L->isa == QE_ISA_AVX512VNNI)
            v = qe_srnn_lstm_units__avx2(L, u0, u1, g, acc, c, hn);
#endif
        qe_srnn_lstm_units(L, v, u1, g, acc, c, hn);
    } else if (phase == 0) {
        /* z and r: q[u] = z, q[H + u] = r (Q0.15) */
        qe_srnn_gate_dots(sh, m, 0, L->linear_before_reset ? 3 : 2, hc, acc);
        for (size_t x = 0; x < 2; x++) {
            const size_t n0 = x * H + u0, n1 = x * H + u1;
            size_t n = n0;
#if QE_HAVE_X86_SIMD
            if (L->isa == QE_ISA_AVX2 || L->isa == QE_ISA_AVX512VNNI)
                n += qe_srnn_gate_lut__avx2(n1 - n0, g + n0, acc + n0, L->mh + n0,
                                            qe_rnn_sigmoid_lut, q + n0);
#endif
            for (; n < n1; n++)
                q[n] = qe_srnn_lut(qe_rnn_sigmoid_lut, qe_srnn_q12(g[n] + (float)acc[n] * L->mh[n]));
        }
        if (!L->linear_before_reset) {  /* the candidate's product, for every member's dots */
            int16_t *rh = sh->rh + b * sh->kph;
            for (size_t u = u0; u < u1; u++)
                rh[u] = (int16_t)qe_srnn_rsr(q[H + u] * (int64_t)hc[u], 15);
        }
    }
    if (L->kind == QE_SRNN_GRU && phase == (L->linear_before_reset ? 0 : 1)) {
        int64_t *pn = q + 2 * H;        /* the candidate's Q3.12 codes */
        if (L->linear_before_reset) {
            for (size_t u = u0; u < u1; u++) {
                const size_t n = 2 * H + u;
                const int64_t ph = qe_srnn_q12((float)acc[n] * L->mh[n] + L->bh[n]);
                const int64_t rh = qe_srnn_rsr(q[H + u] * ph, 15);
                pn[u] = qe_srnn_q12(g[n] + (float)rh);
            }
        } else {
            qe_srnn_gate_dots(sh, m, 2, 3, sh->rh + b * sh->kph, acc);
            for (size_t u = u0; u < u1; u++) {
                const size_t n = 2 * H + u;
                pn[u] = qe_srnn_q12(g[n] + (float)acc[n] * L->mh[n]);
            }
        }
        for (size_t u = u0; u < u1; u++) {
            const int64_t z = q[u], nn = qe_srnn_lut(qe_rnn_tanh_lut, pn[u]);
            const int64_t hcu = (int64_t)hp[u] - L->z_h;
            const int64_t h15 = L->scheme == QE_SRNN_INT16 ? hcu
                                                           : (int64_t)qe_srnn_rint((float)hcu * L->mq);
            hn[u] = qe_srnn_h_out(L, (32768 - z) * nn + z * h15);
        }
    }
    if (L->y && phase == (L->kind == QE_SRNN_GRU && !L->linear_before_reset ? 1 : 0))
        memcpy(L->y + (t * B + b) * H + u0, hn + u0, (u1 - u0) * sizeof(int16_t));
}

/* member t of a team of n (n = 1: no barriers) */
static void qe_srnn_member_run(const qe_srnn_shared *sh, char *mem, size_t rb, int t, int n) {
    const qe_srnn_layer *L = sh->L;
    qe_srnn_member m;
    qe_srnn_member_init(&m, mem, sh->nacc, (size_t)L->B, sh->GH, sh->kph, (size_t)L->H, t, n);
    qe_srnn_project(sh, rb, t, n, m.acc);
    const int P = L->kind == QE_SRNN_GRU && !L->linear_before_reset ? 2 : 1;
#ifdef _OPENMP
    if (n > 1) {
        #pragma omp barrier
    }
#endif
    for (size_t s = 0; s < (size_t)L->T; s++)
        for (int phase = 0; phase < P; phase++) {
            if (m.u0 < m.u1)
                for (size_t b = 0; b < (size_t)L->B; b++) qe_srnn_step(sh, &m, s, b, phase);
#ifdef _OPENMP
            if (n > 1) {
                #pragma omp barrier
            }
#endif
        }
}

static int qe_srnn_run(const qe_srnn_layer *L) {
    const int G = L->kind == QE_SRNN_LSTM ? 4 : 3;
    const size_t T = (size_t)L->T, B = (size_t)L->B, H = (size_t)L->H;
    const size_t GH = (size_t)G * H, kph = qe_srnn_pad(H);
    if (L->T < 0 || L->B < 0 || L->H < 1 || L->input_size < 1 || L->e_c < 0 || L->e_c > 15 ||
        (L->kind != QE_SRNN_LSTM && L->kind != QE_SRNN_GRU) ||
        (L->scheme != QE_SRNN_INT16 && L->scheme != QE_SRNN_INT8) ||
        L->kpx != qe_srnn_pad((size_t)L->input_size) || (L->scheme == QE_SRNN_INT16 && L->z_h) ||
        L->z_h < 0 || L->z_h > 255 || L->nthreads < 0)
        return QE_SRNN_EARG;
    if (T == 0 || B == 0) return QE_SRNN_OK;
    /* a team: as many as asked (0 = the process setting, when a step is worth it), at most one
     * per group of 8 units */
    int nt = qe_threads(L->nthreads);
    if (L->nthreads == 0 && (double)B * (double)GH * (double)H < (double)QE_SRNN_PAR_MIN_MACS) nt = 1;
    if ((size_t)nt > (H + 7) / 8) nt = (int)((H + 7) / 8);
#ifndef _OPENMP
    nt = 1;
#endif
    /* scratch: gx [T·B][GH] f32, h's second buffer [B][H], rh [B][kph], per member its own */
    const size_t ngx = (T * B * GH * sizeof(float) + 63) / 64 * 64;
    const size_t nh = (B * H * sizeof(int16_t) + 63) / 64 * 64;
    const size_t nrh = (B * kph * sizeof(int16_t) + 63) / 64 * 64;
    const size_t rb = L->kpx * 32 <= (32u << 10) ? 32 : ((32u << 10) / L->kpx + 7) / 8 * 8;
    const size_t npa = 4 * 16 * qe_srnn_panel_block(L->kpx);   /* 4 steps × a panel block */
    size_t nacc = GH > rb ? GH : rb;                              /* max(GH, rb, npa) */
    nacc = nacc > npa ? nacc : npa;
    const size_t nm = qe_srnn_member_bytes(nacc, B, GH, kph);
    char *ws = (char *)qe_workspace(QE_WS_CALL, ngx + nh + nrh + (size_t)nt * nm);
    if (!ws) return QE_SRNN_ENOMEM;
    qe_srnn_shared sh;
    sh.L = L; sh.dot = qe_s16s8_dot_for_isa(L->isa);
    sh.GH = GH; sh.kph = kph; sh.nacc = nacc;
    sh.gx = (float *)(void *)ws;
    sh.hb[0] = L->h;
    sh.hb[1] = (int16_t *)(void *)(ws + ngx);
    sh.rh = (int16_t *)(void *)(ws + ngx + nh);
    memset(sh.rh, 0, B * kph * sizeof(int16_t));
    char *mem = ws + ngx + nh + nrh;
    if (nt <= 1) {
        qe_srnn_member_run(&sh, mem, rb, 0, 1);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            qe_threads_note_team();
            const int t = omp_get_thread_num(), n = omp_get_num_threads();
            qe_srnn_member_run(&sh, mem + (size_t)t * nm, rb, t, n);
        }
#endif
    }
    if (T & 1) memcpy(L->h, sh.hb[1], B * H * sizeof(int16_t));
    return QE_SRNN_OK;
}

/* numerics.md "Quantize" into int16 codes: v = x / s (float32), NaN → 0, clamp to
 * [lo − z, hi − z] in float, rhe, + z; `sub` is subtracted after (centered codes) */
static void qe_srnn_quantize(size_t n, const float *x, float s, int32_t z, int32_t lo, int32_t hi,
                             int32_t sub, int16_t *q) {
    const float vlo = (float)(lo - z), vhi = (float)(hi - z);
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v != v ? 0.0f : v;
        v = v < vlo ? vlo : v;
        v = v > vhi ? vhi : v;
        q[i] = (int16_t)(qe_srnn_rint(v) + z - sub);
    }
}

/* One direction, float in and out (the op's boundary; numerics.md "Integer LSTM and GRU"):
 * xf [T][B][input_size] quantized with (s_x, z_x) onto [lo, hi]; h0f / c0f [B][H] or NULL (z_h / 0);
 * outputs s·(code − z): yf[t·y_t + b·H + u] (0.0 at the steps past a row's length), hf, cf
 * [B][H] (cf: LSTM). L's x, h, c, y are set here (scratch from malloc). */
typedef struct qe_srnn_io {
    const float *xf, *h0f, *c0f;
    float s_x, s_h, s_c;
    int32_t z_x, lo, hi;
    float *yf, *hf, *cf;
    size_t y_t;
} qe_srnn_io;

static int qe_srnn_forward(qe_srnn_layer *L, const qe_srnn_io *io) {
    const size_t T = (size_t)L->T, B = (size_t)L->B, H = (size_t)L->H, K = (size_t)L->input_size;
    if (L->T < 0 || L->B < 0 || L->H < 1 || L->input_size < 1 || L->kpx != qe_srnn_pad(K))
        return QE_SRNN_EARG;
    int16_t *buf = (int16_t *)malloc((T * B * L->kpx + 2 * B * H + T * B * H + 1) * sizeof(int16_t));
    if (!buf) return QE_SRNN_ENOMEM;
    int16_t *x = buf, *h = x + T * B * L->kpx, *c = h + B * H, *y = c + B * H;
    for (size_t tb = 0; tb < T * B; tb++) {
        int16_t *row = x + tb * L->kpx;
        qe_srnn_quantize(K, io->xf + tb * K, io->s_x, io->z_x, io->lo, io->hi, io->z_x, row);
        memset(row + K, 0, (L->kpx - K) * sizeof(int16_t));
    }
    if (io->h0f) qe_srnn_quantize(B * H, io->h0f, io->s_h, L->z_h, io->lo, io->hi, 0, h);
    else for (size_t i = 0; i < B * H; i++) h[i] = (int16_t)L->z_h;
    if (io->c0f) qe_srnn_quantize(B * H, io->c0f, io->s_c, 0, -32768, 32767, 0, c);
    else memset(c, 0, B * H * sizeof(int16_t));
    for (size_t i = 0; i < T * B * H; i++) y[i] = (int16_t)L->z_h;   /* skipped steps: 0.0 */
    L->x = x; L->h = h; L->c = L->kind == QE_SRNN_LSTM ? c : NULL; L->y = y;
    const int rc = qe_srnn_run(L);
    if (rc == QE_SRNN_OK) {
        for (size_t t = 0; t < T; t++)
            for (size_t i = 0; i < B * H; i++)
                io->yf[t * io->y_t + i] = io->s_h * (float)(y[t * B * H + i] - L->z_h);
        for (size_t i = 0; i < B * H; i++) io->hf[i] = io->s_h * (float)(h[i] - L->z_h);
        if (io->cf) for (size_t i = 0; i < B * H; i++) io->cf[i] = io->s_c * (float)c[i];
    }
    free(buf);
    return rc;
}

#endif
