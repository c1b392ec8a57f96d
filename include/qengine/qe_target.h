/* Per-function ISA targets. Each SIMD kernel is compiled for its own ISA through a function
 * attribute, so one binary holds every path and the build flags stay baseline (x86-64 / armv8-a).
 * Code under these attributes must only ever be called after qe_runnable_isas() said yes. */
#ifndef QE_TARGET_H
#define QE_TARGET_H

#include "qe_cpu.h"

#if defined(QE_ARCH_X86) && (defined(__GNUC__) || defined(__clang__))
#define QE_HAVE_X86_SIMD 1
#define QE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define QE_TARGET_AVX512VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#include <immintrin.h>
#endif

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define QE_HAVE_NEONDOT 1
#define QE_TARGET_NEONDOT __attribute__((target("arch=armv8.2-a+dotprod")))
#include <arm_neon.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QE_RESTRICT __restrict__
#define QE_INLINE static inline __attribute__((always_inline))
#else
#define QE_RESTRICT
#define QE_INLINE static inline
#endif

#endif
