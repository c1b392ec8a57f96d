/* Parameters shared by the depthwise microkernels (one file per ISA) and qe_dwconv.h. */
#ifndef QE_DWCONV_PARAMS_H
#define QE_DWCONV_PARAMS_H

#include <stddef.h>
#include <stdint.h>

typedef struct qe_dwconv_params {
    const int32_t *w;          /* [ntaps][wstride]: (uint16_t)w8 in the low half, 0 above */
    size_t wstride;            /* ≥ channels */
    const int32_t *bias;       /* [channels]: bias_q − z_a·Σ_t w[t][c] (wrapping int32) */
    const float *mult;         /* [channels]: float32(s_a·s_w[c] / s_y) */
    int32_t zp, lo, hi;        /* output zero point, clamp range (output range ∩ fused act.) */
} qe_dwconv_params;

typedef void (*qe_dwconv_ukernel_fn)(size_t channels, size_t ntaps, const uint8_t *const *taps,
                                     const qe_dwconv_params *p, uint8_t *out);

#endif
