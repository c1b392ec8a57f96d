# cython: language_level=3
"""CPU features, compiled ISAs, and the process-wide thread state (include/qengine/qe_cpu.h,
qe_threads.h): this module owns the one thread count every qengine kernel obeys and the
per-thread workspaces; the other extensions bind to it through THREAD_STATE when imported."""
from cpython.pycapsule cimport PyCapsule_New
from qe_omp cimport QE_OPENMP, QE_THREAD_STATE_CAPSULE, qe_thread_state

cdef extern from "qengine/qe_cpu.h":
    unsigned int qe_cpu_features()
    unsigned int qe_compiled_isas()
    unsigned int qe_runnable_isas(unsigned int f)
    enum:
        QE_CPU_SSE41, QE_CPU_AVX, QE_CPU_AVX2, QE_CPU_FMA, QE_CPU_AVX512F, QE_CPU_AVX512BW
        QE_CPU_AVX512VL, QE_CPU_AVX512DQ, QE_CPU_AVX512VNNI, QE_CPU_AVXVNNI, QE_CPU_F16C
        QE_CPU_NEON, QE_CPU_NEON_DOT

cdef extern from "qengine/qe_threads_state.h" nogil:
    qe_thread_state *qe_threads_state_init()
    int qe_threads_max_team(int reset)
    int qengine_get_num_threads()
    void qengine_set_num_threads(int n)
    size_t qe_ws_total_bytes()

cdef qe_thread_state *_state = qe_threads_state_init()
if _state == NULL:
    raise ImportError("qengine: cannot create the per-thread workspace key (pthread_key_create)")
THREAD_STATE = PyCapsule_New(_state, QE_THREAD_STATE_CAPSULE, NULL)

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
    return qengine_get_num_threads()


def set_num_threads(int n):
    """Set the process-wide count (values < 1 become 1; a fork fallback keeps 1)."""
    qengine_set_num_threads(n)


def fork_fallback():
    """True in a process forked after OpenMP had started worker threads: kernels run on 1."""
    return bool(_state.fork_fallback)


def pool_started():
    """True once some parallel region ran with more than one thread in this process."""
    return bool(_state.pool_started)


def max_team(bint reset=False):
    """The largest OpenMP team any qengine parallel region ran with since the last reset (0 if
    none ran); reset=True starts counting afresh. Tests count kernel threads with it."""
    return qe_threads_max_team(reset)


def workspace_bytes():
    """Bytes held by all threads' kernel workspaces (include/qengine/qe_threads.h)."""
    return qe_ws_total_bytes()
