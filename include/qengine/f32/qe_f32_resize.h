/* One axis of a separable Resize (linear, cubic: a few taps per output index), float32.
 *
 * x is viewed as [outer, n_in, inner] and y as [outer, n_out, inner]; output index j reads the
 * input indices idx[j·k + t] with weights w[j·k + t], t < k, summed in the order t = 0, 1, ...
 * as products added one at a time — exactly what the NumPy path of qengine/ops/resize.py does
 * (term = x[idx] · w; out += term), so the two give the same bits. Why compiled: NumPy's gather
 * along an axis (np.take) made a U-Net's bilinear upsampling the slowest node of the model.
 */
#ifndef QE_F32_RESIZE_H
#define QE_F32_RESIZE_H

#include <stddef.h>
#include <stdint.h>

static void qe_f32_resize_axis(size_t outer, size_t n_in, size_t inner, size_t n_out, size_t k,
                               const int64_t* idx, const float* w, const float* x, float* y) {
    if (inner == 1) {           /* the last axis: one value per tap, no inner loop */
        for (size_t o = 0; o < outer; o++, x += n_in, y += n_out)
            for (size_t j = 0; j < n_out; j++) {
                const int64_t* ij = idx + j * k;
                const float* wj = w + j * k;
                float acc = x[ij[0]] * wj[0];
                for (size_t u = 1; u < k; u++) acc = acc + x[ij[u]] * wj[u];
                y[j] = acc;
            }
        return;
    }
    for (size_t o = 0; o < outer; o++) {
        const float* xo = x + o * n_in * inner;
        float* yo = y + o * n_out * inner;
        for (size_t j = 0; j < n_out; j++) {
            float* d = yo + j * inner;
            const int64_t* ij = idx + j * k;
            const float* wj = w + j * k;
            const float* a = xo + (size_t)ij[0] * inner;
            const float w0 = wj[0];
            for (size_t t = 0; t < inner; t++) d[t] = a[t] * w0;
            for (size_t u = 1; u < k; u++) {
                const float* b = xo + (size_t)ij[u] * inner;
                const float wu = wj[u];
                for (size_t t = 0; t < inner; t++) d[t] = d[t] + b[t] * wu;
            }
        }
    }
}

#endif
