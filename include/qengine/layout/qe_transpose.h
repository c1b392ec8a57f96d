/* Layout changes between NCHW (what the graph's float ops exchange) and NHWC (what the int8 conv
 * kernels read and write): 2-D transposes dst[j·ldd + i] = src[i·lds + j], i < rows, j < cols.
 *
 * Pure data movement, so there is nothing to be bit-exact about and no run-time dispatch: on
 * x86-64 the tiles use SSE2, which the x86-64 baseline guarantees (4×4 floats: 8 shuffles per
 * 16 elements; 16×16 bytes: 4 rounds of unpacks), elsewhere portable C; partial tiles at the
 * edges are plain loops. Measured on the rec model's 240×960 tiles: ~4× faster than the plain
 * loop (GCC keeps that scalar), ~6× faster than NumPy's strided copy. Callers keep each call's
 * src and dst small enough (≤ 64 rows or columns) to stay in L1/L2.
 */
#ifndef QE_TRANSPOSE_H
#define QE_TRANSPOSE_H

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The float transpose also applies a fused clamp (an activation after a dequantizing conv):
 * v = v < lo ? lo : v, then v > hi ? hi : v — np.clip's rule, NaN kept (maxps/minps with the
 * bound as first operand return the second on NaN and on equality, i.e. keep v). Pass
 * lo = −inf, hi = +inf for a plain transpose: then every value, NaN and −0 included, is kept. */
static inline float qe_clamp_f32(float v, float lo, float hi) {
    v = lo > v ? lo : v;
    return hi < v ? hi : v;
}

static void qe_transpose_f32(size_t rows, size_t cols, const float *src, size_t lds, float *dst,
                             size_t ldd, float lo, float hi) {
    size_t i0 = 0;
#if defined(__SSE2__)
    const __m128 vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
    for (; i0 + 4 <= rows; i0 += 4) {
        const float *s = src + i0 * lds;
        size_t j = 0;
        for (; j + 4 <= cols; j += 4) {
            __m128 r0 = _mm_loadu_ps(s + j), r1 = _mm_loadu_ps(s + lds + j);
            __m128 r2 = _mm_loadu_ps(s + 2 * lds + j), r3 = _mm_loadu_ps(s + 3 * lds + j);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(dst + j * ldd + i0, _mm_min_ps(vhi, _mm_max_ps(vlo, r0)));
            _mm_storeu_ps(dst + (j + 1) * ldd + i0, _mm_min_ps(vhi, _mm_max_ps(vlo, r1)));
            _mm_storeu_ps(dst + (j + 2) * ldd + i0, _mm_min_ps(vhi, _mm_max_ps(vlo, r2)));
            _mm_storeu_ps(dst + (j + 3) * ldd + i0, _mm_min_ps(vhi, _mm_max_ps(vlo, r3)));
        }
        for (; j < cols; j++)
            for (size_t i = i0; i < i0 + 4; i++)
                dst[j * ldd + i] = qe_clamp_f32(src[i * lds + j], lo, hi);
    }
#endif
    for (size_t j = 0; j < cols; j++)
        for (size_t i = i0; i < rows; i++) dst[j * ldd + i] = qe_clamp_f32(src[i * lds + j], lo, hi);
}

#if defined(__SSE2__)
/* one 16×16 byte tile */
static inline void qe_transpose_u8_16x16(const uint8_t *src, size_t lds, uint8_t *dst,
                                         size_t ldd) {
    __m128i a[16], b[16];
    for (int i = 0; i < 16; i++) a[i] = _mm_loadu_si128((const __m128i *)(src + i * lds));
    /* after round r, register k holds 2^r interleaved rows; the unpack width doubles */
    for (int i = 0; i < 8; i++) {
        b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 2; h++) {
            a[4 * i + h] = _mm_unpacklo_epi16(b[4 * i + h], b[4 * i + 2 + h]);
            a[4 * i + 2 + h] = _mm_unpackhi_epi16(b[4 * i + h], b[4 * i + 2 + h]);
        }
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 4; h++) {
            b[8 * i + h] = _mm_unpacklo_epi32(a[8 * i + h], a[8 * i + 4 + h]);
            b[8 * i + 4 + h] = _mm_unpackhi_epi32(a[8 * i + h], a[8 * i + 4 + h]);
        }
    for (int h = 0; h < 8; h++) {
        a[h] = _mm_unpacklo_epi64(b[h], b[8 + h]);
        a[8 + h] = _mm_unpackhi_epi64(b[h], b[8 + h]);
    }
    /* a[k] now holds source column c(k): the unpack rounds permute the output index by
     * reversing the bit order of k's 4 bits */
    for (int k = 0; k < 16; k++) {
        const int c = ((k & 1) << 3) | ((k & 2) << 1) | ((k & 4) >> 1) | ((k & 8) >> 3);
        _mm_storeu_si128((__m128i *)(dst + (size_t)c * ldd), a[k]);
    }
}
#endif

static void qe_transpose_u8(size_t rows, size_t cols, const uint8_t *src, size_t lds,
                            uint8_t *dst, size_t ldd) {
    size_t i0 = 0;
#if defined(__SSE2__)
    for (; i0 + 16 <= rows; i0 += 16) {
        size_t j = 0;
        for (; j + 16 <= cols; j += 16)
            qe_transpose_u8_16x16(src + i0 * lds + j, lds, dst + j * ldd + i0, ldd);
        for (; j < cols; j++)
            for (size_t i = i0; i < i0 + 16; i++) dst[j * ldd + i] = src[i * lds + j];
    }
#endif
    for (size_t j = 0; j < cols; j++)
        for (size_t i = i0; i < rows; i++) dst[j * ldd + i] = src[i * lds + j];
}

#endif
