/* The 4-bit-weight dynamic GEMM: f32 out[m, n] (+)= Σ_g dequant(Σ_{k∈g} (a − z_a)·w) + bias,
 * u8 activations (quantized per call) against int4 weights with per-group scales. Definition:
 * docs/numerics.md "4-bit weights", epilogue (c); layout: qe_gemm_w4_params.h.
 *
 * Entry points (0 or a negative QE_GEMM_E* code, never an abort):
 *   qe_gemm_w4_kernel_for_isa(isa)                         -> record or NULL
 *   qe_gemm_w4_layout(k, group, &gs, &ng)                  group 0 = one group per row
 *   qe_gemm_w4_packed_bytes(n, kp)
 *   qe_gemm_w4_pack(n, k, w, ldw, scale, gs, data, colsum, pscale)   once per weight matrix
 *   qe_gemm_w4_row_terms(m, a, lda, w, rterm)             per call: rterm [m][ng]
 *   qe_gemm_w4_dequant(isa, m, a, lda, rterm, a_scale, a_zp, row_step, w, bias, out, ldc,
 *                      accumulate, nthreads)                     a: u8 [m, lda ≥ KP]
 * The packed layout is the same for every ISA: a weight packed once runs on any kernel.
 */
#ifndef QE_GEMM_W4_H
#define QE_GEMM_W4_H

#include "../qe_threads.h"
#include "../qe_cpu.h"
#include "../qe_target.h"
#include "qe_gemm.h"
#include "qe_gemm_w4_params.h"
#include "qe_u8_s4_gemm_dequant_ukernel_4x16c8__scalar.h"
#include "qe_u8_s4_gemm_dequant_ukernel_4x16c8__avx2.h"
#include "qe_u8_s4_gemm_dequant_ukernel_4x16c8__avx512vnni.h"
#include "qe_u8_s4_gemm_dequant_ukernel_4x16c8__neondot.h"

static const qe_w4_kernel_rec qe_gemm_w4_kernels[] = {
#define QE_GEMM_W4_KERNEL(isa, uk) {#uk, isa, uk},
#include "qe_gemm_w4_kernels.inc"
#undef QE_GEMM_W4_KERNEL
};
#define QE_GEMM_W4_NKERNELS ((int)(sizeof(qe_gemm_w4_kernels) / sizeof(qe_gemm_w4_kernels[0])))

static const qe_w4_kernel_rec *qe_gemm_w4_kernel_for_isa(int isa) {
    for (int i = 0; i < QE_GEMM_W4_NKERNELS; i++)
        if (qe_gemm_w4_kernels[i].isa == isa) return &qe_gemm_w4_kernels[i];
    return NULL;
}

/* Group size and count for K: group 0 = one group of K rounded up to 16 (per-row scales),
 * else group ∈ {32, 64, 128} and the last group is zero-padded when group ∤ K. */
static int qe_gemm_w4_layout(size_t k, size_t group, size_t *gs, size_t *ng) {
    if (k < 1 || k > QE_W4_MAX_K) return QE_GEMM_EK;
    if (group == 0) {
        *gs = (k + 15) / 16 * 16;
        *ng = 1;
        return QE_GEMM_OK;
    }
    if (group != 32 && group != 64 && group != 128) return QE_GEMM_EARG;
    *gs = group;
    *ng = (k + group - 1) / group;
    return QE_GEMM_OK;
}

static inline size_t qe_gemm_w4_packed_bytes(size_t n, size_t kp) {
    return (n + QE_W4_NR - 1) / QE_W4_NR * QE_W4_NR * kp / 2;
}

/* w: int8 [n, k] (row stride ldw) with every value in [−7, 7]; scale: float32 [n][ng].
 * data: packed_bytes(n, gs·ng); colsum, pscale: [NP][ng][16]. EARG if a value is outside
 * [−7, 7] (−8 is a valid int4 but not a narrow-range weight, and a kernel must never meet it). */
