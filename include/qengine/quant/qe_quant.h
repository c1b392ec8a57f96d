/* Dispatch for the element-wise quantize (f32 -> u8/s8/s16) and dequantize (u8/s8/s16/s32 ->
 * f32) kernels: one table per data type, indexed by the QE_ISA_* level chosen at import.
 *
 * Every kernel processes one run of n contiguous elements. pstride is 0 when the whole run
 * shares one (scale, zero point) -- per-tensor, or per-channel with the channel outside the run
 * -- and 1 when the channel is the innermost axis, so element i uses scale[i], zero_point[i].
 * ISAs without a dedicated kernel (NEON so far) use the scalar twin.
 */
#ifndef QE_QUANT_H
#define QE_QUANT_H

#include "qengine/qe_cpu.h"
#include "qengine/quant/qe_f32_qu8_vcvt__scalar.h"
#include "qengine/quant/qe_f32_qs8_vcvt__scalar.h"
#include "qengine/quant/qe_f32_qs16_vcvt__scalar.h"
#include "qengine/quant/qe_qu8_f32_vcvt__scalar.h"
#include "qengine/quant/qe_qs8_f32_vcvt__scalar.h"
#include "qengine/quant/qe_qs16_f32_vcvt__scalar.h"
#include "qengine/quant/qe_qs32_f32_vcvt__scalar.h"
#ifdef QE_HAVE_X86_SIMD
#include "qengine/quant/qe_f32_qu8_vcvt__avx2.h"
#include "qengine/quant/qe_f32_qs8_vcvt__avx2.h"
#include "qengine/quant/qe_f32_qs16_vcvt__avx2.h"
#include "qengine/quant/qe_qu8_f32_vcvt__avx2.h"
#include "qengine/quant/qe_qs8_f32_vcvt__avx2.h"
#include "qengine/quant/qe_qs16_f32_vcvt__avx2.h"
#include "qengine/quant/qe_qs32_f32_vcvt__avx2.h"
#include "qengine/quant/qe_f32_qu8_vcvt__avx512.h"
#include "qengine/quant/qe_f32_qs8_vcvt__avx512.h"
#include "qengine/quant/qe_f32_qs16_vcvt__avx512.h"
#include "qengine/quant/qe_qu8_f32_vcvt__avx512.h"
#include "qengine/quant/qe_qs8_f32_vcvt__avx512.h"
#include "qengine/quant/qe_qs16_f32_vcvt__avx512.h"
#include "qengine/quant/qe_qs32_f32_vcvt__avx512.h"
#define QE_QK(op, avx2, avx512) avx2, avx512
#else
#define QE_QK(op, avx2, avx512) op, op
#endif

/* Storage types, in the order qengine/quant.py numbers them. */
enum { QE_QTYPE_U8 = 0, QE_QTYPE_S8 = 1, QE_QTYPE_S16 = 2, QE_QTYPE_S32 = 3, QE_QTYPE_COUNT = 4 };

typedef void (*qe_f32_qu8_vcvt_fn)(size_t, const float*, uint8_t*, const float*, const int32_t*,
                                   size_t, int32_t, int32_t);
typedef void (*qe_f32_qs8_vcvt_fn)(size_t, const float*, int8_t*, const float*, const int32_t*,
                                   size_t, int32_t, int32_t);
typedef void (*qe_f32_qs16_vcvt_fn)(size_t, const float*, int16_t*, const float*, const int32_t*,
                                    size_t, int32_t, int32_t);
typedef void (*qe_qu8_f32_vcvt_fn)(size_t, const uint8_t*, float*, const float*, const int32_t*,
                                   size_t);
typedef void (*qe_qs8_f32_vcvt_fn)(size_t, const int8_t*, float*, const float*, const int32_t*,
                                   size_t);
typedef void (*qe_qs16_f32_vcvt_fn)(size_t, const int16_t*, float*, const float*, const int32_t*,
                                    size_t);
typedef void (*qe_qs32_f32_vcvt_fn)(size_t, const int32_t*, float*, const float*, const int32_t*,
                                    size_t);

#define QE_QTABLE(name) \
    static const name##_fn name##_table[QE_ISA_COUNT] = { \
        name##__scalar, QE_QK(name##__scalar, name##__avx2, name##__avx512), name##__scalar}; \
    static const char* const name##_names[QE_ISA_COUNT] = { \
        #name "__scalar", QE_QK(#name "__scalar", #name "__avx2", #name "__avx512"), \
        #name "__scalar"};

QE_QTABLE(qe_f32_qu8_vcvt)
QE_QTABLE(qe_f32_qs8_vcvt)
QE_QTABLE(qe_f32_qs16_vcvt)
QE_QTABLE(qe_qu8_f32_vcvt)
QE_QTABLE(qe_qs8_f32_vcvt)
QE_QTABLE(qe_qs16_f32_vcvt)
QE_QTABLE(qe_qs32_f32_vcvt)

/* y is a byte pointer to element 0 of the run; isa and qtype were validated by the caller. */
static void qe_quantize_run(int isa, int qtype, size_t n, const float* x, void* y,
                            const float* s, const int32_t* z, size_t pstride,
                            int32_t qmin, int32_t qmax)
{
    switch (qtype) {
    case QE_QTYPE_U8: qe_f32_qu8_vcvt_table[isa](n, x, (uint8_t*)y, s, z, pstride, qmin, qmax); break;
    case QE_QTYPE_S8: qe_f32_qs8_vcvt_table[isa](n, x, (int8_t*)y, s, z, pstride, qmin, qmax); break;
    case QE_QTYPE_S16: qe_f32_qs16_vcvt_table[isa](n, x, (int16_t*)y, s, z, pstride, qmin, qmax); break;
    default: break;
    }
}

static void qe_dequantize_run(int isa, int qtype, size_t n, const void* q, float* y,
                              const float* s, const int32_t* z, size_t pstride)
{
    switch (qtype) {
    case QE_QTYPE_U8: qe_qu8_f32_vcvt_table[isa](n, (const uint8_t*)q, y, s, z, pstride); break;
    case QE_QTYPE_S8: qe_qs8_f32_vcvt_table[isa](n, (const int8_t*)q, y, s, z, pstride); break;
    case QE_QTYPE_S16: qe_qs16_f32_vcvt_table[isa](n, (const int16_t*)q, y, s, z, pstride); break;
    case QE_QTYPE_S32: qe_qs32_f32_vcvt_table[isa](n, (const int32_t*)q, y, s, z, pstride); break;
    default: break;
    }
}

static const char* qe_quantize_kernel_name(int isa, int qtype)
{
    switch (qtype) {
    case QE_QTYPE_U8: return qe_f32_qu8_vcvt_names[isa];
    case QE_QTYPE_S8: return qe_f32_qs8_vcvt_names[isa];
    case QE_QTYPE_S16: return qe_f32_qs16_vcvt_names[isa];
    default: return "";
    }
}

static const char* qe_dequantize_kernel_name(int isa, int qtype)
{
    switch (qtype) {
    case QE_QTYPE_U8: return qe_qu8_f32_vcvt_names[isa];
    case QE_QTYPE_S8: return qe_qs8_f32_vcvt_names[isa];
    case QE_QTYPE_S16: return qe_qs16_f32_vcvt_names[isa];
    case QE_QTYPE_S32: return qe_qs32_f32_vcvt_names[isa];
    default: return "";
    }
}

#endif
