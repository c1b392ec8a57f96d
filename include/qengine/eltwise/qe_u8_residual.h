/* A residual QAdd fused into the uint8 epilogue of the GEMM and convolution drivers
 * (qe_gemm_ex in ../gemm/qe_gemm.h, qe_conv2d_gemm_add in ../conv/qe_conv.h).
 *
 * A static-int8 ResNet / MobileNetV2 block ends in y = QAdd(conv(x), skip): run as two nodes,
 * the QAdd is a second pass over memory (read the conv output and the skip tensor, write y),
 * single-threaded below qe_eltwise.h's chunk size. Fused, each worker thread applies the add to
 * the output block of every tile it has just requantized, while that block is still in L1:
 *
 *   y[m, n] = QAdd(y[m, n], skip[m, n])    for the rows and columns of the tile
 *
 * with `add` = the QAdd kernel qe_u8_binary uses (qe_u8_vadd_minmax_ukernel__<isa>, the formula of
 * qe_eltwise_params.h) and the conv / GEMM output as operand a. The add is elementwise and every
 * ISA's kernel gives the scalar kernel's bytes, so applying it tile by tile — in any order, on any
 * thread, in chunks of any length — gives exactly the bytes of the separate pass.
 */
#ifndef QE_U8_RESIDUAL_H
#define QE_U8_RESIDUAL_H

#include <stddef.h>
#include <stdint.h>
#include "qe_eltwise_params.h"

typedef struct qe_u8_residual {
    const uint8_t *skip;        /* operand b, [M rows][lds], row m and column n match the output's */
    size_t lds;                 /* row stride of skip, in elements */
    qe_u8_binary_fn add;        /* a QAdd kernel (qe_u8_binary_for_isa(QE_BINARY_ADD, isa)) */
    qe_u8_binary_params p;      /* a = the requantized output (a_zp, a_mult), b = skip */
} qe_u8_residual;

/* y[m0 + i, n0 + j] = add(y[m0 + i, n0 + j], skip[m0 + i, n0 + j]) for i < rows, j < cols, in
 * place (the kernels read a[i] and b[i] before they write y[i]); one call when the block is one
 * contiguous run in both tensors. */
static inline void qe_u8_residual_block(const qe_u8_residual *r, uint8_t *y, size_t ldy,
                                        size_t m0, size_t rows, size_t n0, size_t cols) {
    if (rows == 0 || cols == 0) return;
    const uint8_t *s = r->skip + m0 * r->lds + n0;
    y += m0 * ldy + n0;
    if (cols == ldy && cols == r->lds) {
        r->add(rows * cols, y, s, y, &r->p);
        return;
    }
    for (size_t i = 0; i < rows; i++) r->add(cols, y + i * ldy, s + i * r->lds, y + i * ldy, &r->p);
}

/* 0 when the parameters are usable: a kernel, a skip tensor, lo ≤ hi within [0, 255]. */
static inline int qe_u8_residual_check(const qe_u8_residual *r) {
    return r->add && r->skip && r->p.lo >= 0 && r->p.hi <= 255 && r->p.lo <= r->p.hi ? 0 : -1;
}

#endif
