/* MobileNetV2 (224) static int8 on one ISA, per layer shape, 1 thread: the depthwise convs
 * (qe_conv2d_dw) and the 1×1 convs (qe_gemm_ex straight over NHWC pixels, as _conv.conv1x1),
 * each checked byte for byte against the scalar record (extreme and random data).
 *   gcc -O3 -std=c11 -ffp-contract=off -fno-strict-aliasing -fopenmp -Wno-unused-function \
 *       -Iinclude bench/mnv2_split.c -o /tmp/mnv2_split -lm -lpthread && /tmp/mnv2_split 1
 * (argument: QE_ISA_* index, 1 = AVX2). Run it under the benchmark lock. */
#define _POSIX_C_SOURCE 200809L
#include "qengine/conv/qe_conv.h"
#include "qengine/conv/qe_dwconv.h"
#include "qengine/qe_threads_state.h"
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
#define REPS 15
static double med(double *t, int n){ for(int i=0;i<n;i++)for(int j=i+1;j<n;j++) if(t[j]<t[i]){double x=t[i];t[i]=t[j];t[j]=x;} return t[n/2]; }
typedef struct { int h, c, s; } dwl;      /* input size, channels, stride (3×3, pad 1) */
static const dwl DW[] = {{112,32,1},{112,96,2},{56,144,1},{56,144,2},{28,192,1},{28,192,1},{28,192,2},
  {14,384,1},{14,384,1},{14,384,1},{14,384,1},{14,576,1},{14,576,1},{14,576,2},{7,960,1},{7,960,1},{7,960,1}};
typedef struct { int hw, cin, cout; } pwl;
static const pwl PW[] = {{112,32,16},{112,16,96},{56,96,24},{56,24,144},{56,144,24},{56,24,144},{28,144,32},
  {28,32,192},{28,192,32},{28,32,192},{28,192,32},{28,32,192},{14,192,64},
  {14,64,384},{14,384,64},{14,64,384},{14,384,64},{14,64,384},{14,384,64},{14,64,384},{14,384,96},
  {14,96,576},{14,576,96},{14,96,576},{14,576,96},{14,96,576},{7,576,160},
  {7,160,960},{7,960,160},{7,160,960},{7,960,160},{7,160,960},{7,960,320},{7,320,1280}};
