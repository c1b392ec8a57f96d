/* u8 × int4 → f32, up to 4 rows × one 16-row W panel, AArch64 dot product; equals the scalar
 * twin bit for bit. A 64-byte block is four 16-byte vectors of [4 rows][4 K]; low nibbles
 * (AND 15) are K 8b..8b+3 as unsigned w + 8, high nibbles (u8 shift by 4) K 8b+4..8b+7. Both
 * operands are unsigned, so udot (u8 × u8 → u32) is exact with no sign trick; the u32 sums are
 * reinterpreted as wrapping int32 like the scalar twin's. Multiplies and adds stay separate
 * (vmulq/vaddq, never vfmaq): the epilogue's two roundings. */
#ifndef QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__NEONDOT_H
#define QE_U8_S4_GEMM_DEQUANT_UKERNEL_4X16C8__NEONDOT_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_w4_params.h"

#if QE_HAVE_NEONDOT
QE_TARGET_NEONDOT
static void qe_u8_s4_gemm_dequant_ukernel_4x16c8__neondot(size_t mr, const qe_w4_tile *t) {
    const uint8x16_t m4 = vdupq_n_u8(15);
    const size_t ng = t->ng, gb = t->gb;
    float32x4_t y[QE_W4_MR][4];   /* set by group 0 (ng ≥ 1); zeroed for the compiler's sake */
    for (int i = 0; i < QE_W4_MR; i++)
        for (int q = 0; q < 4; q++) y[i][q] = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < ng; g++) {
        const uint8_t *pw = t->w + g * gb * 64;
        uint32x4_t acc[QE_W4_MR][4];
        for (size_t i = 0; i < mr; i++)
            for (int q = 0; q < 4; q++) acc[i][q] = vdupq_n_u32(0);
        for (size_t bb = 0; bb < gb; bb++, pw += 64) {
            const size_t k0 = (g * gb + bb) * 8;
            uint8x16_t lo[4], hi[4];
            for (int q = 0; q < 4; q++) {
                const uint8x16_t v = vld1q_u8(pw + 16 * q);
                lo[q] = vandq_u8(v, m4);
                hi[q] = vshrq_n_u8(v, 4);
            }
            for (size_t i = 0; i < mr; i++) {
                uint32_t a0, a1;
                memcpy(&a0, t->a + i * t->lda + k0, 4);
                memcpy(&a1, t->a + i * t->lda + k0 + 4, 4);
                const uint8x16_t va0 = vreinterpretq_u8_u32(vdupq_n_u32(a0));
                const uint8x16_t va1 = vreinterpretq_u8_u32(vdupq_n_u32(a1));
                for (int q = 0; q < 4; q++) {
                    acc[i][q] = vdotq_u32(acc[i][q], lo[q], va0);
                    acc[i][q] = vdotq_u32(acc[i][q], hi[q], va1);
                }
            }
        }
        for (size_t i = 0; i < mr; i++) {
            const int32x4_t rt = vdupq_n_s32(t->rterm[i * ng + g]);
            const int32x4_t za = vdupq_n_s32(t->a_zp ? t->a_zp[i * t->row_step] : 0);
            const float32x4_t sa = vdupq_n_f32(t->acc_out ? 0.0f : t->a_scale[i * t->row_step]);
            for (int q = 0; q < 4; q++) {
                const int32x4_t cs = vld1q_s32(t->colsum + g * 16 + 4 * q);
                const int32x4_t v = vsubq_s32(vaddq_s32(vreinterpretq_s32_u32(acc[i][q]), rt),
                                              vmulq_s32(za, cs));
                if (t->acc_out) {   /* integer result: the groups' sums added in L1 */
                    int32_t *o = t->acc_out + i * t->acc_ld + 4 * q;
                    vst1q_s32(o, g ? vaddq_s32(vld1q_s32(o), v) : v);
                    continue;
                }
                const float32x4_t c = vmulq_f32(sa, vld1q_f32(t->scale + g * 16 + 4 * q));
                const float32x4_t p = vmulq_f32(vcvtq_f32_s32(v), c);
                y[i][q] = g ? vaddq_f32(y[i][q], p) : p;
            }
        }
    }
    if (t->acc_out) return;
    for (size_t i = 0; i < mr; i++) {
        float yv[16];
        for (int q = 0; q < 4; q++) vst1q_f32(yv + 4 * q, y[i][q]);
        float *o = t->out + i * t->ldc;
        for (size_t j = 0; j < t->nr; j++) {
            float v = yv[j];
            if (t->bias) v = v + t->bias[j];
            o[j] = t->accumulate ? o[j] + v : v;
        }
    }
}
#endif

#endif
