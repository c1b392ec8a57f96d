/* Scaled dot-product attention's core in float32: per batch b,
 *     y[b] = softmax_rows((q[b] · cq) (k[b] · ck)) · v[b]
 * with q [sq, d], k [d, sk] (K already transposed, as torch exports it), v [sk, e] read through
 * any element strides (the views a transformer's Reshape / Transpose chain leaves), y written
 * contiguous [batch, sq, e].
 *
 * Why compiled: a small transformer's attention is a few 32×16 matrices per head, where NumPy's
 * stacked matmuls, the two scalings and the softmax are five calls of a few µs each around a
 * fraction of a µs of arithmetic (17 µs per layer of a d=64, 4-head, 32-token encoder).
 *
 * Same bits on every CPU: every sum runs over its reduction index in order (d for the scores,
 * sk for the output), one output element per vector lane, each step one correctly rounded fused
 * multiply-add (fmaf in the scalar path, the FMA instructions in the SIMD ones: the same result
 * by definition); the softmax performs qe_f32_rows.h's ISA-independent operations. Results agree
 * with NumPy's matmul to float rounding, not bit for bit (BLAS sums in its own order).
 *
 * K and V are first copied into zero-padded contiguous panels, which pays once a block of
 * QE_ATTN_ROWS query rows reuses them; a decoder step (one query row) is better served by BLAS
 * reading the views directly, and the op (qengine/ops/linear.py AttentionCore) keeps NumPy there.
 */
#ifndef QE_F32_ATTENTION_H
#define QE_F32_ATTENTION_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../qe_target.h"
#include "qe_f32_rows.h"

typedef struct {
    size_t batch, sq, sk, d, e;
    const float *q, *k, *v;
    ptrdiff_t qb, qr, qc;   /* element strides of q: batch, row (query), column (d) */
    ptrdiff_t kb, kr, kc;   /* of k [d, sk]: batch, row (d), column (key) */
    ptrdiff_t vb, vr, vc;   /* of v [sk, e]: batch, row (key), column (e) */
    float cq, ck;           /* the scalars q and k are multiplied by (1 when absent) */
    float* y;               /* [batch, sq, e], contiguous */
} qe_f32_attention_args;

/* Register blocks: QE_ATTN_ROWS query rows × QE_ATTN_W columns of scores (or of outputs) stay in
 * vector registers over the whole reduction: 8 independent sums per column vector hide the
 * latency of the adds. kt and vt are padded with zero columns to a
 * multiple of QE_ATTN_W so that no block has a tail. */
enum { QE_ATTN_ROWS = 8, QE_ATTN_W = 16 };

static inline size_t qe_attn_pad(size_t n) { return (n + QE_ATTN_W - 1) / QE_ATTN_W * QE_ATTN_W; }

/* c[r, j] = Σ_t a[t, r] · b[t, j] for r < 8, j < 16, t = 0 .. kn-1 in order, one fused
 * multiply-add per t (correctly rounded, so fmaf here and the SIMD twins' FMA instructions give
 * the same bits). a is [kn, 8], b rows ldb apart, c rows ldc apart. */
static void qe_attn_block__scalar(size_t kn, const float* a, const float* b, size_t ldb,
                                  float* c, size_t ldc) {
    for (size_t r = 0; r < QE_ATTN_ROWS; r++)
        for (size_t j = 0; j < QE_ATTN_W; j++) c[r * ldc + j] = a[r] * b[j];
    for (size_t t = 1; t < kn; t++)
        for (size_t r = 0; r < QE_ATTN_ROWS; r++)
            for (size_t j = 0; j < QE_ATTN_W; j++)
                c[r * ldc + j] = fmaf(a[t * QE_ATTN_ROWS + r], b[t * ldb + j], c[r * ldc + j]);
}

#ifdef QE_HAVE_X86_SIMD
QE_TARGET_AVX2 static void qe_attn_block__avx2(size_t kn, const float* a, const float* b,
                                               size_t ldb, float* c, size_t ldc) {
    for (int h = 0; h < QE_ATTN_W; h += 8) {           /* 8 rows × 8 columns, twice */
        __m256 acc[QE_ATTN_ROWS];
        __m256 bt = _mm256_loadu_ps(b + h);
        for (int r = 0; r < QE_ATTN_ROWS; r++) acc[r] = _mm256_mul_ps(_mm256_broadcast_ss(a + r), bt);
        for (size_t t = 1; t < kn; t++) {
            bt = _mm256_loadu_ps(b + t * ldb + h);
            for (int r = 0; r < QE_ATTN_ROWS; r++)
                acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + t * QE_ATTN_ROWS + r), bt, acc[r]);
        }
        for (int r = 0; r < QE_ATTN_ROWS; r++) _mm256_storeu_ps(c + r * ldc + h, acc[r]);
    }
}