static int qe_gemm_w4_pack(size_t n, size_t k, const int8_t *w, size_t ldw, const float *scale,
                           size_t gs, uint8_t *data, int32_t *colsum, float *pscale) {
    if (k < 1 || k > QE_W4_MAX_K || gs % 16 || gs < 16 || ldw < k) return QE_GEMM_EARG;
    const size_t ng = (k + gs - 1) / gs, kp = ng * gs, np = (n + QE_W4_NR - 1) / QE_W4_NR;
    for (size_t r = 0; r < n; r++)
        for (size_t kk = 0; kk < k; kk++)
            if (w[r * ldw + kk] < -7 || w[r * ldw + kk] > 7) return QE_GEMM_EARG;
    for (size_t p = 0; p < np; p++) {
        uint8_t *panel = data + p * (kp / 2) * QE_W4_NR;
        for (size_t j = 0; j < QE_W4_NR; j++) {
            const size_t r = p * QE_W4_NR + j;
            for (size_t kk = 0; kk < kp; kk++) {
                const int v = r < n && kk < k ? w[r * ldw + kk] : 0;
                uint8_t *b = panel + (kk / 8) * 64 + 4 * j + kk % 4;
                if (kk % 8 < 4) *b = (uint8_t)((*b & 0xf0) | (v + 8));
                else *b = (uint8_t)((*b & 0x0f) | ((v + 8) << 4));
            }
            for (size_t g = 0; g < ng; g++) {
                int32_t s = 0;
                for (size_t kk = g * gs; kk < (g + 1) * gs && kk < k && r < n; kk++)
                    s += w[r * ldw + kk];
                colsum[(p * ng + g) * 16 + j] = s;
                pscale[(p * ng + g) * 16 + j] = r < n ? scale[r * ng + g] : 0.0f;
            }
        }
    }
    return QE_GEMM_OK;
}

/* rterm[i·ng + g] = −8·Σ_{k∈g} a[i, k] over the KP columns: removes the packing's +8 offset. */
static void qe_gemm_w4_row_terms(size_t m, const uint8_t *a, size_t lda, const qe_packed_w4 *w,
                                 int32_t *rterm) {
    const size_t gs = (size_t)w->gs, ng = (size_t)w->ng;
    for (size_t i = 0; i < m; i++)
        for (size_t g = 0; g < ng; g++) {
            uint32_t s = 0;
            for (size_t kk = g * gs; kk < (g + 1) * gs; kk++) s += a[i * lda + kk];
            rterm[i * ng + g] = (int32_t)(0u - 8u * s);
        }
}

/* The tile of rows [m0, m0 + mr) × panel p. */
static inline qe_w4_tile qe_gemm_w4_tile_at(const qe_packed_w4 *w, const uint8_t *a, size_t lda,
                                            const int32_t *rterm, const float *a_scale,
                                            const int32_t *a_zp, size_t row_step,
                                            const float *bias, float *out, size_t ldc,
                                            int accumulate, size_t m0, size_t p) {
    const size_t ng = (size_t)w->ng, kp = (size_t)w->gs * ng, n0 = p * QE_W4_NR;
    const size_t nr = (size_t)w->n - n0 < QE_W4_NR ? (size_t)w->n - n0 : QE_W4_NR;
    const qe_w4_tile t = {a + m0 * lda, lda, rterm + m0 * ng, a_scale + m0 * row_step,
                          a_zp ? a_zp + m0 * row_step : NULL, row_step,
                          w->data + p * QE_W4_NR * kp / 2, w->colsum + p * ng * 16,
                          w->scale + p * ng * 16, bias ? bias + n0 : NULL, out + m0 * ldc + n0,
                          ldc, nr, ng, (size_t)w->gs / 8, accumulate, NULL, 0};
    return t;
}

static int qe_gemm_w4_dequant(int isa, size_t m, const uint8_t *a, size_t lda,
                              const int32_t *rterm, const float *a_scale, const int32_t *a_zp,
                              size_t row_step, const qe_packed_w4 *w, const float *bias,
                              float *out, size_t ldc, int accumulate, int nthreads) {
    const qe_w4_kernel_rec *r = qe_gemm_w4_kernel_for_isa(isa);
    if (!r) return QE_GEMM_EISA;
    const size_t n = (size_t)w->n, kp = (size_t)w->gs * (size_t)w->ng;
    if (w->k < 1 || w->k > QE_W4_MAX_K || w->gs % 16 || kp < (size_t)w->k || lda < kp ||
        ldc < n || row_step > 1)
        return QE_GEMM_EARG;
    if (m == 0 || n == 0) return QE_GEMM_OK;
    const size_t np = (n + QE_W4_NR - 1) / QE_W4_NR, nrb = (m + QE_W4_MR - 1) / QE_W4_MR;
    const long ntiles = (long)(np * nrb);
    int nt = qe_threads(nthreads);
    if ((double)m * (double)n * (double)kp < (double)QE_GEMM_PAR_MIN_MACS) nt = 1;
    if (nt > ntiles) nt = (int)ntiles;
    /* tile t: panel t / nrb, row block t % nrb, so a thread's consecutive tiles share a panel */
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (long t = 0; t < ntiles; t++) {
        if (nt > 1) qe_threads_note_team();
        const size_t p = (size_t)t / nrb, m0 = (size_t)t % nrb * QE_W4_MR;
        const size_t mr = m - m0 < QE_W4_MR ? m - m0 : QE_W4_MR;
        const qe_w4_tile tile = qe_gemm_w4_tile_at(w, a, lda, rterm, a_scale, a_zp, row_step,
                                                   bias, out, ldc, accumulate, m0, p);
        r->ukernel(mr, &tile);
    }
    return QE_GEMM_OK;
}

#endif
