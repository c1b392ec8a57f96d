/* Dynamic-int8 1×1 convolution (stride 1, no padding, one group) in NCHW, without a transpose:
 * per image, Y[Cout, P] = W[Cout, Cin] · X[Cin, P] — the weights are the GEMM's rows and the
 * pixels its columns, so each output row is an NCHW channel plane and the dequantizing epilogue
 * stores contiguous pixels (qe_gemm_epilogue_f32_rows__*.h). The microkernels are the GEMM
 * records' own (qe_gemm.h), which multiply u8 rows by s8 columns; with the roles swapped the
 * operands are made to fit exactly:
 *
 *   rows    a = w + 128 ∈ [0, 255] (u8), packed once as the record's A panels
 *   columns b = q − 128 ∈ [−128, 127] (s8: the byte q ^ 0x80), packed per call as W panels
 *           straight from the quantized NCHW rows: a K-group of KR channels is KR rows of
 *           pixels interleaved (SSE2 unpacks for the 4-byte groups of VNNI / scalar / NEON)
 *   Σ_k (w + 128)(q − 128) = Σ w·q − 128·Σw + 128·Σq − 16384·K, hence
 *   Σ_k w·(q − z) = acc + (128 − z)·Σ_k w  −  128·Σ_k (q − 128)
 *                       └─ rowterm[co] ─┘     └── colterm[px] ──┘
 * in wrapping int32 arithmetic, which is exact whenever the true value fits (every partial
 * |acc| ≤ 255·128·K < 2^31 for K ≤ 65793, the GEMM's bound). Then y = float32(·)·c[co] + b[co]
 * with c = float32(s_a·s_w[co]): docs/numerics.md epilogue (a), bit for bit.
 *
 * The input is quantized per tensor over all images (qe_dynq_tensor_qparams), then image by
 * image into contiguous u8 rows (the ISA's row quantizer), packed, multiplied. Threads: OpenMP
 * over row chunks (quantize), pixel panels (pack) and (pixel panel × row block) tiles (GEMM).
 */
#ifndef QE_CONV1X1_DYNAMIC_H
#define QE_CONV1X1_DYNAMIC_H

#include "../qe_threads.h"
#include "../gemm/qe_gemm.h"
#include "../gemm/qe_gemm_dynamic.h"
#include "../gemm/qe_gemm_epilogue_f32_rows__scalar.h"
#include "../gemm/qe_gemm_epilogue_f32_rows__avx2.h"
#include "../gemm/qe_gemm_epilogue_f32_rows__avx512.h"
#include "qe_conv_dynamic.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_CONV1X1_ROW_PANELS 8     /* A panels per GEMM tile when rows must be split */

/* The weights as prepared once (qe_conv1x1_dyn_pack) for one ISA's GEMM record. */
typedef struct qe_conv1x1_dyn_w {
    const void *apack;        /* (w + 128) as u8, the record's packed A panels [Cout, Cin] */
    const int32_t *wsum;      /* [Cout] Σ_k w */
    const float *w_scale;     /* [Cout] */
    const float *bias;        /* [Cout] or NULL */
    size_t cout, cin;
    int32_t isa;
} qe_conv1x1_dyn_w;

static size_t qe_conv1x1_dyn_apack_bytes(int isa, size_t cout, size_t cin) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    return r ? qe_gemm_packed_a_bytes(r, cout, cin) : 0;
}

/* w int8 [cout, cin] -> apack (qe_conv1x1_dyn_apack_bytes), wsum [cout]. 0, -1 or -3. */
static int qe_conv1x1_dyn_pack(int isa, size_t cout, size_t cin, const int8_t *w, void *apack,
                               int32_t *wsum) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r) return QE_GEMM_EISA;
    if (cin < 1 || cin > QE_GEMM_MAX_K) return QE_GEMM_EK;
    uint8_t *a = (uint8_t *)malloc(cout > 0 ? cout * cin : 1);
    if (!a) return QE_GEMM_ENOMEM;
    for (size_t i = 0; i < cout; i++) {
        int32_t s = 0;
        for (size_t k = 0; k < cin; k++) {
            a[i * cin + k] = (uint8_t)(w[i * cin + k] + 128);
            s += w[i * cin + k];
        }
        wsum[i] = s;
    }
    qe_gemm_pack_a(r, cout, cin, a, cin, 0, qe_gemm_round_up(cout, r->mr) / r->mr, apack, NULL);
    free(a);
    return QE_GEMM_OK;
}

/* Column panel pn (pixels pn·NR ..) of the record's W layout from the u8 rows q[k][p]: value
 * (int8)(q ^ 0x80), zero past the last pixel and in the K padding; colterm for its pixels. */
