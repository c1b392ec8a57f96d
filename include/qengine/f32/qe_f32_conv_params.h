/* FP32 convolution microkernel interface (the driver is qe_f32_conv.h).
 *
 * A microkernel computes an mr × nc tile of one group's output in the wide raster of
 * qe_f32_window.h: rows are output channels, columns consecutive wide pixels p'.
 *
 *   y[r][j] = clamp(bias[r] + Σ_{i<k} w[i·MR + r] · x[off[i] + j],  lo, hi)
 *
 * w is the weight block packed by qe_f32_conv_pack_w (k × MR, rows ≥ mr zero), x points at the
 * tile's first pixel in X', off[i] is the X' offset of reduction index i = (c, ky, kx). Lanes
 * j ≥ nc are neither read nor written (masked), so a tile may end where X' ends.
 *
 * Numerics, the same on every ISA: one accumulator per output, started at the bias (0 without
 * one), updated by a fused multiply-add per reduction index in increasing i, then clamped with
 * max(lo, ·) and min(hi, ·) in that operand order (a NaN accumulator stays NaN, as maxps/minps
 * return their second operand on NaN). The scalar twin uses C99 fmaf, which rounds once like
 * vfmadd, so scalar, AVX2 and AVX-512 give bit-identical outputs, and so does any tiling or
 * thread count (no reduction is ever split).
 */
#ifndef QE_F32_CONV_PARAMS_H
#define QE_F32_CONV_PARAMS_H

#include <stddef.h>

typedef struct qe_f32_minmax {
    float lo, hi;             /* output clamp: −inf, +inf for none; 0, +inf for Relu */
} qe_f32_minmax;

typedef void (*qe_f32_conv_ukernel_fn)(size_t mr, size_t nc, size_t k, const float *w,
                                       const float *x, const ptrdiff_t *off, const float *bias,
                                       float *y, size_t ldy, const qe_f32_minmax *p);

/* The transposed tile ("pc": pixels × channels), for layers whose channel count is a multiple
 * of the vector width and whose wide raster wastes lanes (small planes):
 *
 *   y[c·ldy + r] = clamp(bias[c] + Σ_{i<k} x[r][off[i]] · w[i·NR + c],  lo, hi)
 *
 * rows r < mr are pixels, each with its own X' pointer x[r] (only valid pixels, so no wide
 * columns are computed; x[r] for r ≥ mr must still point at readable memory), columns c < nc
 * output channels from a weight panel packed k × NR (qe_f32_conv_pack_w_pc). The store goes
 * to the NCHW output: channel c's pixels r are consecutive. Same chain, same bits.
 * With `rowmajor` the store is y[r·ldy + c] instead: the tile of a plain row-major GEMM
 * C = A·B + bias (x[r] = row r of A, off[i] = i), which the FP32 recurrent layers use. */
typedef void (*qe_f32_conv_pc_ukernel_fn)(size_t mr, size_t nc, size_t k,
                                          const float *const *x, const ptrdiff_t *off,
                                          const float *w, const float *bias, float *y,
                                          size_t ldy, int rowmajor, const qe_f32_minmax *p);

#define QE_F32_MR_MAX 8
#define QE_F32_NR_MAX 32

#endif
