/* FP32 depthwise convolution / pooling microkernel interfaces (drivers: qe_f32_dwconv.h,
 * qe_f32_pool.h). One call covers n consecutive pixels of one channel's wide raster
 * (qe_f32_window.h): tap t of pixel j is x[off[t] + j].
 *
 * dwconv:  y[j] = clamp(bias + Σ_t w[t]·x[off[t] + j])  — one FMA chain per pixel in tap order
 *          starting at the bias, clamped as the convolution is (qe_f32_conv_params.h);
 * maxpool: y[j] = max over t of x[off[t] + j], NaN if any tap is NaN;
 * sumpool: y[j] = x[off[0] + j] + x[off[1] + j] + ... in tap order (average pooling divides
 *          afterwards, in the driver).
 * The same operations in the same order on every ISA: outputs are bit-identical across ISAs.
 */
#ifndef QE_F32_DWCONV_PARAMS_H
#define QE_F32_DWCONV_PARAMS_H

#include <stddef.h>
#include "qe_f32_conv_params.h"

typedef void (*qe_f32_dwconv_ukernel_fn)(size_t n, size_t ntaps, const float *x,
                                         const ptrdiff_t *off, const float *w, float bias,
                                         float *y, const qe_f32_minmax *p);
typedef void (*qe_f32_pool_ukernel_fn)(size_t n, size_t ntaps, const float *x,
                                       const ptrdiff_t *off, float *y);

#endif
