/* The 4-bit dynamic GEMM kernels alone (qe_gemm_w4_dequant, one thread) against the int8 AVX2
 * GEMM on the same shape: the batch-1 LSTM step's R·h (N = 4·512, K = 512) and more rows.
 *   gcc -D_GNU_SOURCE -O3 -std=c11 -ffp-contract=off -fno-strict-aliasing -Iinclude \
 *       bench/w4_gemv.c -o /tmp/w4_gemv -lm && flock /tmp/qengine-bench.lock /tmp/w4_gemv 2048 1
 * Prints the median and best time per call over 200 × 10 calls, GMAC/s of the best, and the
 * bytes of packed weights + group terms. x86-64 only (the int8 comparison is the AVX2 record). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "qengine/gemm/qe_gemm_w4.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define REPS 200
static void report(const char *what, double *t, double macs, double kb) {
    qsort(t, REPS, sizeof(double), cmp);
    printf("%-22s median %8.2f us  best %8.2f us  (%6.1f GMAC/s, %5.0f KB)\n", what,
           t[REPS / 2] * 1e6, t[0] * 1e6, macs / t[0] * 1e-9, kb);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s N M\n", argv[0]); return 2; }
    const size_t n = (size_t)atoi(argv[1]), m = (size_t)atoi(argv[2]), k = 512;
    int8_t *w = malloc(n * k);
    for (size_t i = 0; i < n * k; i++) w[i] = (int8_t)(rand() % 15 - 7);
    uint8_t *a = aligned_alloc(64, 64 * k);
    for (size_t i = 0; i < 64 * k; i++) a[i] = (uint8_t)(rand() & 255);
    float *out = aligned_alloc(64, n * 4 * 64), sa = 0.01f;
    int32_t za = 3;
    double t[REPS];
    const size_t groups[] = {0, 128, 64, 32};
    for (int gi = 0; gi < 4; gi++) {
        size_t gs = 0, ng = 0;
        qe_gemm_w4_layout(k, groups[gi], &gs, &ng);
        float *sc = malloc(n * ng * 4);
        for (size_t i = 0; i < n * ng; i++) sc[i] = 0.001f;
        uint8_t *d = aligned_alloc(64, qe_gemm_w4_packed_bytes(n, gs * ng));
        int32_t *cs = aligned_alloc(64, n * ng * 4 + 64);
        float *ps = aligned_alloc(64, n * ng * 4 + 64);
        qe_gemm_w4_pack(n, k, w, k, sc, gs, d, cs, ps);
        const qe_packed_w4 pw = {d, cs, ps, (int32_t)n, (int32_t)k, (int32_t)gs, (int32_t)ng};
        int32_t *rt = malloc(64 * ng * 4);
        qe_gemm_w4_row_terms(m, a, gs * ng, &pw, rt);
        for (size_t r = 0; r < REPS; r++) {
            const double t0 = now();
            for (int q = 0; q < 10; q++)
                qe_gemm_w4_dequant(QE_ISA_AVX2, m, a, gs * ng, rt, &sa, &za, 0, &pw, NULL, out, n, 1, 1);
            t[r] = (now() - t0) / 10;
        }
        char name[32];
        snprintf(name, sizeof name, "w4 avx2 group %zu", groups[gi]);
        report(name, t, (double)(m * n * k), (double)(qe_gemm_w4_packed_bytes(n, gs * ng) + n * ng * 8) / 1024);
        free(sc); free(d); free(cs); free(ps); free(rt);
    }
    const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(QE_ISA_AVX2);
    void *pk = aligned_alloc(64, qe_gemm_packed_w_bytes(r, n, k));
    int32_t *cs = malloc(n * 4);
    qe_gemm_pack_weights(QE_ISA_AVX2, n, k, w, k, pk, cs);
    const qe_packed_w pw = {pk, cs, NULL, (int32_t)n, (int32_t)k,
                            (int32_t)qe_gemm_round_up(k, (size_t)r->kpad), QE_ISA_AVX2};
    float *ws = malloc(n * 4);
    for (size_t i = 0; i < n; i++) ws[i] = 0.001f;
    qe_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.a_zp = &za; ep.a_scale = &sa; ep.w_scale = ws; ep.kind = QE_EPI_F32; ep.accumulate = 1;
    const size_t wsb = qe_gemm_workspace_bytes(QE_ISA_AVX2, m, k) + 64;
    void *wsp = aligned_alloc(64, (wsb + 63) / 64 * 64);
    for (size_t rr = 0; rr < REPS; rr++) {
        const double t0 = now();
        for (int q = 0; q < 10; q++) qe_gemm(QE_ISA_AVX2, m, a, k, &pw, &ep, out, n, 1, wsp, wsb);
        t[rr] = (now() - t0) / 10;
    }
    report("int8 avx2 (int16 W)", t, (double)(m * n * k), (double)qe_gemm_packed_w_bytes(r, n, k) / 1024);
    return 0;
}
