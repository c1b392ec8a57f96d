/* Types of the 4-bit-weight dynamic GEMM (qe_gemm_w4.h): u8 activations × int4 weights → f32.
 * Numerics: docs/numerics.md "4-bit weights (dynamic quantization)", epilogue (c).
 *
 * Weights are symmetric int4 in the narrow range [−7, 7] with one float32 scale per
 * (output row n, group g of GS consecutive K values); GS = K rounded up to 16 means one scale
 * per row. K is zero-padded to KP = NG·GS.
 *
 * Packed layout (one for every ISA, made once by qe_gemm_w4_pack; 0.5 byte per weight):
 *   data    [NP panels of 16 rows][KP/8 blocks][64 bytes]
 *           byte 4·j + q of block b of panel p holds, for row n = 16p + j,
 *             low nibble  = w[n, 8b + q]     + 8        q = 0..3
 *             high nibble = w[n, 8b + 4 + q] + 8
 *           so the low nibbles of a block are the [16 rows][4 K] int8 vector a VNNI / dot-product
 *           instruction wants for K values 8b..8b+3, the high nibbles the one for 8b+4..8b+7.
 *           The +8 offset makes every nibble an unsigned 0..15 (1..15 for real weights, 8 for
 *           padding): it unpacks with an AND or a shift and multiplies exactly as u8·u8 (NEON
 *           udot), u8·s8 (vpdpbusd, vpmaddubsw: 2·255·15 < 2^15, no int16 saturation) or in C.
 *           The offset is removed per activation row: Σ a·w = Σ a·(w + 8) − 8·Σ a.
 *   colsum  [NP][NG][16] int32, Σ_{k∈g} w[n, k]        (folds the activation zero point)
 *   scale   [NP][NG][16] float32, the group scales      (padding rows: 0)
 */
#ifndef QE_GEMM_W4_PARAMS_H
#define QE_GEMM_W4_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define QE_W4_NR 16            /* rows (output columns) per panel */
#define QE_W4_KB 8             /* K values per 64-byte block */
#define QE_W4_MR 4             /* activation rows per kernel call, at most */
#define QE_W4_MAX_K 65536      /* Σ (a − z_a)·w ≤ K·255·7 fits int32 far beyond this */

typedef struct qe_packed_w4 {
    const uint8_t *data;
    const int32_t *colsum;
    const float *scale;
    int32_t n, k;              /* true sizes */
    int32_t gs, ng;            /* group size (a multiple of 16), number of groups: KP = gs·ng */
} qe_packed_w4;

/* One kernel call: mr ≤ QE_W4_MR activation rows against one 16-row W panel.
 *   a       row i at a + i·lda: KP u8 values (a caller's zero padding beyond K is fine, as is
 *           any value: rterm covers the same KP columns)
 *   rterm   row i's [NG] int32 at rterm + i·NG: −8·Σ_{k∈g} a[i, k] over the KP columns
 *   a_scale, a_zp   row i's activation qparams at [i·row_step]; a_zp NULL = 0
 *   w, colsum, scale   the panel's blocks and its [NG][16] group terms
 *   bias    [nr] or NULL;  out row i at out + i·ldc, nr ≤ 16 columns written;
 *   accumulate: out += y instead of out = y (LSTM gate pre-activations)
 *   acc_out NULL: the float epilogue (c) above. Else the integer result instead (static
 *           quantization, qe_conv_w4.h): acc_out[i·acc_ld + j] = Σ_g (Σ_{k∈g} (a − z_a)·w),
 *           the wrapping int32 sum of the groups' exact partial sums, for all 16 panel rows j
 *           (acc_ld ≥ 16); a_scale, bias, out and accumulate are then unused. */
typedef struct qe_w4_tile {
    const uint8_t *a;
    size_t lda;
    const int32_t *rterm;
    const float *a_scale;
    const int32_t *a_zp;
    size_t row_step;
    const uint8_t *w;
    const int32_t *colsum;
    const float *scale;
    const float *bias;
    float *out;
    size_t ldc, nr, ng, gb;    /* gb = 8-K blocks per group = gs / 8 (even) */
    int32_t accumulate;
    int32_t *acc_out;
    size_t acc_ld;
} qe_w4_tile;

typedef void (*qe_w4_ukernel_fn)(size_t mr, const qe_w4_tile *t);

typedef struct qe_w4_kernel_rec {
    const char *name;
    int32_t isa;
    qe_w4_ukernel_fn ukernel;
} qe_w4_kernel_rec;

#endif
