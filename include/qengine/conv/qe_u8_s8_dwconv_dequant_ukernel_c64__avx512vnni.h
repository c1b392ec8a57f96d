/* Depthwise convolution with the dequantizing epilogue, AVX-512 VNNI: 64 channels per step,
 * several output pixels at a time. The accumulation is the static kernel's
 * (qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h: QE_DW_LAYOUT_C64, lane 4L + j of acc[q] =
 * channel 16L + 4q + j, bias in that order, the same sharing between neighbouring pixels). The
 * four accumulators are then put back in channel order — a 4×4 transpose of their 128-bit
 * lanes, pure data movement — and each channel gets float32(acc)·mult (+ fbias), the
 * operations of the scalar twin qe_u8_s8_dwconv_dequant_ukernel_c1__scalar.h, so the same bits.
 * mult / fbias are in channel order; a channel tail (< 64) masks the loads and the stores.
 */
#ifndef QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C64__AVX512VNNI_H
#define QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C64__AVX512VNNI_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h"

#if QE_HAVE_X86_SIMD
/* 128-bit lane L of a[q] = channels 16L + 4q .. +3  ->  o[q] lane l = channel 16q + l */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_unpermute(const __m512i a[4], __m512i o[4]) {
    const __m512i t0 = _mm512_shuffle_i32x4(a[0], a[1], 0x44);   /* a0.0 a0.1 a1.0 a1.1 */
    const __m512i t1 = _mm512_shuffle_i32x4(a[0], a[1], 0xEE);   /* a0.2 a0.3 a1.2 a1.3 */
    const __m512i t2 = _mm512_shuffle_i32x4(a[2], a[3], 0x44);
    const __m512i t3 = _mm512_shuffle_i32x4(a[2], a[3], 0xEE);
    o[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);                  /* a0.0 a1.0 a2.0 a3.0 */
    o[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
    o[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    o[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_dequant_c64_store(const int np, size_t cb, __mmask64 m, const qe_dwconv_params *p,
                                 __m512i acc[][4], float *out, size_t out_step) {
    for (int i = 0; i < np; i++) {
        __m512i a[4];
        qe_dwconv_c64_unpermute(acc[i], a);
        float *o = out + (size_t)i * out_step + cb;
        for (int q = 0; q < 4; q++) {
            const __mmask16 k = (__mmask16)(m >> (16 * q));
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a[q]),
                                     _mm512_maskz_loadu_ps(k, p->mult + cb + 16 * q));
            if (p->fbias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, p->fbias + cb + 16 * q));
            _mm512_mask_storeu_ps(o + 16 * q, k, v);
        }
    }
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_dequant_c64_pixels(const int np, size_t cb, __mmask64 m, size_t ntaps,
                                  const uint8_t *const *taps, size_t off, size_t step,
                                  const qe_dwconv_params *p, float *out, size_t out_step) {
    __m512i acc[3][4];
    qe_dwconv_v512_acc(np, cb, m, ntaps, taps, off, step, p, acc);
    qe_dwconv_dequant_c64_store(np, cb, m, p, acc, out, out_step);
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_dequant_c64_pairs(const int npair, size_t cb, __mmask64 m, size_t kh,
                                 const uint8_t *const *taps, size_t off, size_t step,
                                 const qe_dwconv_params *p, float *out, size_t out_step) {
    __m512i acc[4][4];
    qe_dwconv_v512_acc_k3(npair, cb, m, kh, taps, off, step, p, acc);
    qe_dwconv_dequant_c64_store(2 * npair, cb, m, p, acc, out, out_step);
}

QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_dequant_ukernel_c64__avx512vnni(size_t c0, size_t c1, size_t npix,
                                                            size_t ntaps,
                                                            const uint8_t *const *taps,
                                                            size_t step,
                                                            const qe_dwconv_params *p,
                                                            float *out, size_t out_step) {
    const int shares = qe_dwconv_c64_shares(npix, taps, step, p);
    for (size_t cb = c0; cb < c1; cb += 64) {   /* c0 is a multiple of 64 (driver) */
        const __mmask64 m = c1 - cb >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (c1 - cb)) - 1;
        size_t i = 0;
        if (shares == 1) {   /* (the stride-2 sharing is left to the static kernel) */
            for (; i + 4 <= npix; i += 4)
                qe_dwconv_dequant_c64_pairs(2, cb, m, ntaps / 3, taps, i * step, step, p,
                                            out + i * out_step, out_step);
            if (npix - i >= 2) {
                qe_dwconv_dequant_c64_pairs(1, cb, m, ntaps / 3, taps, i * step, step, p,
                                            out + i * out_step, out_step);
                i += 2;
            }
        }
        for (; i + 3 <= npix; i += 3)
            qe_dwconv_dequant_c64_pixels(3, cb, m, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
        if (npix - i == 2)
            qe_dwconv_dequant_c64_pixels(2, cb, m, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
        else if (npix - i == 1)
            qe_dwconv_dequant_c64_pixels(1, cb, m, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
    }
}
#endif

#endif
