/* u8 × s8 → f32, 12 rows × 32 columns, K in groups of 4, AVX-512 VNNI, dequantized in
 * registers: the K loop of qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni, then per accumulator the
 * F32 branch of qe_gemm_epilogue__avx512 (hence of qe_gemm_epilogue__scalar) in the same order:
 * − z_a·colsum (wrapping int32, as the scalar uint32 arithmetic), cvtepi32_ps, × (s_a·s_w),
 * + bias, out + y. Bit-identical to ukernel + epilogue; what it saves is the int32 tile's store
 * and reload and a second pass over out. Used for every F32 tile with z_w = 0 and no col_bias:
 * the dynamic Linear, the LSTM/GRU input projection and the batched recurrent step (rows = batch,
 * 16 = 12 + 4, 32 = 12 + 12 + 8: with 32 zmm registers a 16 × 32 int32 tile alone would take all
 * of them, and the 12/4-row instances already run the K loop at the vpdpbusd rate, BENCHMARKS.md).
 * The tile's output rows are prefetched before the K loop, so the read of out (the gate
 * pre-activations of an LSTM step, last written by the input projection) is not a cache miss.
 */
#ifndef QE_U8_S8_GEMM_DEQUANT_UKERNEL_12X32C4__AVX512VNNI_H
#define QE_U8_S8_GEMM_DEQUANT_UKERNEL_12X32C4__AVX512VNNI_H

#include "qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni.h"

#if QE_HAVE_X86_SIMD
/* 16 columns of one row: acc → out, the operations of qe_gemm_epilogue__avx512 (F32). */
QE_TARGET_AVX512VNNI QE_INLINE void qe_dequant16__avx512vnni(__m512i acc, __m512i za, __m512i cs,
                                                             __m512 sa, __m512 ws,
                                                             const float *bias, int accumulate,
                                                             float *out, __mmask16 k) {
    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(za, cs));
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(sa, ws));
    if (bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, bias));
    if (accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(k, out), y);
    _mm512_mask_storeu_ps(out, k, y);
}

#define QE_VNNI_DEQUANT_BODY(MRV, KS)                                                          \
    do {                                                                                       \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                               \
            _mm_prefetch((const char *)(out + i * ldc), _MM_HINT_T0);                          \
            _mm_prefetch((const char *)(out + i * ldc + 16), _MM_HINT_T0);                     \
        }                                                                                      \
        QE_VNNI_ACCUMULATE(MRV, KS)                                                            \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                               \
            const size_t ri = i * q->row_step;                                                 \
            const __m512i za = _mm512_set1_epi32(q->a_zp ? q->a_zp[ri] : 0);                   \
            const __m512 sa = _mm512_set1_ps(q->a_scale[ri]);                                  \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)                                \
                qe_dequant16__avx512vnni(acc[i][h], za, cs[h], sa, ws[h],                      \
                                         q->bias ? q->bias + 16 * h : NULL, q->accumulate,     \
                                         out + i * ldc + 16 * h, km[h]);                       \
        }                                                                                      \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_gemm_dequant_ukernel_12x32c4__avx512vnni(size_t mr, size_t kg, const void *a,
                                                              const void *w,
                                                              const qe_gemm_dequant_tile *q) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    float *out = q->out;
    const size_t ldc = q->ldc;
    const uint32_t bits = q->nr >= 32 ? 0xffffffffu : (1u << q->nr) - 1u;
    const __mmask16 km[2] = {(__mmask16)(bits & 0xffff), (__mmask16)(bits >> 16)};
    __m512i cs[2];
    __m512 ws[2];
    for (int h = 0; h < 2; h++) {
        cs[h] = _mm512_maskz_loadu_epi32(km[h], q->colsum + 16 * h);
        ws[h] = _mm512_maskz_loadu_ps(km[h], q->w_scale + 16 * h);
    }
    switch (mr) {
    case 1: QE_VNNI_DEQUANT_BODY(1, 4); break;
    case 2: QE_VNNI_DEQUANT_BODY(2, 4); break;
    case 3: QE_VNNI_DEQUANT_BODY(3, 4); break;
    case 4: QE_VNNI_DEQUANT_BODY(4, 2); break;
    case 5: QE_VNNI_DEQUANT_BODY(5, 2); break;
    case 6: QE_VNNI_DEQUANT_BODY(6, 2); break;
    case 7: QE_VNNI_DEQUANT_BODY(7, 1); break;
    case 8: QE_VNNI_DEQUANT_BODY(8, 1); break;
    case 9: QE_VNNI_DEQUANT_BODY(9, 1); break;
    case 10: QE_VNNI_DEQUANT_BODY(10, 1); break;
    case 11: QE_VNNI_DEQUANT_BODY(11, 1); break;
    default: QE_VNNI_DEQUANT_BODY(12, 1); break;
    }
}
#undef QE_VNNI_DEQUANT_BODY
#endif

#endif
