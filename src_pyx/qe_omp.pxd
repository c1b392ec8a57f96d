# The one place that talks to OpenMP. Every module cimports from here so that a build without
# OpenMP (compiler lacks it) still compiles: the stubs below then report one thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define QE_OPENMP 1
    #else
    #define QE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static void omp_set_num_threads(int n) { (void)n; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    int QE_OPENMP
    int omp_get_max_threads() nogil
    void omp_set_num_threads(int n) nogil
    int omp_get_thread_num() nogil
