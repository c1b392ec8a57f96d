/* Static int8 conv split per ResNet-18 (224) conv shape on one ISA: the whole qe_conv2d_gemm call
 * (1 thread) next to its parts run separately over all pixels: im2col into packed A, the int32
 * microkernel, the epilogue; also checks the call's bytes against the scalar record.
 *   gcc -O3 -std=c11 -ffp-contract=off -fno-strict-aliasing -fopenmp -Wno-unused-function \
 *       -Iinclude bench/conv_split.c -o /tmp/conv_split -lm -lpthread && /tmp/conv_split 1
 * (argument: QE_ISA_* index, 1 = AVX2). Run it under the benchmark lock. */
#define _POSIX_C_SOURCE 200809L
/* Per-layer split of the static int8 conv on one ISA: whole call vs im2col pack, kernel, epilogue. */
#include "qengine/conv/qe_conv.h"
#include "qengine/qe_threads_state.h"
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
typedef struct { const char *name; int h, c, cout, k, s, p, count; } layer;
static const layer L[] = {
  {"conv1 7x7s2", 224, 3, 64, 7, 2, 3, 1},
  {"l1 3x3 64", 56, 64, 64, 3, 1, 1, 4},
  {"l2.0 3x3s2", 56, 64, 128, 3, 2, 1, 1},
  {"l2 3x3 128", 28, 128, 128, 3, 1, 1, 3},
  {"l2 ds 1x1s2", 56, 64, 128, 1, 2, 0, 1},
  {"l3.0 3x3s2", 28, 128, 256, 3, 2, 1, 1},
  {"l3 3x3 256", 14, 256, 256, 3, 1, 1, 3},
  {"l3 ds 1x1s2", 28, 128, 256, 1, 2, 0, 1},
  {"l4.0 3x3s2", 14, 256, 512, 3, 2, 1, 1},
  {"l4 3x3 512", 7, 512, 512, 3, 1, 1, 3},
  {"l4 ds 1x1s2", 14, 256, 512, 1, 2, 0, 1},
};
#define REPS 7
static double med(double *t, int n){ for(int i=0;i<n;i++)for(int j=i+1;j<n;j++) if(t[j]<t[i]){double x=t[i];t[i]=t[j];t[j]=x;} return t[n/2]; }
int main(int argc, char **argv){
  qe_threads_state_init(); qengine_set_num_threads(1);
  int isa = argc > 1 ? atoi(argv[1]) : QE_ISA_AVX2;
  const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa);
  printf("%s\n%-14s %8s %8s | %7s %7s %7s %7s | %6s\n", r->name, "layer", "MACs(M)", "total", "pack", "kernel", "epi", "sum", "kGOPS");
  double tot[5] = {0};
  for (size_t li = 0; li < sizeof(L)/sizeof(L[0]); li++) {
    const layer *l = &L[li];
    qe_conv_shape s = {1, l->h, l->h, l->c, 0, 0, l->cout, l->k, l->k, l->s, l->s, 1, 1, l->p, l->p, 1, l->c, l->cout};
    s.oh = (l->h + 2*l->p - l->k)/l->s + 1; s.ow = s.oh;
    size_t k = l->k*l->k*l->c, m = s.oh*s.ow, n = l->cout;
    uint8_t *x = malloc(l->h*l->h*l->c); for (size_t i=0;i<(size_t)l->h*l->h*l->c;i++) x[i]=rand();
    int8_t *w = malloc(n*k); for (size_t i=0;i<n*k;i++) w[i]=rand();
    void *wd = aligned_alloc(64, (qe_gemm_packed_w_bytes(r,n,k)+63)/64*64); int32_t *cs = malloc(4*n);
    qe_gemm_pack_weights(isa, n, k, w, k, wd, cs);
    qe_packed_w pw = {wd, cs, NULL, (int32_t)n, (int32_t)k, (int32_t)qe_gemm_round_up(k, r->kpad), isa};
    int32_t *cb = malloc(4*n); float *mul = malloc(4*n);
    for (size_t j=0;j<n;j++){cb[j]=rand()%20000-10000; mul[j]=1e-4f;}
    qe_gemm_epilogue ep = {0}; ep.kind = QE_EPI_U8; ep.col_bias = cb; ep.multiplier = mul; ep.out_zp = 3; ep.lo = 0; ep.hi = 255;
    uint8_t *y = malloc(m*n);
    double t[REPS], tt, tp, tk, te;
    for (int i=0;i<REPS;i++){ double t0=now(); int rc = qe_conv2d_gemm(isa, &s, x, 7, &pw, &ep, y, 1); if (rc) printf("rc %d\n", rc); t[i]=now()-t0; } tt=med(t,REPS);
    /* split: pack all pixels in blocks of 8 panels into one buffer (then kernel, then epilogue) */
    size_t kp = pw.kp, mp = (m + r->mr - 1)/r->mr, apanel = r->mr*kp*r->elem;
    uint8_t *ap = aligned_alloc(64, mp*apanel + 64), *row = aligned_alloc(64, QE_GEMM_MR_MAX*kp+64), *zrow = malloc(l->c);
    memset(zrow, 7, l->c);
    int32_t *ct = aligned_alloc(64, mp*r->mr*qe_gemm_round_up(n, r->nr)*4);
    size_t blk = 8*r->mr;
    for (int i=0;i<REPS;i++){ double t0=now();
      for (size_t m0=0;m0<m;m0+=blk) qe_conv_im2col_pack(r,&s,x,zrow,0,m0,m-m0<blk?m-m0:blk,kp,ap+(m0/r->mr)*apanel,row);
      t[i]=now()-t0; } tp=med(t,REPS);
    size_t npn = (n + r->nr - 1)/r->nr, wpanel = r->nr*kp*r->elem;
    for (int i=0;i<REPS;i++){ double t0=now();
      for (size_t pm=0;pm<mp;pm+=8) for (size_t pn=0;pn<npn;pn++) for (size_t q=pm;q<pm+8&&q<mp;q++)
        r->ukernel(m-q*r->mr<(size_t)r->mr?m-q*r->mr:(size_t)r->mr, kp/r->kr, ap+q*apanel, (char*)wd+pn*wpanel, ct+(q*npn+pn)*r->mr*r->nr, 0);
      t[i]=now()-t0; } tk=med(t,REPS);
    for (int i=0;i<REPS;i++){ double t0=now();
      for (size_t q=0;q<mp;q++) for (size_t pn=0;pn<npn;pn++){
        size_t mr = m-q*r->mr<(size_t)r->mr?m-q*r->mr:(size_t)r->mr, nr = n-pn*r->nr<(size_t)r->nr?n-pn*r->nr:(size_t)r->nr;
        qe_gemm_tile tile = {ct+(q*npn+pn)*r->mr*r->nr, (size_t)r->nr, mr, nr, q*r->mr, pn*r->nr, NULL};
        r->epilogue(&tile, &pw, &ep, y, n);
      }
      t[i]=now()-t0; } te=med(t,REPS);
    { /* exactness vs the scalar record */
      const qe_gemm_kernel_rec *r0 = qe_gemm_kernel_for_isa(0);
      void *wd0 = aligned_alloc(64, (qe_gemm_packed_w_bytes(r0,n,k)+63)/64*64); int32_t *cs0 = malloc(4*n);
      qe_gemm_pack_weights(0, n, k, w, k, wd0, cs0);
      qe_packed_w pw0 = {wd0, cs0, NULL, (int32_t)n, (int32_t)k, (int32_t)qe_gemm_round_up(k, r0->kpad), 0};
      uint8_t *y0 = malloc(m*n);
      qe_conv2d_gemm(0, &s, x, 7, &pw0, &ep, y0, 1); qe_conv2d_gemm(isa, &s, x, 7, &pw, &ep, y, 1);
      if (memcmp(y0, y, m*n)) printf("MISMATCH vs scalar\n");
      free(wd0); free(cs0); free(y0);
    }
    double macs = (double)m*n*k;
    printf("%-14s %8.1f %8.3f | %7.3f %7.3f %7.3f %7.3f | %6.1f  x%d\n", l->name, macs/1e6, tt*1e3, tp*1e3, tk*1e3, te*1e3, (tp+tk+te)*1e3, 2*macs/tk/1e9, l->count);
    tot[0]+=tt*l->count; tot[1]+=tp*l->count; tot[2]+=tk*l->count; tot[3]+=te*l->count;
    free(x); free(w); free(wd); free(cs); free(cb); free(mul); free(y); free(ap); free(row); free(zrow); free(ct);
  }
  printf("%-14s %8s %8.3f | %7.3f %7.3f %7.3f  (weighted by count, ms)\n", "TOTAL", "", tot[0]*1e3, tot[1]*1e3, tot[2]*1e3, tot[3]*1e3);
  return 0;
}
