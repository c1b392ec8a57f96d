/* One activation row × up to 4 packed 32-column W panels → f32, AVX-512 VNNI, dequantized in
 * registers: the K loop of qe_u8_s8_gemv_ukernel_1x4p__avx512vnni, then the F32 epilogue on each
 * accumulator exactly as the 12×32 dequantizing kernel does it (qe_dequant16__avx512vnni), so it
 * equals gemv + qe_gemm_epilogue__avx512 bit for bit. The batch-1 LSTM/GRU step: every R panel
 * goes straight from the dot products into the gate pre-activations.
 * q->nr ≤ np·32 columns are written; row 0 reads a_zp[0] / a_scale[0].
 */
#ifndef QE_U8_S8_GEMV_DEQUANT_UKERNEL_1X4P__AVX512VNNI_H
#define QE_U8_S8_GEMV_DEQUANT_UKERNEL_1X4P__AVX512VNNI_H

#include "qe_u8_s8_gemv_ukernel_1x4p__avx512vnni.h"
#include "qe_u8_s8_gemm_dequant_ukernel_12x32c4__avx512vnni.h"

#if QE_HAVE_X86_SIMD
#define QE_GEMV_VNNI_DEQUANT_BODY(NP)                                                        \
    do {                                                                                     \
        _Pragma("GCC unroll 8") for (int p = 0; p < 2 * NP; p++)                             \
            _mm_prefetch((const char *)(q->out + 16 * p), _MM_HINT_T0);                      \
        QE_GEMV_VNNI_ACCUMULATE(NP)                                                          \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)                                 \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                            \
                const size_t j = 32 * p + 16 * h;                                            \
                const __mmask16 k = q->nr >= j + 16 ? (__mmask16)0xffff                      \
                                  : q->nr <= j ? (__mmask16)0                                \
                                  : (__mmask16)((1u << (q->nr - j)) - 1);                    \
                qe_dequant16__avx512vnni(acc[p][h], za, _mm512_maskz_loadu_epi32(k, q->colsum + j), \
                                         sa, _mm512_maskz_loadu_ps(k, q->w_scale + j),       \
                                         q->bias ? q->bias + j : NULL, q->accumulate,        \
                                         q->out + j, k);                                     \
            }                                                                                \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_gemv_dequant_ukernel_1x4p__avx512vnni(size_t np, size_t kg, const void *a,
                                                           size_t a_stride, const void *w,
                                                           size_t wpanel,
                                                           const qe_gemm_dequant_tile *q) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    const __m512i za = _mm512_set1_epi32(q->a_zp ? q->a_zp[0] : 0);
    const __m512 sa = _mm512_set1_ps(q->a_scale[0]);
    switch (np) {
    case 1: QE_GEMV_VNNI_DEQUANT_BODY(1); break;
    case 2: QE_GEMV_VNNI_DEQUANT_BODY(2); break;
    case 3: QE_GEMV_VNNI_DEQUANT_BODY(3); break;
    default: QE_GEMV_VNNI_DEQUANT_BODY(4); break;
    }
}
#undef QE_GEMV_VNNI_DEQUANT_BODY
#endif

#endif