static void qe_conv1x1_pack_b(const qe_gemm_kernel_rec *r, size_t k, size_t p, const uint8_t *q,
                              size_t pn, void *out, int32_t *colterm) {
    const size_t nr = (size_t)r->nr, kr = (size_t)r->kr, kp = qe_gemm_round_up(k, r->kpad);
    const size_t kg = kp / kr, j0 = pn * nr, nj = p - j0 < nr ? p - j0 : nr;
    const size_t panel = kg * nr * kr * (size_t)r->elem;
    uint8_t *dst = (uint8_t *)out + pn * panel;
    int32_t sum[QE_GEMM_NR_MAX] = {0};
    for (size_t kk = 0; kk < k; kk++)
        for (size_t j = 0; j < nj; j++) sum[j] += q[kk * p + j0 + j];
    for (size_t j = 0; j < nj; j++)     /* −128·Σ_k (q − 128), wrapping */
        colterm[j0 + j] = (int32_t)(0u - 128u * (uint32_t)(sum[j] - (int32_t)(128 * k)));
    size_t g = 0;
#if defined(__SSE2__)
    if (r->elem == 1 && kr == 4 && nj == nr && nr % 16 == 0) {
        /* channel kk's 16 pixels as s8; zeros in the K padding */
#define QE_B_ROW(kk) ((kk) < k ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)(q + (kk) * p + j0 + j)), flip) \
                               : _mm_setzero_si128())
        const __m128i flip = _mm_set1_epi8((char)0x80);
        for (; g * 4 < k; g++) {
            uint8_t *d = dst + g * nr * 4;
            const size_t k0 = g * 4;
            for (size_t j = 0; j < nr; j += 16, d += 64) {
                const __m128i r0 = QE_B_ROW(k0), r1 = QE_B_ROW(k0 + 1);
                const __m128i r2 = QE_B_ROW(k0 + 2), r3 = QE_B_ROW(k0 + 3);
                const __m128i t0 = _mm_unpacklo_epi8(r0, r1), t1 = _mm_unpackhi_epi8(r0, r1);
                const __m128i t2 = _mm_unpacklo_epi8(r2, r3), t3 = _mm_unpackhi_epi8(r2, r3);
                _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(t0, t2));
                _mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(t0, t2));
                _mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(t1, t3));
                _mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(t1, t3));
            }
        }
        memset(dst + g * nr * 4, 0, (kg - g) * nr * 4);     /* whole K-groups of padding */
        return;
#undef QE_B_ROW
    }
#endif
    for (; g < kg; g++)
        for (size_t j = 0; j < nr; j++)
            for (size_t t = 0; t < kr; t++) {
                const size_t kk = g * kr + t, idx = (g * nr + j) * kr + t;
                const int8_t v = kk < k && j < nj ? (int8_t)(q[kk * p + j0 + j] ^ 0x80) : 0;
                if (r->elem == 1) ((int8_t *)dst)[idx] = v; else ((int16_t *)dst)[idx] = v;
            }
}

static qe_rows_epilogue_fn qe_rows_epilogue_for_isa(int isa) {
#if QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return qe_gemm_epilogue_f32_rows__avx512;
    if (isa == QE_ISA_AVX2) return qe_gemm_epilogue_f32_rows__avx2;
#endif
    (void)isa;
    return qe_gemm_epilogue_f32_rows__scalar;
}

typedef struct qe_conv1x1_ctx {
    const qe_gemm_kernel_rec *r;
    qe_rows_epilogue_fn epi;
    const qe_conv1x1_dyn_w *w;
    qe_rows_epilogue e;
    const uint8_t *q;
    uint8_t *bpack;
    size_t p, kg, apanel, bpanel, npanels, mpanels, mcp, nmb;
} qe_conv1x1_ctx;

/* tile t = (pixel panel, block of mcp row panels) of one image's output y [Cout, P] */
static void qe_conv1x1_tile(const qe_conv1x1_ctx *c, size_t t, float *y) {
    int32_t ct[QE_GEMM_MR_MAX * QE_GEMM_NR_MAX] __attribute__((aligned(64)));
    const qe_gemm_kernel_rec *r = c->r;
    const size_t pn = t / c->nmb, mb = t % c->nmb;
    const size_t n0 = pn * (size_t)r->nr, nr = c->p - n0 < (size_t)r->nr ? c->p - n0 : (size_t)r->nr;
    const size_t pm1 = (mb + 1) * c->mcp < c->mpanels ? (mb + 1) * c->mcp : c->mpanels;
    const uint8_t *bp = c->bpack + pn * c->bpanel;
    for (size_t pm = mb * c->mcp; pm < pm1; pm++) {
        const size_t m0 = pm * (size_t)r->mr;
        const size_t mr = c->w->cout - m0 < (size_t)r->mr ? c->w->cout - m0 : (size_t)r->mr;
        r->ukernel(mr, c->kg, (const uint8_t *)c->w->apack + pm * c->apanel, bp, ct, 0);
        c->epi(ct, (size_t)r->nr, mr, nr, m0, n0, &c->e, y, c->p);
    }
}

/* One image's quantize (rows [0, cin·p) of x_b into q), pack and GEMM: called by every thread
 * of a parallel region, or alone (an orphaned `omp for` then runs on the calling thread). */
