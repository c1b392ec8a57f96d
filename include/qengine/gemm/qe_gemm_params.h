/* Types shared by the GEMM packing, microkernels, epilogues and driver (qe_gemm.h).
 *
 * Packed weights (made once by the kernel record's pack_w, see qe_gemm_pack.h):
 *   data   [NP panels][KG groups][NR][KR] elements (KG·KR = K padded to the record's kpad), elem = int8 (VNNI, NEON, scalar) or int16
 *          (AVX2: pre-widened so the exact vpmaddwd path needs no sign extension in the loop).
 *          NP = ceil(N/NR), KG = ceil(K/KR); padding rows/columns are zero.
 *   colsum [N] int32, Σ_k w[n,k]        (folds the activation zero point)
 *   w_zp   [N] int32 or NULL            (optional asymmetric weights; NULL = symmetric, z_w = 0)
 *
 * The accumulator for output (m, n) with true depth K is, in wrapping int32 arithmetic,
 *   acc = Σ_k a·w − z_a[m]·colsum[n] − z_w[n]·(rowsum_a[m] − K·z_a[m]) + col_bias[n]
 * which equals Σ_k (a − z_a)(w − z_w) + col_bias exactly while the true value fits in int32
 * (K ≤ 65793 for z_w = 0, K ≤ 33025 otherwise; numerics.md).
 */
#ifndef QE_GEMM_PARAMS_H
#define QE_GEMM_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define QE_GEMM_MAX_K 65793
#define QE_GEMM_MAX_K_WZP 33025
#define QE_GEMM_MR_MAX 12
#define QE_GEMM_NR_MAX 32

typedef struct qe_packed_w {
    const void *data;
    const int32_t *colsum;
    const int32_t *w_zp;
    int32_t n, k;          /* true sizes */
    int32_t kp;            /* K padded to the kernel's kpad */
    int32_t isa;           /* QE_ISA_* it was packed for; the driver refuses another */
} qe_packed_w;

enum {
    QE_EPI_INT32 = 0,      /* out int32 [M, ldc] */
    QE_EPI_F32 = 1,        /* out float [M, ldc]: float32(acc)·float32(s_a[m]·s_w[n]) + bias[n] */
    QE_EPI_U8 = 2,         /* out uint8: qe_requantize(acc, multiplier[n], out_zp, lo, hi) */
    QE_EPI_S8 = 3,         /* out int8:  same */
};

/* Flat epilogue parameters. Row-indexed arrays are read at [m * row_step]: row_step 0 means
 * one value per tensor, 1 one per row. Unused pointers may be NULL. */
typedef struct qe_gemm_epilogue {
    const int32_t *a_zp;        /* z_a; NULL = 0 */
    const float *a_scale;       /* s_a                       (F32) */
    const int32_t *col_bias;    /* int32 [N] added to acc; NULL = none (U8/S8: bias_q) */
    const float *w_scale;       /* s_w [N]                   (F32) */
    const float *bias;          /* float32 [N]; NULL = none  (F32) */
    const float *multiplier;    /* M [N]                     (U8/S8) */
    int32_t row_step;
    int32_t kind;               /* QE_EPI_* */
    int32_t accumulate;         /* F32 only: out[m,n] += y   (LSTM gate accumulation) */
    int32_t out_zp, lo, hi;     /* U8/S8: lo/hi = output range ∩ fused clamp, lo ≤ hi */
} qe_gemm_epilogue;

_Static_assert(sizeof(qe_packed_w) == 3 * sizeof(void *) + 16, "qe_packed_w layout");
_Static_assert(sizeof(qe_gemm_epilogue) == 6 * sizeof(void *) + 24, "qe_gemm_epilogue layout");

/* The per-tile view an epilogue gets: an int32 tile t[mr][ldt] for rows m0.., columns n0.. */
typedef struct qe_gemm_tile {
    const int32_t *t;
    size_t ldt, mr, nr, m0, n0;
    const int32_t *rterm;       /* rowsum_a[m] − K·z_a[m] for rows m0.. (only when w_zp) */
} qe_gemm_tile;

/* ukernel(mr ≤ MR, kg K-groups, packed A panel, packed W panel, int32 tile [MR][NR],
 *         accumulate into the tile instead of overwriting it) */
typedef void (*qe_gemm_ukernel_fn)(size_t mr, size_t kg, const void *a, const void *w,
                                   int32_t *c, int acc_in);
typedef void (*qe_gemm_epilogue_fn)(const qe_gemm_tile *tile, const qe_packed_w *w,
                                    const qe_gemm_epilogue *ep, void *out, size_t ldc);
/* gemv(np ≤ 4 W panels, kg K-groups, row 0 of a packed A panel (a_stride bytes per K-group),
 *      first W panel, bytes between W panels, int32 out [np·NR]): the one-row case, several
 *      panels at once (qe_u8_s8_gemv_ukernel_1x4p__*.h). NULL: the ukernel does M = 1. */
typedef void (*qe_gemm_gemv_fn)(size_t np, size_t kg, const void *a, size_t a_stride,
                                const void *w, size_t wpanel, int32_t *c);

