# cython: language_level=3
"""CPU features, compiled ISAs and the OpenMP thread count (see include/qengine/qe_cpu.h)."""
from qe_omp cimport QE_OPENMP, omp_get_max_threads, omp_set_num_threads

cdef extern from "qengine/qe_cpu.h":
    unsigned int qe_cpu_features()
    unsigned int qe_compiled_isas()
    unsigned int qe_runnable_isas(unsigned int f)
    enum:
        QE_CPU_SSE41, QE_CPU_AVX, QE_CPU_AVX2, QE_CPU_FMA, QE_CPU_AVX512F, QE_CPU_AVX512BW
        QE_CPU_AVX512VL, QE_CPU_AVX512DQ, QE_CPU_AVX512VNNI, QE_CPU_AVXVNNI, QE_CPU_F16C
        QE_CPU_NEON, QE_CPU_NEON_DOT

ISA_NAMES = ("scalar", "avx2", "avx512vnni", "neondot")

_FEATURES = (
    ("sse4.1", QE_CPU_SSE41), ("avx", QE_CPU_AVX), ("avx2", QE_CPU_AVX2), ("fma", QE_CPU_FMA),
    ("f16c", QE_CPU_F16C), ("avx512f", QE_CPU_AVX512F), ("avx512bw", QE_CPU_AVX512BW),
    ("avx512vl", QE_CPU_AVX512VL), ("avx512dq", QE_CPU_AVX512DQ),
    ("avx512vnni", QE_CPU_AVX512VNNI), ("avxvnni", QE_CPU_AVXVNNI), ("neon", QE_CPU_NEON),
    ("neon-dotprod", QE_CPU_NEON_DOT),
)


def cpu_features():
    """Names of the CPU features that the CPU *and* the OS support."""
    cdef unsigned int f = qe_cpu_features()
    return [name for name, bit in _FEATURES if f & bit]


def compiled_isas():
    cdef unsigned int m = qe_compiled_isas()
    return [name for i, name in enumerate(ISA_NAMES) if m & (1u << i)]


def runnable_isas():
    cdef unsigned int m = qe_runnable_isas(qe_cpu_features())
    return [name for i, name in enumerate(ISA_NAMES) if m & (1u << i)]


def openmp_enabled():
    return bool(QE_OPENMP)


def get_num_threads():
    return omp_get_max_threads()


def set_num_threads(int n):
    omp_set_num_threads(n)
