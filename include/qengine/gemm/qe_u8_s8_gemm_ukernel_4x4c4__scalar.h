/* u8 × s8 → int32 tile, 4 rows × 4 columns, K in groups of 4, portable C: the always-compiled
 * twin of every SIMD kernel (same packing family, same tile contract). */
#ifndef QE_U8_S8_GEMM_UKERNEL_4X4C4__SCALAR_H
#define QE_U8_S8_GEMM_UKERNEL_4X4C4__SCALAR_H

#include "qe_gemm_params.h"

static void qe_u8_s8_gemm_ukernel_4x4c4__scalar(size_t mr, size_t kg, const void *a,
                                                const void *w, int32_t *c, int acc_in) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    int32_t acc[4][4] = {{0}};
    for (size_t g = 0; g < kg; g++) {
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < 4; j++)
                for (size_t q = 0; q < 4; q++)
                    acc[i][j] += (int32_t)pa[i * 4 + q] * (int32_t)pw[j * 4 + q];
        pa += 16;
        pw += 16;
    }
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < 4; j++)
            c[i * 4 + j] = acc_in ? c[i * 4 + j] + acc[i][j] : acc[i][j];
}

#endif