QE_TARGET_AVX512VNNI static void qe_attn_block__avx512(size_t kn, const float* a, const float* b,
                                                       size_t ldb, float* c, size_t ldc) {
    __m512 acc[QE_ATTN_ROWS];
    __m512 bt = _mm512_loadu_ps(b);
    for (int r = 0; r < QE_ATTN_ROWS; r++) acc[r] = _mm512_mul_ps(_mm512_set1_ps(a[r]), bt);
    for (size_t t = 1; t < kn; t++) {
        bt = _mm512_loadu_ps(b + t * ldb);
        for (int r = 0; r < QE_ATTN_ROWS; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[t * QE_ATTN_ROWS + r]), bt, acc[r]);
    }
    for (int r = 0; r < QE_ATTN_ROWS; r++) _mm512_storeu_ps(c + r * ldc, acc[r]);
}
#endif

typedef void (*qe_attn_block_fn)(size_t, const float*, const float*, size_t, float*, size_t);

static qe_attn_block_fn qe_attn_block_for_isa(int isa) {
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return qe_attn_block__avx512;
    if (isa == QE_ISA_AVX2) return qe_attn_block__avx2;
#endif
    (void)isa;
    return qe_attn_block__scalar;
}

/* pt [sk, 8] = the softmax of each row of s [8, skp] (rows of sk values), transposed, with the
 * float operations of qe_f32_softmax_rows: the row's maximum m, exp(x − m) (here x − m is taken
 * first, in place, and exp_shift then subtracts an exact 0), its double sum, the product by
 * (float)(1 / sum). One exp_shift call covers the eight rows, whose padding is set to −inf
 * (exactly 0 after exp) so that the vector lanes are full. A row with a NaN or ±inf maximum is
 * NaN, as NumPy's. */
QE_INLINE void qe_attn_softmax_t(const qe_f32_rows_ops* f, size_t sk, size_t skp, float* s,
                              float* pt) {
    float inv[QE_ATTN_ROWS];
    int bad[QE_ATTN_ROWS];
    for (size_t r = 0; r < QE_ATTN_ROWS; r++) {
        float* x = s + r * skp;
        const float m = f->max(sk, x);
        bad[r] = !isfinite(m);
        for (size_t j = 0; j < sk; j++) x[j] = x[j] - m;
        for (size_t j = sk; j < skp; j++) x[j] = -INFINITY;
    }
    f->exp_shift(QE_ATTN_ROWS * skp, s, 0.0f, s);
    double sum[QE_ATTN_ROWS];       /* the sums first: the divisions then overlap */
    for (size_t r = 0; r < QE_ATTN_ROWS; r++) sum[r] = f->sum(sk, s + r * skp);
    for (size_t r = 0; r < QE_ATTN_ROWS; r++) inv[r] = (float)(1.0 / sum[r]);
    for (size_t j = 0; j < sk; j++)
        for (size_t r = 0; r < QE_ATTN_ROWS; r++)
            pt[j * QE_ATTN_ROWS + r] = bad[r] ? NAN : s[r * skp + j] * inv[r];
}

/* One batch. Scratch: kt [d, skp] and vt [sk, ep], zero-padded copies (k scaled); qs [d, 8] the
 * block's scaled query rows, s [8, skp] its scores then probabilities, pt [sk, 8] those
 * transposed, c [8, 16] one block's result. Rows of a block past the last query repeat it, so
 * that blocks have no row tail either. */
