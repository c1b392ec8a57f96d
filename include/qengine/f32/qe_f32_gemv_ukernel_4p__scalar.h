/* FP32 GEMV over up to 4 weight panels, portable twin.
 *
 *   y[p·NR + c] = bias[p·NR + c] + Σ_{i<k} x[i] · w[p·pstride + i·NR + c],  p < np ≤ 4
 *
 * w are panels packed k × NR as the transposed convolution tile reads them
 * (qe_f32_conv_pack_w_pc); NR is the ISA's pc_nr (scalar 8, AVX2 16, AVX-512 32). One fused
 * multiply-add chain per output from the bias (0 without one) in increasing i: the same bits as
 * the pc kernel computing that row, so batch 1 (this kernel) and batch > 1 (the pc kernel) of
 * a recurrent layer agree, on every ISA. */
#ifndef QE_F32_GEMV_UKERNEL_4P__SCALAR_H
#define QE_F32_GEMV_UKERNEL_4P__SCALAR_H

#include <math.h>
#include <stddef.h>

typedef void (*qe_f32_gemv_ukernel_fn)(size_t np, size_t k, const float *x, const float *w,
                                       size_t pstride, const float *bias, float *y);

static void qe_f32_gemv_ukernel_4p__scalar(size_t np, size_t k, const float *x, const float *w,
                                           size_t pstride, const float *bias, float *y) {
    enum { NR = 8 };
    for (size_t p = 0; p < np; p++) {
        float acc[NR];
        for (size_t c = 0; c < NR; c++) acc[c] = bias ? bias[p * NR + c] : 0.0f;
        const float *wp = w + p * pstride;
        for (size_t i = 0; i < k; i++)
            for (size_t c = 0; c < NR; c++) acc[c] = fmaf(x[i], wp[i * NR + c], acc[c]);
        for (size_t c = 0; c < NR; c++) y[p * NR + c] = acc[c];
    }
}

#endif
