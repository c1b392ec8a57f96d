/* Packing for the GEMM microkernels; the layout is chosen by the kernel record (qe_gemm_params.h).
 *
 * W (weights, int8 [N, K], output-channel major like nn.Linear) is packed once per model:
 *   [N/NR panels][K/KR groups][NR columns][KR values]: one K-group of a panel is one contiguous
 *   NR·KR·elem-byte vector, exactly what one (or two) vector loads of the kernel want.
 * A (activations, uint8 [M, K]) is packed per call, in the mirror layout
 *   [M/MR panels][K/KR groups][MR rows][KR values]: each row's KR values are one 32-bit
 *   broadcast (VNNI: 4 u8; AVX2: 2 zero-extended int16; NEON: 4 u8).
 * Both pad K with zeros up to KPAD (a multiple of KR: kernels that unroll K-groups need no
 * K tail loop, which also keeps GCC's register allocation of their accumulators clean) and the last panel's rows/columns with zeros, so the kernels
 * have no tails in K or in the packed dimension; a zero contributes nothing to any sum.
 */
#ifndef QE_GEMM_PACK_H
#define QE_GEMM_PACK_H

#include <string.h>
#include "qe_gemm_params.h"
#include "qe_u8_pack_a_4c2__avx2.h"

static inline size_t qe_gemm_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

static inline size_t qe_gemm_packed_w_bytes(const qe_gemm_kernel_rec *r, size_t n, size_t k) {
    return qe_gemm_round_up(n, r->nr) * qe_gemm_round_up(k, r->kpad) * (size_t)r->elem;
}

static inline size_t qe_gemm_packed_a_bytes(const qe_gemm_kernel_rec *r, size_t m, size_t k) {
    return qe_gemm_round_up(m, r->mr) * qe_gemm_round_up(k, r->kpad) * (size_t)r->elem;
}

/* w: int8 [n, k] with row stride ldw. out: qe_gemm_packed_w_bytes(). colsum: int32 [n]. */
static void qe_gemm_pack_w(const qe_gemm_kernel_rec *r, size_t n, size_t k, const int8_t *w,
                           size_t ldw, void *out, int32_t *colsum) {
    const size_t nr = r->nr, kr = r->kr, kp = qe_gemm_round_up(k, r->kpad);
    const size_t np = qe_gemm_round_up(n, nr) / nr;
    int8_t *o8 = (int8_t *)out;
    int16_t *o16 = (int16_t *)out;
    for (size_t p = 0; p < np; p++) {
        for (size_t g = 0; g < kp / kr; g++) {
            for (size_t j = 0; j < nr; j++) {
                const size_t col = p * nr + j;
                for (size_t q = 0; q < kr; q++) {
                    const size_t kk = g * kr + q;
                    const int8_t v = (col < n && kk < k) ? w[col * ldw + kk] : 0;
                    const size_t idx = ((p * (kp / kr) + g) * nr + j) * kr + q;
                    if (r->elem == 1) o8[idx] = v; else o16[idx] = v;
                }
            }
        }
    }
    for (size_t col = 0; col < n; col++) {
        int32_t s = 0;
        for (size_t kk = 0; kk < k; kk++) s += w[col * ldw + kk];
        colsum[col] = s;
    }
}

/* Pack MR-row panels [p0, p1) of a: uint8 [m, k] with row stride lda. rowsum (may be NULL):
 * Σ_k a[row, k] for every row of those panels that exists. Only panels with missing rows or a
 * K tail are cleared first, so a full panel is written exactly once. */
static void qe_gemm_pack_a(const qe_gemm_kernel_rec *r, size_t m, size_t k, const uint8_t *a,
                           size_t lda, size_t p0, size_t p1, void *out, int32_t *rowsum) {
    const size_t mr = r->mr, kr = r->kr, kg = qe_gemm_round_up(k, r->kpad) / kr;
    const size_t panel = kg * mr * kr * (size_t)r->elem;
    for (size_t p = p0; p < p1; p++) {
        uint8_t *dst8 = (uint8_t *)out + p * panel;
        if ((p + 1) * mr > m || k % (size_t)r->kpad) memset(dst8, 0, panel);
        if (r->elem == 1 && kr == 4) {
            /* K-group by K-group over the panel's rows: the 4-byte stores run sequentially
             * (one row's values scattered MR·4 bytes apart measured ~3.5 cycles per store) */
            const size_t pr = m - p * mr < mr ? m - p * mr : mr, k4 = k / 4 * 4;
            const uint8_t *src[QE_GEMM_MR_MAX];
            for (size_t i = 0; i < pr; i++) src[i] = a + (p * mr + i) * lda;
            uint8_t *d = dst8;
            if (pr == QE_GEMM_MR_MAX && mr == QE_GEMM_MR_MAX) {
                for (size_t kk = 0; kk < k4; kk += 4, d += QE_GEMM_MR_MAX * 4)
                    _Pragma("GCC unroll 12") for (size_t i = 0; i < QE_GEMM_MR_MAX; i++)
                        memcpy(d + 4 * i, src[i] + kk, 4);
            } else {
                for (size_t kk = 0; kk < k4; kk += 4, d += mr * 4)
                    for (size_t i = 0; i < pr; i++) memcpy(d + 4 * i, src[i] + kk, 4);
            }
            for (size_t i = 0; i < pr; i++) {
                for (size_t kk = k4; kk < k; kk++) d[4 * i + kk - k4] = src[i][kk];
                if (rowsum) {
                    int32_t sum = 0;
                    for (size_t kk = 0; kk < k; kk++) sum += src[i][kk];
                    rowsum[p * mr + i] = sum;
                }
            }
            continue;
        }
#if QE_HAVE_X86_SIMD
        if (r->isa == QE_ISA_AVX2 && r->elem == 2 && kr == 2 && mr == 4 && (p + 1) * mr <= m) {
            const uint8_t *src[4];
            for (size_t i = 0; i < 4; i++) src[i] = a + (p * 4 + i) * lda;
            qe_u8_pack_a_4c2__avx2(src, k, (int16_t *)dst8);
            if (rowsum)
                for (size_t i = 0; i < 4; i++) {
                    int32_t sum = 0;
                    for (size_t kk = 0; kk < k; kk++) sum += src[i][kk];
                    rowsum[p * 4 + i] = sum;
                }
            continue;
        }
#endif
        for (size_t i = 0; i < mr && p * mr + i < m; i++) {
            const size_t row = p * mr + i;
            const uint8_t *src = a + row * lda;
            if (r->elem == 1) {
                uint8_t *dst = dst8 + i * kr;
                size_t kk = 0;
                if (kr == 4)
                    for (; kk + 4 <= k; kk += 4) memcpy(dst + kk * mr, src + kk, 4);
                for (; kk < k; kk++) dst[(kk / kr) * mr * kr + kk % kr] = src[kk];
            } else {
                int16_t *dst = (int16_t *)dst8 + i * kr;
                for (size_t kk = 0; kk < k; kk++) dst[(kk / kr) * mr * kr + kk % kr] = src[kk];
            }
            if (rowsum) {
                int32_t s = 0;
                for (size_t kk = 0; kk < k; kk++) s += src[kk];
                rowsum[row] = s;
            }
        }
    }
}

#endif
