/* Depthwise convolution with the dequantizing epilogue (dynamic quantization), a run of output
 * pixels, channels [c0, c1): the portable definition the SIMD dequant kernels reproduce bit for
 * bit (calling conventions: qe_dwconv_params.h).
 *
 *   acc[c] = bias[c] + Σ_t x_t[c]·w[t][c]      (uint32 wrapping; bias = −z_a·Σ_t w[t][c])
 *   y[c]   = float32(acc[c])·mult[c] (+ fbias[c] when there is a bias)        float32
 *
 * with mult[c] = float32(s_a·s_w[c]): the GEMM's F32 epilogue (qe_gemm_epilogue__scalar.h) and
 * qengine.reference.gemm.dequant_epilogue_ref, operation for operation. Weights use
 * QE_DW_LAYOUT_I32. The true accumulator Σ_t (x − z_a)·w must fit int32 (≤ 65793 taps).
 */
#ifndef QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C1__SCALAR_H
#define QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C1__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c1__scalar.h"

/* one pixel, one channel: shared with the AVX2 kernel's channel tail */
static inline float qe_dwconv_dequant_c1_scalar(size_t c, size_t ntaps,
                                                const uint8_t *const *taps, size_t off,
                                                const qe_dwconv_params *p) {
    const float y = (float)qe_dwconv_c1_acc(c, ntaps, taps, off, p) * p->mult[c];
    return p->fbias ? y + p->fbias[c] : y;
}

static void qe_u8_s8_dwconv_dequant_ukernel_c1__scalar(size_t c0, size_t c1, size_t npix,
                                                       size_t ntaps, const uint8_t *const *taps,
                                                       size_t step, const qe_dwconv_params *p,
                                                       float *out, size_t out_step) {
    for (size_t i = 0; i < npix; i++)
        for (size_t c = c0; c < c1; c++)
            out[i * out_step + c] = qe_dwconv_dequant_c1_scalar(c, ntaps, taps, i * step, p);
}

#endif
