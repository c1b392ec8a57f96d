# The one place that talks to OpenMP and to the process-wide thread state. Every module cimports
# from here so that a build without OpenMP (compiler lacks it) still compiles: the stubs below
# then report one thread.
from cpython.pycapsule cimport PyCapsule_GetPointer

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define QE_OPENMP 1
    #else
    #define QE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    int QE_OPENMP
    int omp_get_max_threads() nogil
    int omp_get_thread_num() nogil

cdef extern from "qengine/qe_threads.h" nogil:
    ctypedef struct qe_thread_state:
        int pool_started, fork_fallback
    const char *QE_THREAD_STATE_CAPSULE
    void qe_threads_bind(qe_thread_state *s)
    int qe_threads(int requested)
    void qe_threads_note_team()


cdef inline int bind_thread_state() except -1:
    """Point this extension's kernels at the one thread state, owned by qengine._ext._cpu
    (include/qengine/qe_threads.h). Every extension with kernels calls it once, at import."""
    from qengine._ext import _cpu
    qe_threads_bind(<qe_thread_state *>PyCapsule_GetPointer(_cpu.THREAD_STATE,
                                                            QE_THREAD_STATE_CAPSULE))
    return 0
