/* Depthwise convolution with the dequantizing epilogue, AVX-512 VNNI: 64 channels per step, up
 * to 3 output pixels at a time. The accumulation is the static kernel's
 * (qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h: QE_DW_LAYOUT_C64, acc[k] lane j = channel
 * 4j + k, bias in that order). The four accumulators are then put back in channel order — an
 * interleave of 32-bit lanes (unpack 32, unpack 64, then two rounds of 128-bit lane shuffles),
 * pure data movement — and each channel gets float32(acc)·mult (+ fbias), the operations of the
 * scalar twin qe_u8_s8_dwconv_dequant_ukernel_c1__scalar.h, so the same bits. mult / fbias are
 * in channel order; a channel tail (< 64) masks the loads and the stores.
 */
#ifndef QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C64__AVX512VNNI_H
#define QE_U8_S8_DWCONV_DEQUANT_UKERNEL_C64__AVX512VNNI_H

#include "../qe_target.h"
#include "qe_dwconv_params.h"
#include "qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h"

#if QE_HAVE_X86_SIMD
/* a[k] lane j = channel 4j + k  ->  o[q] lane l = channel 16q + l */
QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_c64_unpermute(const __m512i a[4], __m512i o[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    /* 128-bit lane L of u[e] holds channels 16L + 4e .. 16L + 4e + 3 */
    const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    const __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
    const __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
    o[0] = _mm512_shuffle_i32x4(v0, v1, 0x88);
    o[1] = _mm512_shuffle_i32x4(v0, v1, 0xDD);
    o[2] = _mm512_shuffle_i32x4(v2, v3, 0x88);
    o[3] = _mm512_shuffle_i32x4(v2, v3, 0xDD);
}

QE_TARGET_AVX512VNNI QE_INLINE
void qe_dwconv_dequant_c64_pixels(const int np, size_t cb, size_t nc, size_t ntaps,
                                  const uint8_t *const *taps, size_t off, size_t step,
                                  const qe_dwconv_params *p, float *out, size_t out_step) {
    const __mmask64 m = nc >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << nc) - 1;
    __m512i acc[3][4];
    qe_dwconv_c64_acc(np, cb, m, ntaps, taps, off, step, p, acc);
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

QE_TARGET_AVX512VNNI
static void qe_u8_s8_dwconv_dequant_ukernel_c64__avx512vnni(size_t c0, size_t c1, size_t npix,
                                                            size_t ntaps,
                                                            const uint8_t *const *taps,
                                                            size_t step,
                                                            const qe_dwconv_params *p,
                                                            float *out, size_t out_step) {
    for (size_t cb = c0; cb < c1; cb += 64) {   /* c0 is a multiple of 64 (driver) */
        const size_t nc = c1 - cb;
        size_t i = 0;
        for (; i + 3 <= npix; i += 3)
            qe_dwconv_dequant_c64_pixels(3, cb, nc, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
        if (npix - i == 2)
            qe_dwconv_dequant_c64_pixels(2, cb, nc, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
        else if (npix - i == 1)
            qe_dwconv_dequant_c64_pixels(1, cb, nc, ntaps, taps, i * step, step, p,
                                         out + i * out_step, out_step);
    }
}
#endif

#endif
