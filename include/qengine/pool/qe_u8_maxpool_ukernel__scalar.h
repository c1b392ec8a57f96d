/* Max pooling of one output pixel, all channels: out[c] = max_t taps[t][c] over the taps that lie
 * inside the input (padding never wins a max, as in ONNX MaxPool). Integer-only and exact; the
 * channel loop is plain enough for the compiler to vectorize at the baseline ISA (pmaxub). */
#ifndef QE_U8_MAXPOOL_UKERNEL__SCALAR_H
#define QE_U8_MAXPOOL_UKERNEL__SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static void qe_u8_maxpool_ukernel__scalar(size_t channels, size_t ntaps,
                                          const uint8_t *const *taps, uint8_t *out) {
    if (ntaps == 0) { memset(out, 0, channels); return; }
    memcpy(out, taps[0], channels);
    for (size_t t = 1; t < ntaps; t++) {
        const uint8_t *x = taps[t];
        for (size_t c = 0; c < channels; c++) out[c] = x[c] > out[c] ? x[c] : out[c];
    }
}

#endif
