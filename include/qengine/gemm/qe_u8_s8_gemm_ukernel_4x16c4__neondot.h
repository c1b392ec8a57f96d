/* u8 × s8 → int32 tile, 4 rows × 16 columns, K in groups of 4, AArch64 dot product (sdot).
 *
 * sdot multiplies s8 × s8, so A is flipped to s8 in the register (a ^ 0x80 = a − 128) and
 *   Σ a·w = Σ (a − 128)·w + 128·Σ w,
 * with Σ w over the same K-groups accumulated by a second sdot against all-ones. Exact.
 * Not run on x86 build machines; kept simple so it compiles clean and stays obviously right.
 */
#ifndef QE_U8_S8_GEMM_UKERNEL_4X16C4__NEONDOT_H
#define QE_U8_S8_GEMM_UKERNEL_4X16C4__NEONDOT_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_params.h"

#if QE_HAVE_NEONDOT
QE_TARGET_NEONDOT
static void qe_u8_s8_gemm_ukernel_4x16c4__neondot(size_t mr, size_t kg, const void *a,
                                                  const void *w, int32_t *c, int acc_in) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    const int8x16_t ones = vdupq_n_s8(1);
    const uint8x16_t flip = vdupq_n_u8(0x80);
    int32x4_t acc[4][4], wsum[4];
    for (int j = 0; j < 4; j++) {
        wsum[j] = vdupq_n_s32(0);
        for (int i = 0; i < 4; i++) acc[i][j] = vdupq_n_s32(0);
    }
    for (size_t g = 0; g < kg; g++) {
        int8x16_t b[4];
        for (int j = 0; j < 4; j++) {
            b[j] = vld1q_s8(pw + 16 * j);
            wsum[j] = vdotq_s32(wsum[j], b[j], ones);
        }
        for (size_t i = 0; i < mr; i++) {
            uint32_t a4;
            memcpy(&a4, pa + 4 * i, 4);
            const int8x16_t va = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(a4)), flip));
            for (int j = 0; j < 4; j++) acc[i][j] = vdotq_s32(acc[i][j], b[j], va);
        }
        pa += 16;
        pw += 64;
    }
    for (size_t i = 0; i < mr; i++)
        for (int j = 0; j < 4; j++) {
            int32x4_t r = vaddq_s32(acc[i][j], vshlq_n_s32(wsum[j], 7));
            if (acc_in) r = vaddq_s32(r, vld1q_s32(c + 16 * i + 4 * j));
            vst1q_s32(c + 16 * i + 4 * j, r);
        }
}
#endif

#endif
