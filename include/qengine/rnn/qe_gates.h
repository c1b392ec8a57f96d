/* Gate-math dispatch: one table per ISA, filled from the per-ISA kernel files. */
#ifndef QE_GATES_H
#define QE_GATES_H

#include "qe_f32_gates__scalar.h"
#include "qe_f32_gates__avx2.h"
#include "qe_f32_gates__avx512.h"

typedef void (*qe_vunary_fn)(size_t, const float*, float*);
typedef void (*qe_lstm_cell_fn)(size_t, const float*, const float*, const float*, const float*,
                                float*, float*);
typedef void (*qe_gru_zr_fn)(size_t, float*, float*);
typedef void (*qe_gru_h_fn)(size_t, const float*, const float*, const float*, const float*,
                            const float*, float*);

typedef struct {
    qe_vunary_fn sigmoid, tanh;
    qe_lstm_cell_fn lstm_cell;
    qe_gru_zr_fn gru_zr;
    qe_gru_h_fn gru_h;
} qe_gates_ops;

static qe_gates_ops qe_gates_for_isa(int isa) {
    qe_gates_ops o = {qe_f32_vsigmoid__scalar, qe_f32_vtanh__scalar, qe_f32_lstm_cell__scalar,
                      qe_f32_gru_zr__scalar, qe_f32_gru_h__scalar};
#ifdef QE_HAVE_X86_SIMD
    if (isa == QE_ISA_AVX2) {
        qe_gates_ops a = {qe_f32_vsigmoid__avx2, qe_f32_vtanh__avx2, qe_f32_lstm_cell__avx2,
                          qe_f32_gru_zr__avx2, qe_f32_gru_h__avx2};
        o = a;
    } else if (isa == QE_ISA_AVX512VNNI) {
        qe_gates_ops a = {qe_f32_vsigmoid__avx512, qe_f32_vtanh__avx512, qe_f32_lstm_cell__avx512,
                          qe_f32_gru_zr__avx512, qe_f32_gru_h__avx512};
        o = a;
    }
#endif
    (void)isa;
    return o;
}

#endif