/* The fused requantizing microkernel (epilogue (b) of numerics.md applied to the accumulators
 * while they are still in registers, for the static-quantization case with z_a folded into
 * col_bias and symmetric weights): the tile's int32 block is never stored and re-read.
 * col_bias/multiplier point at the tile's first column; out at output (m0, n0), row stride ldc
 * bytes; nr ≤ NR columns are written, kind is QE_EPI_U8 or QE_EPI_S8. */
typedef struct qe_gemm_requant_tile {
    const int32_t *col_bias;    /* [nr] or NULL */
    const float *multiplier;    /* [nr] */
    void *out;
    size_t ldc, nr;
    int32_t out_zp, lo, hi;
} qe_gemm_requant_tile;
typedef void (*qe_gemm_ukernel_requant_fn)(size_t mr, size_t kg, const void *a, const void *w,
                                           const qe_gemm_requant_tile *q);

/* The fused dequantizing microkernels: the F32 epilogue (numerics.md, dynamic quantization)
 * applied to the accumulators while they are still in registers, in the operations and order
 * of qe_gemm_epilogue__scalar with z_w = 0 and no col_bias:
 *   y = float32(acc − z_a·colsum[n]) · float32(s_a·w_scale[n]);  y = y + bias[n] (if bias);
 *   out = out + y (if accumulate) else y
 * so the int32 tile is never stored and re-read (the dynamic Linear, the LSTM/GRU input
 * projection and every recurrent step). Row i of the tile reads a_zp/a_scale at [i·row_step];
 * colsum/w_scale/bias point at the tile's first column; out at (m0, n0), row stride ldc
 * floats; nr ≤ the kernel's columns are written. */
typedef struct qe_gemm_dequant_tile {
    const int32_t *colsum;      /* [nr] */
    const float *w_scale;       /* [nr] */
    const float *bias;          /* [nr] or NULL */
    const int32_t *a_zp;        /* NULL = 0 */
    const float *a_scale;
    float *out;
    size_t ldc, nr, row_step;
    int32_t accumulate;
} qe_gemm_dequant_tile;
/* ukernel_dequant(mr, kg, A panel, W panel, tile) and gemv_dequant(np, kg, a, a_stride, w,
 * wpanel, tile): the ukernel / gemv above with that epilogue fused. */
typedef void (*qe_gemm_ukernel_dequant_fn)(size_t mr, size_t kg, const void *a, const void *w,
                                           const qe_gemm_dequant_tile *q);
typedef void (*qe_gemm_gemv_dequant_fn)(size_t np, size_t kg, const void *a, size_t a_stride,
                                        const void *w, size_t wpanel,
                                        const qe_gemm_dequant_tile *q);

/* The indirect ("igemm") twins of ukernel and ukernel_requant: A is read in place through row
 * pointers instead of from a packed panel. a holds ks·MR pointers, a[t·MR + i] = row i's
 * 4·kc bytes for tap t (rows ≥ mr are not read); W is the same packed panel, walked through
 * ks·kc K-groups. A GEMM passes its rows (ks = 1, kc = K/4); a convolution one pointer per
 * pixel and tap, into the input or into a row of z_a for padding (qe_conv.h). Only for kr = 4
 * kernels with u8 elements.
 * igemm stores int32 straight into out (row stride ldc, nr columns):
 *   out[i][j] = acc − z_a·colsum[j] + col_bias[j]      (wrapping int32; colsum/col_bias NULL = 0)
 * which is the INT32 epilogue with one z_a and z_w = 0, fused; with out = an [MR][NR] tile,
 * ldc = NR, nr = NR and no column terms it is the plain tile of ukernel. */
typedef struct qe_gemm_int32_tile {
    int32_t *out;
    size_t ldc, nr;
    const int32_t *colsum;      /* [nr] or NULL */
    const int32_t *col_bias;    /* [nr] or NULL */
    int32_t a_zp;
} qe_gemm_int32_tile;
typedef void (*qe_gemm_igemm_fn)(size_t mr, size_t ks, size_t kc, const uint8_t *const *a,
                                 const void *w, const qe_gemm_int32_tile *q);
typedef void (*qe_gemm_igemm_requant_fn)(size_t mr, size_t ks, size_t kc, const uint8_t *const *a,
                                         const void *w, const qe_gemm_requant_tile *q);

/* A dispatch record: a kernel travels with its tile and its packing, so they never mismatch. */
typedef struct qe_gemm_kernel_rec {
    const char *name;
    int32_t isa, mr, nr, kr;
    int32_t kpad;               /* K is zero-padded to a multiple of this (≥ KR, = KR·max unroll) */
    int32_t elem;               /* bytes per packed A/W element: 1 (u8/s8) or 2 (int16) */
    qe_gemm_ukernel_fn ukernel;
    qe_gemm_epilogue_fn epilogue;
    qe_gemm_gemv_fn gemv;       /* may be NULL */
    qe_gemm_ukernel_requant_fn ukernel_requant;   /* may be NULL: ukernel + epilogue instead */
    qe_gemm_ukernel_dequant_fn ukernel_dequant;   /* may be NULL: ukernel + epilogue instead */
    qe_gemm_gemv_dequant_fn gemv_dequant;         /* may be NULL: gemv (or ukernel) + epilogue */
    qe_gemm_igemm_fn igemm;                       /* may be NULL: pack A, then ukernel */
    qe_gemm_igemm_requant_fn igemm_requant;       /* NULL when igemm is */
} qe_gemm_kernel_rec;

#endif
