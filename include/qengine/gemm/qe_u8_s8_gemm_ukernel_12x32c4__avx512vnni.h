/* u8 × s8 → int32 tile, 12 rows × 32 columns, K in groups of 4, AVX-512 VNNI.
 *
 * One K-group: two 64-byte W loads (32 columns × 4 int8), then per row one 32-bit broadcast of
 * 4 u8 and two vpdpbusd (u8·s8 products summed in fours into int32 lanes, wrapping, never
 * saturating: exact under the K bound). 12 × 2 = 24 zmm accumulators hide the vpdpbusd latency
 * at one per cycle. With few rows (GEMV, LSTM steps) the same loop keeps several accumulator
 * sets over alternating K-groups (KS) so that independent chains still fill the pipe; W then
 * streams once, which is what bounds a GEMV.
 * mr (≤ 12) selects a fully unrolled instance, so arrays of __m512i live in registers.
 */
#ifndef QE_U8_S8_GEMM_UKERNEL_12X32C4__AVX512VNNI_H
#define QE_U8_S8_GEMM_UKERNEL_12X32C4__AVX512VNNI_H

#include <string.h>
#include "../qe_target.h"
#include "qe_gemm_params.h"

#if QE_HAVE_X86_SIMD
#define QE_VNNI_MR 12

/* vpdpbusd through asm: with the intrinsic, GCC 12 copies every accumulator through a spare
 * register (or the stack) on each iteration of the K-split loops; the "+v" tie keeps them put. */
#define QE_DPBUSD(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))

/* QE_VNNI_ACCUMULATE leaves the 12×32 dot products of the panel pair in acc[0..MRV)[0..1];
 * the int32-tile kernel below stores them, the fused requantizing kernel
 * (qe_u8_s8_gemm_minmax_ukernel_12x32c4__avx512vnni.h) requantizes them in registers. */
#define QE_VNNI_ACCUMULATE(MRV, KS)                                                            \
        __m512i acc[KS * MRV][2];                                                              \
        _Pragma("GCC unroll 12") for (int s = 0; s < KS; s++)                                  \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++)                                 \
            acc[s * MRV + i][0] = acc[s * MRV + i][1] = _mm512_setzero_si512();                \
        for (size_t g = 0; g < kg; g += KS) { /* kg: a multiple of 4 (kpad) */                 \
            _mm_prefetch((const char *)(pw + 1024), _MM_HINT_T0);                              \
            _Pragma("GCC unroll 12") for (int s = 0; s < KS; s++) {                            \
                const __m512i b0 = _mm512_loadu_si512(pw + 128 * s);                           \
                const __m512i b1 = _mm512_loadu_si512(pw + 128 * s + 64);                      \
                _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                       \
                    int32_t a4;                                                                \
                    memcpy(&a4, pa + 4 * QE_VNNI_MR * s + 4 * i, 4);                           \
                    const __m512i va = _mm512_set1_epi32(a4);                                  \
                    QE_DPBUSD(acc[s * MRV + i][0], va, b0);                                    \
                    QE_DPBUSD(acc[s * MRV + i][1], va, b1);                                    \
                }                                                                              \
            }                                                                                  \
            pa += 4 * QE_VNNI_MR * KS;                                                         \
            pw += 128 * KS;                                                                    \
        }                                                                                      \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++)                                 \
            _Pragma("GCC unroll 12") for (int s = 1; s < KS; s++) {                            \
                acc[i][0] = _mm512_add_epi32(acc[i][0], acc[s * MRV + i][0]);                  \
                acc[i][1] = _mm512_add_epi32(acc[i][1], acc[s * MRV + i][1]);                  \
            }

/* The same K loop with A read in place (qe_u8_s8_igemm_*): a[t·MR + i] points at row i's 4·kc
 * bytes of tap t (a GEMM row, or a conv pixel's receptive-field segment), and W walks the taps'
 * K-groups in order. One accumulator set: the indirect kernels serve the big-M case, where
 * mr < 4 happens only in the last panel. */
#define QE_VNNI_ACCUMULATE_INDIRECT(MRV)                                                       \
        __m512i acc[MRV][2];                                                                   \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++)                                 \
            acc[i][0] = acc[i][1] = _mm512_setzero_si512();                                    \
        for (size_t t = 0; t < ks; t++, a += QE_VNNI_MR) {                                     \
            const uint8_t *ap[MRV];                                                            \
            _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) ap[i] = a[i];               \
            for (size_t g = 0; g < kc; g++) {                                                  \
                _mm_prefetch((const char *)(pw + 1024), _MM_HINT_T0);                          \
                const __m512i b0 = _mm512_loadu_si512(pw);                                     \
                const __m512i b1 = _mm512_loadu_si512(pw + 64);                                \
                _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                       \
                    int32_t a4;                                                                \
                    memcpy(&a4, ap[i] + 4 * g, 4);                                             \
                    const __m512i va = _mm512_set1_epi32(a4);                                  \
                    QE_DPBUSD(acc[i][0], va, b0);                                              \
                    QE_DPBUSD(acc[i][1], va, b1);                                              \
                }                                                                              \
                pw += 128;                                                                     \
            }                                                                                  \
        }

/* acc[0..MRV) → the int32 tile c [MR][32] (+= when acc_in) */
#define QE_VNNI_STORE(MRV)                                                                     \
        _Pragma("GCC unroll 12") for (int i = 0; i < MRV; i++) {                               \
            if (acc_in) {                                                                      \
                acc[i][0] = _mm512_add_epi32(acc[i][0], _mm512_loadu_si512(c + 32 * i)); \
                acc[i][1] = _mm512_add_epi32(acc[i][1],                                  \
                                                _mm512_loadu_si512(c + 32 * i + 16));         \
            }                                                                                  \
            _mm512_storeu_si512(c + 32 * i, acc[i][0]);                                     \
            _mm512_storeu_si512(c + 32 * i + 16, acc[i][1]);                                \
        }

#define QE_VNNI_BODY(MRV, KS)                                                                  \
    do {                                                                                       \
        QE_VNNI_ACCUMULATE(MRV, KS)                                                            \
        QE_VNNI_STORE(MRV)                                                                     \
    } while (0)

QE_TARGET_AVX512VNNI
static void qe_u8_s8_gemm_ukernel_12x32c4__avx512vnni(size_t mr, size_t kg, const void *a,
                                                      const void *w, int32_t *c, int acc_in) {
    const uint8_t *pa = (const uint8_t *)a;
    const int8_t *pw = (const int8_t *)w;
    switch (mr) {
    case 1: QE_VNNI_BODY(1, 4); break;
    case 2: QE_VNNI_BODY(2, 4); break;
    case 3: QE_VNNI_BODY(3, 4); break;
    case 4: QE_VNNI_BODY(4, 2); break;
    case 5: QE_VNNI_BODY(5, 2); break;
    case 6: QE_VNNI_BODY(6, 2); break;
    case 7: QE_VNNI_BODY(7, 1); break;
    case 8: QE_VNNI_BODY(8, 1); break;
    case 9: QE_VNNI_BODY(9, 1); break;
    case 10: QE_VNNI_BODY(10, 1); break;
    case 11: QE_VNNI_BODY(11, 1); break;
    default: QE_VNNI_BODY(12, 1); break;
    }
}
#undef QE_VNNI_BODY
#endif

#endif
