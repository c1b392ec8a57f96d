/* u8 elementwise drivers: binary kernels (QAdd, QMul) per ISA and the LUT, OpenMP over
 * contiguous chunks above a size where the fork/join pays off. */
#ifndef QE_ELTWISE_H
#define QE_ELTWISE_H

#include "../qe_threads.h"
#include "../qe_cpu.h"
#include "qe_eltwise_params.h"
#include "qe_u8_vadd_minmax_ukernel__scalar.h"
#include "qe_u8_vadd_minmax_ukernel__avx2.h"
#include "qe_u8_vadd_minmax_ukernel__avx512.h"
#include "qe_u8_vmul_minmax_ukernel__scalar.h"
#include "qe_u8_vmul_minmax_ukernel__avx512.h"
#include "qe_u8_lut_ukernel__scalar.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define QE_ELTWISE_CHUNK ((size_t)1 << 16)

enum { QE_BINARY_ADD = 0, QE_BINARY_MUL = 1 };

static qe_u8_binary_fn qe_u8_binary_for_isa(int op, int isa) {
#if QE_HAVE_X86_SIMD
    if (op == QE_BINARY_ADD && isa == QE_ISA_AVX512VNNI) return qe_u8_vadd_minmax_ukernel__avx512;
    if (op == QE_BINARY_ADD && isa == QE_ISA_AVX2) return qe_u8_vadd_minmax_ukernel__avx2;
    if (op == QE_BINARY_MUL && isa == QE_ISA_AVX512VNNI) return qe_u8_vmul_minmax_ukernel__avx512;
#endif
    (void)isa;
    return op == QE_BINARY_ADD ? qe_u8_vadd_minmax_ukernel__scalar : qe_u8_vmul_minmax_ukernel__scalar;
}

static int qe_u8_binary(int op, int isa, size_t n, const uint8_t *a, const uint8_t *b,
                        uint8_t *y, const qe_u8_binary_params *p, int nthreads) {
    if (p->lo > p->hi || p->lo < 0 || p->hi > 255) return -4;
    const qe_u8_binary_fn fn = qe_u8_binary_for_isa(op, isa);
    const size_t nchunks = (n + QE_ELTWISE_CHUNK - 1) / QE_ELTWISE_CHUNK;
    int nt = qe_threads(nthreads);
    if (nchunks < 2 || nt <= 1) { fn(n, a, b, y, p); return 0; }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(static)
        for (size_t c = 0; c < nchunks; c++) {
            const size_t i = c * QE_ELTWISE_CHUNK;
            const size_t len = n - i < QE_ELTWISE_CHUNK ? n - i : QE_ELTWISE_CHUNK;
            fn(len, a + i, b + i, y + i, p);
        }
    }
#endif
    return 0;
}

static void qe_u8_lut(size_t n, const uint8_t *x, const uint8_t *table, uint8_t *y, int nthreads) {
    const size_t nchunks = (n + QE_ELTWISE_CHUNK - 1) / QE_ELTWISE_CHUNK;
    int nt = qe_threads(nthreads);
    if (nchunks < 2 || nt <= 1) { qe_u8_lut_ukernel__scalar(n, x, table, y); return; }
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt)
    {
        qe_threads_note_team();
        #pragma omp for schedule(static)
        for (size_t c = 0; c < nchunks; c++) {
            const size_t i = c * QE_ELTWISE_CHUNK;
            const size_t len = n - i < QE_ELTWISE_CHUNK ? n - i : QE_ELTWISE_CHUNK;
            qe_u8_lut_ukernel__scalar(len, x + i, table, y + i);
        }
    }
#endif
}

#endif
