/* Float32 elementwise chains: dispatch and the threaded driver (see qe_f32_chain_params.h for
 * what a chain is, qe_f32_vchain.inc for the interpreter, qe_f32_math.h for the functions).
 * Every ISA's kernel is bit-identical to the scalar one; the result does not depend on the
 * thread count either (elements are independent). */
#ifndef QE_F32_CHAIN_H
#define QE_F32_CHAIN_H

#include "../qe_cpu.h"
#include "../qe_threads.h"
#include "qe_f32_chain_params.h"
#include "qe_f32_vchain_ukernel__scalar.h"
#include "qe_f32_vchain_ukernel__avx2.h"
#include "qe_f32_vchain_ukernel__avx512.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* below this many elements one thread is faster than a fork/join */
#define QE_CHAIN_PAR_MIN ((size_t)1 << 16)
#define QE_CHAIN_CHUNK ((size_t)1 << 14)

static qe_f32_vchain_fn qe_f32_vchain_for_isa(int isa) {
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return qe_f32_vchain_ukernel__avx512;
    if (isa == QE_ISA_AVX2) return qe_f32_vchain_ukernel__avx2;
#endif
    (void)isa;
    return qe_f32_vchain_ukernel__scalar;
}

static const char *qe_f32_vchain_name(int isa) {
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX512VNNI) return "qe_f32_vchain_ukernel__avx512";
    if (isa == QE_ISA_AVX2) return "qe_f32_vchain_ukernel__avx2";
#endif
    (void)isa;
    return "qe_f32_vchain_ukernel__scalar";
}

/* Check a program: known ops, registers in range and written (STORE) before they are read.
 * Returns the index of the first bad step, or -1 when the program is valid. */
static long qe_f32_chain_check(const qe_chain_step *prog, size_t nsteps) {
    int written = 1;                      /* bit k: register k holds a value (0 = the input) */
    if (nsteps > QE_CHAIN_MAX_STEPS) return (long)QE_CHAIN_MAX_STEPS;
    for (size_t s = 0; s < nsteps; s++) {
        const int32_t op = prog[s].op, r = prog[s].reg;
        if (op < 0 || op >= QE_CH_COUNT || r >= QE_CHAIN_REGS || r < -1) return (long)s;
        if (op == QE_CH_STORE) {
            if (r < 1) return (long)s;    /* register 0 is the input, read-only */
            written |= 1 << r;
        } else if (r >= 0 && !(written & (1 << r))) {
            return (long)s;
        } else if (op == QE_CH_LOAD && r < 0) {
            return (long)s;
        }
    }
    return -1;
}

/* y = chain(x) over n elements; x == y allowed. The program must have passed the check. */
static void qe_f32_chain_run(int isa, size_t n, const float *x, float *y,
                             const qe_chain_step *prog, size_t nsteps, int nthreads) {
    const qe_f32_vchain_fn fn = qe_f32_vchain_for_isa(isa);
    const size_t nchunks = (n + QE_CHAIN_CHUNK - 1) / QE_CHAIN_CHUNK;
    const int nt = n >= QE_CHAIN_PAR_MIN ? qe_threads(nthreads) : 1;
    if (nt <= 1 || nchunks < 2) { fn(n, x, y, prog, nsteps); return; }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(static)
        for (size_t c = 0; c < nchunks; c++) {
            const size_t i = c * QE_CHAIN_CHUNK;
            fn(n - i < QE_CHAIN_CHUNK ? n - i : QE_CHAIN_CHUNK, x + i, y + i, prog, nsteps);
        }
    }
#endif
}

#endif
