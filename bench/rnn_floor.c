/* The floor of the dynamic-int8 LSTM on this machine: what one recurrent step costs when it does
 * nothing but stream R, next to what the real layer (qe_rnn_layer_run) costs. BENCHMARKS.md
 * quotes it for issue 9's "within 1.15x of the measured bandwidth floor".
 *
 *   gcc -O3 -std=c11 -ffp-contract=off -fno-strict-aliasing -fopenmp -Iinclude \
 *       bench/rnn_floor.c -o /tmp/rnn_floor -lm -lpthread
 *   /tmp/rnn_floor [--config I,H,LAYERS,B,T] [--threads 1,2] [--runs 30]
 *
 * For each thread count, the layer's own split (threads own whole blocks of 32 units, i.e. their
 * rows of R, qe_rnn_dynamic.h) and per step, alternating the walk direction as the layer does:
 *   read    every byte of the thread's rows of R is loaded (64-byte vector loads folded with
 *           xor): the bandwidth floor of the step, no arithmetic;
 *   dot     the step's dot products through the dispatch record's dequantizing kernels into a
 *           scratch gate buffer (h fixed: no gates, no quantization of h);
 *   layer   qe_rnn_layer_run, everything (quantize h, dot products, gates, y).
 * each with one barrier per step when threads > 1 (the step's data dependency needs it), and
 * `read` also without (the pure streaming rate). Then the whole model (LAYERS stacked LSTM
 * layers): the input projections (qe_gemm_linear_dynamic, M = T·B) plus LAYERS × T steps of
 * `read`, as a floor for bench/compare_rnn.py's figure of the same config.
 * Times are medians (min in brackets) of wall-clock time in ms per layer (T steps).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "qengine/qe_threads_state.h"
#include "qengine/rnn/qe_rnn_dynamic.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct { double med, min; } stat2;

static stat2 stats(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    const stat2 s = {t[n / 2], t[0]};
    return s;
}

enum { M_READ, M_READ_NOSYNC, M_DOT, M_LAYER };

/* xor of every 64-byte line of [p, p + n) folded into x: the loads cannot be skipped */
QE_TARGET_AVX512VNNI static int read_bytes(const char *p, size_t n, int x) {
    __m512i a = _mm512_set1_epi32(x), b = _mm512_setzero_si512(), c = b, d = b;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
        c = _mm512_xor_si512(c, _mm512_load_si512(p + i + 128));
        d = _mm512_xor_si512(d, _mm512_load_si512(p + i + 192));
    }
    return _mm512_reduce_or_epi32(_mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
}

static volatile int g_sink;

/* One layer's T steps of `mode` on nt threads; returns seconds. */
static double run_steps(int mode, qe_rnn_layer *L, int nt) {
    const qe_gemm_kernel_rec *rec = qe_gemm_kernel_for_isa(L->isa);
    qe_rnn_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.L = L; sh.rec = rec; sh.gates = qe_gates_for_isa(L->isa); sh.G = 4;
    sh.nblocks = L->Hp / QE_RNN_NB;
    const size_t G = 4, NB = QE_RNN_NB, kg = (size_t)L->r->kp / rec->kr;
    const size_t block_bytes = G * NB * kg * rec->kr;   /* 4 panels of 32 rows × kp bytes */
    const double t0 = now();
    if (mode == M_LAYER) {
        L->nthreads = nt;
        qe_rnn_layer_run(L);
        return now() - t0;
    }
    #pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
        const size_t j0 = (size_t)sh.nblocks * tid / n, j1 = (size_t)sh.nblocks * (tid + 1) / n;
        qe_rnn_local loc;
        const size_t lb = qe_gemm_round_up(qe_rnn_local_bytes(rec, (size_t)L->B, (size_t)L->Hp), 64);
        void *scratch = aligned_alloc(64, lb);
        if (!scratch) abort();
        qe_rnn_local_init(&loc, rec, (size_t)L->B, (size_t)L->Hp, scratch);
        qe_rnn_quantize_h(&sh, &loc, L->h);
        int x = 0;
        for (int s = 0; s < L->T; s++) {
            for (size_t jj = j0; jj < j1; jj++) {
                const size_t j = (s & 1) ? j0 + j1 - 1 - jj : jj;
                if (mode == M_DOT)
                    qe_rnn_gemv(&sh, &loc, j * G * NB, (j + 1) * G * NB, L->gx, (size_t)L->gx_b,
                                NULL, 0);
                else
                    x = read_bytes((const char *)L->r->data + j * block_bytes, block_bytes, x);
            }
            if (mode != M_READ_NOSYNC && n > 1) {
                #pragma omp barrier
            }
        }
        g_sink = x;
        free(scratch);
    }
    return now() - t0;
}