static uint8_t fill(int mode, size_t i){ return mode==0 ? (uint8_t)rand() : mode==1 ? 255 : (uint8_t)(i*7+3); }
int main(int argc, char **argv){
  qe_threads_state_init(); qengine_set_num_threads(1);
  int isa = argc > 1 ? atoi(argv[1]) : QE_ISA_AVX2;
  double tdw = 0, tpw = 0; int bad = 0;
  printf("dw: %s\n", qe_dwconv_ukernel_name(isa));
  for (size_t li = 0; li < sizeof(DW)/sizeof(DW[0]); li++) {
    const dwl *l = &DW[li];
    qe_conv_shape s = {1, l->h, l->h, l->c, 0, 0, l->c, 3, 3, l->s, l->s, 1, 1, 1, 1, l->c, 1, 1};
    s.oh = (l->h + 2 - 3)/l->s + 1; s.ow = s.oh;
    size_t nx = (size_t)l->h*l->h*l->c, ny = s.oh*s.ow*(size_t)l->c;
    uint8_t *x = malloc(nx), *y = malloc(ny), *y0 = malloc(ny);
    int32_t *w = malloc(9*4*l->c), *b = malloc(4*l->c); float *mu = malloc(4*l->c);
    double t[REPS];
    for (int mode = 0; mode < 3; mode++) {
      for (size_t i=0;i<nx;i++) x[i]=fill(mode,i);
      for (int i=0;i<9*l->c;i++) w[i]=(uint16_t)(int16_t)(mode==1 ? -128 : (int8_t)rand());
      for (int i=0;i<l->c;i++){ b[i]=rand()%40000-20000; mu[i]=mode==1 ? 1e-5f : 3e-4f*(1+i%5); }
      qe_dwconv_params p = {w, (size_t)l->c, b, mu, 5, 0, 255, QE_DW_LAYOUT_I32, NULL, 0, 0};
      qe_conv2d_dw(0, &s, x, 9, &p, y0, 1);
      if (qe_conv2d_dw(isa, &s, x, 9, &p, y, 1)) { printf("rc\n"); return 1; }
      if (memcmp(y, y0, ny)) { printf("DW MISMATCH layer %zu mode %d\n", li, mode); bad = 1; }
      if (mode == 0) { for (int i=0;i<REPS;i++){ double t0=now(); qe_conv2d_dw(isa, &s, x, 9, &p, y, 1); t[i]=now()-t0; }
        double tm = med(t, REPS); tdw += tm;
        printf("  dw %3dx%3d c%4d s%d %7.3f ms %6.1f GMAC/s\n", l->h, l->h, l->c, l->s, tm*1e3, ny*9.0/tm/1e9); }
    }
    free(x); free(y); free(y0); free(w); free(b); free(mu);
  }
  const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa), *r0 = qe_gemm_kernel_for_isa(0);
  printf("dw total %.3f ms\n1x1: %s\n", tdw*1e3, r->name);
  for (size_t li = 0; li < sizeof(PW)/sizeof(PW[0]); li++) {
    const pwl *l = &PW[li];
    size_t m = (size_t)l->hw*l->hw, k = l->cin, n = l->cout;
    uint8_t *x = malloc(m*k), *y = malloc(m*n), *y0 = malloc(m*n);
    int8_t *w = malloc(n*k);
    void *wd = aligned_alloc(64, (qe_gemm_packed_w_bytes(r,n,k)+63)/64*64), *wd0 = aligned_alloc(64, (qe_gemm_packed_w_bytes(r0,n,k)+63)/64*64);
    int32_t *cs = malloc(4*n), *cb = malloc(4*n); float *mul = malloc(4*n);
    double t[REPS];
    for (int mode = 0; mode < 3; mode++) {
      for (size_t i=0;i<m*k;i++) x[i]=fill(mode,i);
      for (size_t i=0;i<n*k;i++) w[i]=mode==1 ? -128 : (int8_t)rand();
      for (size_t j=0;j<n;j++){cb[j]=rand()%200000-100000; mul[j]=mode==1 ? 2e-7f : 2e-4f*(1+j%3);}
      qe_gemm_pack_weights(isa, n, k, w, k, wd, cs); qe_gemm_pack_weights(0, n, k, w, k, wd0, cs);
      qe_packed_w pw = {wd, cs, NULL, (int32_t)n, (int32_t)k, (int32_t)qe_gemm_round_up(k, r->kpad), isa};
      qe_packed_w pw0 = {wd0, cs, NULL, (int32_t)n, (int32_t)k, (int32_t)qe_gemm_round_up(k, r0->kpad), 0};
      qe_gemm_epilogue ep = {0}; ep.kind = QE_EPI_U8; ep.col_bias = cb; ep.multiplier = mul; ep.out_zp = 3; ep.lo = 0; ep.hi = 255;
      qe_gemm_ex(0, m, x, k, &pw0, &ep, NULL, y0, n, 1, NULL, 0);
      if (qe_gemm_ex(isa, m, x, k, &pw, &ep, NULL, y, n, 1, NULL, 0)) { printf("rc\n"); return 1; }
      if (memcmp(y, y0, m*n)) { printf("1x1 MISMATCH layer %zu mode %d\n", li, mode); bad = 1; }
      if (mode == 0) { for (int i=0;i<REPS;i++){ double t0=now(); qe_gemm_ex(isa, m, x, k, &pw, &ep, NULL, y, n, 1, NULL, 0); t[i]=now()-t0; }
        double tm = med(t, REPS); tpw += tm;
        printf("  1x1 %3d² %4d->%4d %7.3f ms %6.1f GMAC/s\n", l->hw, l->cin, l->cout, tm*1e3, (double)m*n*k/tm/1e9); }
    }
    free(x); free(y); free(y0); free(w); free(wd); free(wd0); free(cs); free(cb); free(mul);
  }
  printf("1x1 total %.3f ms\n%s\n", tpw*1e3, bad ? "MISMATCHES" : "all bytes = scalar");
  return bad;
}
