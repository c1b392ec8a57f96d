/* A float32 elementwise chain: a short program over one input tensor, run block by block so that
 * every intermediate stays in L1 (qe_f32_chain.h). This is how qengine runs the decomposed
 * activations exporters write (x·Clip(x+3, 0, 6)/6, x·0.5·(1+erf(x/√2)), x·sigmoid(x), a
 * trailing ·a + b ...) as one pass instead of one NumPy pass and one array per node.
 *
 * State: `acc` (the running value) and QE_CHAIN_REGS registers; register 0 is the input x.
 * A step is {op, reg, c}: binary steps read register `reg` as their second operand, or the
 * constant c when reg < 0; STORE/LOAD move acc to/from register `reg`.
 */
#ifndef QE_F32_CHAIN_PARAMS_H
#define QE_F32_CHAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define QE_CHAIN_REGS 4
#define QE_CHAIN_MAX_STEPS 64
/* elements per block: acc + 3 registers = 4 KiB of floats, well inside L1 */
#define QE_CHAIN_BLOCK 256

enum {
#define X(e, name, kind) e,
#include "qe_f32_chain_ops.inc"
#undef X
    QE_CH_COUNT
};

typedef struct qe_chain_step {
    int32_t op;
    int32_t reg;    /* operand / STORE / LOAD register, or -1: use c */
    float c;
} qe_chain_step;

typedef void (*qe_f32_vchain_fn)(size_t n, const float *x, float *y, const qe_chain_step *prog,
                                 size_t nsteps);

#endif
