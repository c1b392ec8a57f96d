/* Run-time CPU feature detection.
 *
 * A kernel may run only when it was compiled in, the CPU implements its instructions (CPUID)
 * AND the operating system saves the register state it uses (XGETBV on XCR0): a CPU with
 * AVX-512 under an OS that does not enable the ZMM state faults on the first zmm instruction.
 * On aarch64 the kernel reports what the CPU and OS support together through getauxval(AT_HWCAP).
 *
 * Nothing here depends on the flags this file was compiled with: the build never assumes the
 * build machine's ISA (no -march=native); the choice is made once at import.
 */
#ifndef QE_CPU_H
#define QE_CPU_H

#include <stdint.h>

enum {
    QE_CPU_SSE41       = 1u << 0,
    QE_CPU_AVX         = 1u << 1,
    QE_CPU_AVX2        = 1u << 2,
    QE_CPU_FMA         = 1u << 3,
    QE_CPU_AVX512F     = 1u << 4,
    QE_CPU_AVX512BW    = 1u << 5,
    QE_CPU_AVX512VL    = 1u << 6,
    QE_CPU_AVX512DQ    = 1u << 7,
    QE_CPU_AVX512VNNI  = 1u << 8,
    QE_CPU_AVXVNNI     = 1u << 9,
    QE_CPU_F16C        = 1u << 10,
    QE_CPU_NEON        = 1u << 16,
    QE_CPU_NEON_DOT    = 1u << 17,
};

/* ISA levels, one per kernel family. Order matters only for "best available". */
enum {
    QE_ISA_SCALAR = 0,
    QE_ISA_AVX2 = 1,
    QE_ISA_AVX512VNNI = 2,
    QE_ISA_NEONDOT = 3,
    QE_ISA_COUNT = 4,
};

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define QE_ARCH_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
static void qe_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    int v[4]; __cpuidex(v, (int)leaf, (int)sub);
    r[0] = v[0]; r[1] = v[1]; r[2] = v[2]; r[3] = v[3];
}
static uint64_t qe_xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void qe_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static uint64_t qe_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static uint32_t qe_cpu_features(void) {
    uint32_t r[4], f = 0, max_leaf;
    qe_cpuid(0, 0, r);
    max_leaf = r[0];
    if (max_leaf < 1) return 0;
    qe_cpuid(1, 0, r);
    const uint32_t ecx1 = r[2];
    if (ecx1 & (1u << 19)) f |= QE_CPU_SSE41;
    const int osxsave = (ecx1 >> 27) & 1;
    if (!osxsave) return f;                       /* OS does not expose XGETBV: no AVX at all */
    const uint64_t xcr0 = qe_xgetbv0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;        /* XMM + YMM state */
    const int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    if (!os_ymm) return f;
    if (ecx1 & (1u << 28)) f |= QE_CPU_AVX;
    if (ecx1 & (1u << 12)) f |= QE_CPU_FMA;
    if (ecx1 & (1u << 29)) f |= QE_CPU_F16C;
    if (max_leaf < 7) return f;
    qe_cpuid(7, 0, r);
    const uint32_t ebx7 = r[1], ecx7 = r[2];
    if (ebx7 & (1u << 5)) f |= QE_CPU_AVX2;
    if (os_zmm) {
        if (ebx7 & (1u << 16)) f |= QE_CPU_AVX512F;
        if (ebx7 & (1u << 17)) f |= QE_CPU_AVX512DQ;
        if (ebx7 & (1u << 30)) f |= QE_CPU_AVX512BW;
        if (ebx7 & (1u << 31)) f |= QE_CPU_AVX512VL;
        if (ecx7 & (1u << 11)) f |= QE_CPU_AVX512VNNI;
    }
    qe_cpuid(7, 1, r);
    if (r[0] & (1u << 4)) f |= QE_CPU_AVXVNNI;
    return f;
}

#elif defined(__aarch64__)
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
static uint32_t qe_cpu_features(void) {
    uint32_t f = QE_CPU_NEON;                      /* Advanced SIMD is mandatory on AArch64 */
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) f |= QE_CPU_NEON_DOT;
    return f;
}
#else
static uint32_t qe_cpu_features(void) { return QE_CPU_NEON; }
#endif
#else
static uint32_t qe_cpu_features(void) { return 0; }
#endif

/* Which ISA levels this binary contains (compile-time facts about the compiler, not the CPU). */
static uint32_t qe_compiled_isas(void) {
    uint32_t m = 1u << QE_ISA_SCALAR;
#if defined(QE_ARCH_X86) && (defined(__GNUC__) || defined(__clang__))
    m |= 1u << QE_ISA_AVX2;
    m |= 1u << QE_ISA_AVX512VNNI;
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    m |= 1u << QE_ISA_NEONDOT;
#endif
    return m;
}

/* Which ISA levels this CPU + OS can run. */
static uint32_t qe_runnable_isas(uint32_t f) {
    uint32_t m = 1u << QE_ISA_SCALAR;
    if ((f & QE_CPU_AVX2) && (f & QE_CPU_FMA)) m |= 1u << QE_ISA_AVX2;
    const uint32_t vnni = QE_CPU_AVX512F | QE_CPU_AVX512BW | QE_CPU_AVX512VL | QE_CPU_AVX512DQ | QE_CPU_AVX512VNNI;
    if ((f & vnni) == vnni && (m & (1u << QE_ISA_AVX2))) m |= 1u << QE_ISA_AVX512VNNI;
    if (f & QE_CPU_NEON_DOT) m |= 1u << QE_ISA_NEONDOT;
    return m;
}

#endif