int main(int argc, char **argv) {
    int I = 256, H = 512, layers = 2, B = 1, T = 100, runs = 30;
    int threads[4] = {1, 2}, nthr = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d,%d,%d,%d", &I, &H, &layers, &B, &T) != 5) return 2;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthr = sscanf(argv[++i], "%d,%d,%d,%d", &threads[0], &threads[1], &threads[2], &threads[3]);
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--config I,H,LAYERS,B,T] [--threads 1,2] [--runs N]\n", argv[0]);
            return 2;
        }
    }
    if (!qe_threads_state_init()) return 2;
    qengine_set_num_threads(64);
    const int isa = QE_ISA_AVX512VNNI;
    if (!(qe_runnable_isas(qe_cpu_features()) & (1u << isa))) {
        fprintf(stderr, "rnn_floor: needs AVX-512 VNNI\n");
        return 2;
    }
    const qe_gemm_kernel_rec *rec = qe_gemm_kernel_for_isa(isa);
    const int G = 4, Hp = (H + QE_RNN_NB - 1) / QE_RNN_NB * QE_RNN_NB;
    const size_t GH = (size_t)G * Hp, ngx = (size_t)T * B * GH;
    /* weights and inputs: uniform int8 R, per-row scales 2e-3, gates in [-1, 1] */
    int8_t *r = calloc(GH * Hp, 1);
    float *rs = malloc(GH * 4), *gx0 = malloc(ngx * 4), *gx = malloc(ngx * 4);
    float *h = malloc((size_t)B * Hp * 4), *c = malloc((size_t)B * Hp * 4);
    float *y = malloc((size_t)T * B * H * 4);
    int32_t *colsum = malloc(GH * 4);
    srand(1);
    for (size_t row = 0; row < GH; row++) {
        rs[row] = 2e-3f;
        if ((int)(row % Hp) < H)
            for (int k = 0; k < H; k++) r[row * Hp + k] = (int8_t)(rand() % 255 - 127);
    }
    for (size_t i = 0; i < ngx; i++) gx0[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    void *pd = aligned_alloc(64, qe_gemm_round_up(qe_gemm_packed_w_bytes(rec, GH, Hp), 64));
    qe_gemm_pack_weights(isa, GH, Hp, r, Hp, pd, colsum);
    const qe_packed_w pw = {pd, colsum, NULL, (int32_t)GH, Hp, (int32_t)qe_gemm_round_up(Hp, rec->kpad), isa};
    qe_rnn_layer L;
    memset(&L, 0, sizeof L);
    L.kind = QE_RNN_LSTM; L.T = T; L.B = B; L.H = H; L.Hp = Hp;
    L.gx = gx; L.gx_s = (ptrdiff_t)B * GH; L.gx_b = (ptrdiff_t)GH;
    L.y = y; L.y_s = (ptrdiff_t)B * H; L.y_b = H; L.h = h; L.c = c;
    L.r = &pw; L.r_scale = rs; L.isa = isa;

    /* the input projections of the stacked layers: x [T·B, K] · W [G·Hp, K] */
    const size_t M = (size_t)T * B;
    printf("# rnn_floor: LSTM (I=%d, H=%d, layers=%d, B=%d, T=%d), isa avx512vnni (%s), R %zu KiB per layer\n",
           I, H, layers, B, T, rec->name, GH * Hp / 1024);
    printf("%-4s %-22s %12s %12s %10s\n", "thr", "what", "ms median", "ms min", "us/step");
    double *tt = malloc((size_t)runs * sizeof *tt);
    for (int ti = 0; ti < nthr; ti++) {
        const int nt = threads[ti];
        qengine_set_num_threads(nt);
        static const char *const names[] = {"read R (+barrier)", "read R (no barrier)",
                                            "dot products", "layer (qe_rnn_layer_run)"};
        stat2 st[4];
        for (int mode = 0; mode < 4; mode++) {
            for (int i = -3; i < runs; i++) {
                memcpy(gx, gx0, ngx * 4);
                memset(h, 0, (size_t)B * Hp * 4);
                memset(c, 0, (size_t)B * Hp * 4);
                const double t = run_steps(mode, &L, nt);
                if (i >= 0) tt[i] = t * 1e3;
            }
            st[mode] = stats(tt, runs);
            printf("%-4d %-22s %12.3f %12.3f %10.2f\n", nt, names[mode], st[mode].med, st[mode].min,
                   st[mode].med * 1e3 / T);
        }
        /* projections at the same thread count */
        double proj = 0.0;
        for (int l = 0; l < layers; l++) {
            const size_t K = l ? (size_t)H : (size_t)I;
            int8_t *w = malloc(GH * K);
            float *x = malloc(M * K * 4), *ws = malloc(GH * 4), *bias = malloc(GH * 4);
            float *out = malloc(M * GH * 4);
            int32_t *cs = malloc(GH * 4);
            for (size_t i = 0; i < GH * K; i++) w[i] = (int8_t)(rand() % 255 - 127);
            for (size_t i = 0; i < M * K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
            for (size_t i = 0; i < GH; i++) { ws[i] = 1e-3f; bias[i] = 0.1f; }
            void *wd = aligned_alloc(64, qe_gemm_round_up(qe_gemm_packed_w_bytes(rec, GH, K), 64));
            qe_gemm_pack_weights(isa, GH, K, w, K, wd, cs);
            const qe_packed_w wp = {wd, cs, NULL, (int32_t)GH, (int32_t)K,
                                    (int32_t)qe_gemm_round_up(K, rec->kpad), isa};
            for (int i = -3; i < runs; i++) {
                const double t0 = now();
                qe_gemm_linear_dynamic(isa, M, x, K, 0, &wp, ws, bias, out, GH, 0, nt, NULL, 0);
                if (i >= 0) tt[i] = (now() - t0) * 1e3;
            }
            const stat2 sp = stats(tt, runs);
            printf("%-4d %-22s %12.3f %12.3f\n", nt, l ? "projection K=H" : "projection K=I", sp.med, sp.min);
            proj += sp.med;
            free(w); free(x); free(ws); free(bias); free(out); free(cs); free(wd);
        }
        printf("%-4d model floor = projections + %d x read R (+barrier) = %.3f ms; "
               "%d x layer + projections = %.3f ms\n",
               nt, layers, proj + layers * st[M_READ].med, layers, proj + layers * st[M_LAYER].med);
    }
    return 0;
}