QE_INLINE void qe_f32_attention_batch(const qe_f32_attention_args* a, size_t b, int isa,
                                      float* scratch) {
    const size_t sq = a->sq, sk = a->sk, d = a->d, e = a->e;
    const size_t skp = qe_attn_pad(sk), ep = qe_attn_pad(e);
    const ptrdiff_t qr = a->qr, qc = a->qc, kr = a->kr, kc = a->kc, vr = a->vr, vc = a->vc;
    const float cq = a->cq, ck = a->ck;
    const float* q = a->q + (ptrdiff_t)b * a->qb;
    const float* k = a->k + (ptrdiff_t)b * a->kb;
    const float* v = a->v + (ptrdiff_t)b * a->vb;
    float* y = a->y + b * sq * e;
    float *kt = scratch, *vt = kt + d * skp, *qs = vt + sk * ep, *s = qs + d * QE_ATTN_ROWS;
    float *pt = s + QE_ATTN_ROWS * skp, *c = pt + sk * QE_ATTN_ROWS;
    const qe_attn_block_fn block = qe_attn_block_for_isa(isa);
    const qe_f32_rows_ops f = qe_f32_rows_for_isa(isa);
    for (size_t t = 0; t < d; t++)
        for (size_t j = 0; j < skp; j++)
            kt[t * skp + j] = j < sk ? k[(ptrdiff_t)t * kr + (ptrdiff_t)j * kc] * ck : 0.0f;
    for (size_t j = 0; j < sk; j++)
        for (size_t x = 0; x < ep; x++)
            vt[j * ep + x] = x < e ? v[(ptrdiff_t)j * vr + (ptrdiff_t)x * vc] : 0.0f;
    for (size_t i0 = 0; i0 < sq; i0 += QE_ATTN_ROWS) {
        const size_t nr = sq - i0 < QE_ATTN_ROWS ? sq - i0 : QE_ATTN_ROWS;
        for (size_t t = 0; t < d; t++)
            for (size_t r = 0; r < QE_ATTN_ROWS; r++)
                qs[t * QE_ATTN_ROWS + r] =
                    q[(ptrdiff_t)(i0 + (r < nr ? r : nr - 1)) * qr + (ptrdiff_t)t * qc] * cq;
        for (size_t j0 = 0; j0 < skp; j0 += QE_ATTN_W) block(d, qs, kt + j0, skp, s + j0, skp);
        qe_attn_softmax_t(&f, sk, skp, s, pt);
        for (size_t x0 = 0; x0 < ep; x0 += QE_ATTN_W) {
            if (nr == QE_ATTN_ROWS && x0 + QE_ATTN_W <= e) {      /* a whole block: in place */
                block(sk, pt, vt + x0, ep, y + i0 * e + x0, e);
                continue;
            }
            block(sk, pt, vt + x0, ep, c, QE_ATTN_W);
            const size_t w = e - x0 < QE_ATTN_W ? e - x0 : QE_ATTN_W;
            for (size_t r = 0; r < nr; r++)
                memcpy(y + (i0 + r) * e + x0, c + r * QE_ATTN_W, sizeof(float) * w);
        }
    }
    /* NaNs made by inf · 0 or inf − inf carry a sign bit that depends on the CPU: one NaN */
    for (size_t i = 0; i < sq * e; i++) y[i] = y[i] != y[i] ? NAN : y[i];
}

/* The batch loop compiled once per ISA, so that the copies, the transposes and the softmax's
 * element-wise steps around the blocks are vectorized for it too. */
static void qe_f32_attention__scalar(const qe_f32_attention_args* a, float* scratch) {
    for (size_t b = 0; b < a->batch; b++) qe_f32_attention_batch(a, b, QE_ISA_SCALAR, scratch);
}

#ifdef QE_HAVE_X86_SIMD
QE_TARGET_AVX2 static void qe_f32_attention__avx2(const qe_f32_attention_args* a,
                                                  float* scratch) {
    for (size_t b = 0; b < a->batch; b++) qe_f32_attention_batch(a, b, QE_ISA_AVX2, scratch);
}

QE_TARGET_AVX512VNNI static void qe_f32_attention__avx512(const qe_f32_attention_args* a,
                                                          float* scratch) {
    for (size_t b = 0; b < a->batch; b++)
        qe_f32_attention_batch(a, b, QE_ISA_AVX512VNNI, scratch);
}
#endif

/* 0, or -1 when the scratch cannot be allocated. Sizes must be non-zero (the caller checks). */
static int qe_f32_attention(int isa, const qe_f32_attention_args* a) {
    const size_t skp = qe_attn_pad(a->sk), ep = qe_attn_pad(a->e);
    float* scratch = (float*)malloc(sizeof(float) * (a->d * skp + a->sk * ep +
                                                     a->d * QE_ATTN_ROWS + QE_ATTN_ROWS * skp +
                                                     a->sk * QE_ATTN_ROWS +
                                                     QE_ATTN_ROWS * QE_ATTN_W));
    if (!scratch) return -1;
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI)
        qe_f32_attention__avx512(a, scratch);
    else if (isa == QE_ISA_AVX2)
        qe_f32_attention__avx2(a, scratch);
    else
#endif
        qe_f32_attention__scalar(a, scratch);
    (void)isa;
    free(scratch);
    return 0;
}

#endif