static void qe_conv1x1_image(const qe_conv1x1_ctx *c, qe_dynq_row_fn row, float s, int32_t z,
                             const float *xb, uint8_t *q, int32_t *colterm, float *yb) {
    const size_t total = c->w->cin * c->p, chunk = 16384;
    const size_t nchunk = (total + chunk - 1) / chunk, ntiles = c->npanels * c->nmb;
    #pragma omp for schedule(static)
    for (size_t i = 0; i < nchunk; i++) {
        const size_t a = i * chunk, len = total - a < chunk ? total - a : chunk;
        row(len, xb + a, s, z, q + a);
    }
    #pragma omp for schedule(static)
    for (size_t pn = 0; pn < c->npanels; pn++)
        qe_conv1x1_pack_b(c->r, c->w->cin, c->p, q, pn, c->bpack, colterm);
    #pragma omp for schedule(dynamic, 1)
    for (size_t t = 0; t < ntiles; t++) qe_conv1x1_tile(c, t, yb);
}

/* x float32 NCHW [n, cin, p] (p = H·W), y float32 NCHW [n, cout, p]:
 *   y = float32(Σ_k (q − z)·w)·float32(s·w_scale[co]) (+ bias[co]), clamped to [lo, hi],
 * with (s, z) the per-tensor dynamic qparams of all of x. Returns 0 or a QE_GEMM_E* code. */
static int qe_conv1x1_dynamic(int isa, const qe_conv1x1_dyn_w *w, size_t n, size_t p,
                              const float *x, float lo, float hi, float *y, int nthreads) {
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
    if (!r || w->isa != isa) return QE_GEMM_EISA;
    if (w->cin < 1 || w->cin > QE_GEMM_MAX_K) return QE_GEMM_EK;
    if (n == 0 || p == 0 || w->cout == 0) return QE_GEMM_OK;
    qe_conv1x1_ctx c;
    c.r = r;
    c.epi = qe_rows_epilogue_for_isa(isa);
    c.w = w;
    c.p = p;
    const size_t kp = qe_gemm_round_up(w->cin, r->kpad);
    c.kg = kp / (size_t)r->kr;
    c.apanel = (size_t)r->mr * kp * (size_t)r->elem;
    c.bpanel = (size_t)r->nr * kp * (size_t)r->elem;
    c.npanels = qe_gemm_round_up(p, r->nr) / (size_t)r->nr;
    c.mpanels = qe_gemm_round_up(w->cout, r->mr) / (size_t)r->mr;

    int nt = qe_threads(nthreads);
    if ((double)p * (double)w->cout * (double)w->cin < (double)QE_GEMM_PAR_MIN_MACS) nt = 1;
    /* rows split into blocks only when the pixel panels alone cannot feed the threads */
    c.mcp = c.mpanels;
    while (nt > 1 && c.mcp > 1 && c.npanels * ((c.mpanels + c.mcp - 1) / c.mcp) < (size_t)(4 * nt))
        c.mcp = (c.mcp + 1) / 2;
    c.nmb = (c.mpanels + c.mcp - 1) / c.mcp;

    /* the calling thread's workspace: u8 rows, packed columns, colterm, rowterm, c */
    const size_t qbytes = qe_gemm_round_up(w->cin * p, 64);
    const size_t bbytes = qe_gemm_round_up(c.npanels * c.bpanel, 64);
    const size_t cols = c.npanels * (size_t)r->nr;
    uint8_t *ws = (uint8_t *)qe_workspace(QE_WS_CALL, qbytes + bbytes + 4 * (cols + 2 * w->cout) + 64);
    if (!ws) return QE_GEMM_ENOMEM;
    uint8_t *q = ws;
    c.bpack = ws + qbytes;
    int32_t *colterm = (int32_t *)(ws + qbytes + bbytes);
    int32_t *rowterm = colterm + cols;
    float *cm = (float *)(rowterm + w->cout);

    qe_dynq_range_fn range;
    qe_dynq_row_fn row;
    qe_dynq_fns(isa, &range, &row);
    float s;
    int32_t z;
    qe_dynq_tensor_qparams(isa, n * w->cin * p, x, nthreads, &s, &z);
    for (size_t i = 0; i < w->cout; i++) {
        rowterm[i] = (int32_t)((uint32_t)(128 - z) * (uint32_t)w->wsum[i]);
        cm[i] = s * w->w_scale[i];
    }
    c.e.rowterm = rowterm;
    c.e.colterm = colterm;
    c.e.c = cm;
    c.e.bias = w->bias;
    c.e.lo = lo;
    c.e.hi = hi;
    for (size_t b = 0; b < n; b++) {
        const float *xb = x + b * w->cin * p;
        float *yb = y + b * w->cout * p;
        if (nt <= 1) {
            qe_conv1x1_image(&c, row, s, z, xb, q, colterm, yb);
        } else {
#ifdef _OPENMP
            #pragma omp parallel num_threads(nt)
            {
                qe_threads_note_team();
                qe_conv1x1_image(&c, row, s, z, xb, q, colterm, yb);
            }
#endif
        }
    }
    return QE_GEMM_OK;
}

#endif
