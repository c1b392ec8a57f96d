/* The thread count a kernel may use: the OpenMP setting, or fewer when the caller asks.
 *
 * An explicit request never exceeds the OpenMP setting, because that setting is how qengine
 * keeps a forked child on one thread (qengine/_runtime.py): GNU libgomp's worker pool does not
 * survive fork(), and a parallel region in the child would wait for it forever. */
#ifndef QE_THREADS_H
#define QE_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int qe_threads(int requested) {
    const int nt = omp_get_max_threads();
    return requested > 0 && requested < nt ? requested : nt;
}
#else
static inline int qe_threads(int requested) { (void)requested; return 1; }
#endif

#endif
