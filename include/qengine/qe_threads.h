/* Threads and per-thread scratch: one process-wide state that every parallel region obeys.
 *
 * Why qengine keeps its own thread count: libgomp's omp_set_num_threads() sets the calling
 * thread's ICV only, so a count set on the main thread never reached the workers of a
 * ThreadPoolExecutor (each of which then ran OpenMP teams of the default size). Every region
 * here instead passes num_threads(qe_threads(...)), read from ONE qe_thread_state.
 *
 * One state for six extensions: each extension module is its own shared object with its own
 * copy of every `static` in this header, so the state itself is defined once, in the _cpu
 * extension (qe_threads_state.h, included by src_pyx/_cpu.pyx only), and handed to the others
 * as a PyCapsule when they are imported (src_pyx/qe_omp.pxd: bind_thread_state). Until bound, a
 * module sees a private state with one thread and no workspace. Writers of the count:
 * OMP_NUM_THREADS (read when _cpu is imported), qengine.set_num_threads, threadpoolctl (via the
 * exported qengine_set_num_threads, qengine/_threadpool.py) and the fork handler.
 *
 * Fork: libgomp's worker pool does not survive fork(), and a parallel region in the child would
 * wait for the missing workers forever. A region with more than one thread marks the pool as
 * started; a child forked after that runs on 1 thread for good (fork_fallback, reported by
 * qengine info). A child of a process that never started a pool keeps its setting.
 *
 * Scratch: qe_workspace(slot, bytes) returns the calling thread's buffer for that slot, 64-byte
 * aligned, grown on demand and reused by every later call on the thread, so kernels allocate
 * nothing per call in steady state. The buffer is freed when the thread ends (a pthread key
 * destructor), so a server that spawns threads does not accumulate them. One driver call owns
 * QE_WS_CALL of its calling thread (shared with its team through pointers); QE_WS_TEAM is each
 * team member's own scratch inside a region. A slot is valid until the same thread asks for it
 * again: drivers never nest on one slot (qe_gemm inside a driver gets the driver's buffer).
 */
#ifndef QE_THREADS_H
#define QE_THREADS_H

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { QE_WS_CALL = 0, QE_WS_TEAM = 1, QE_WS_SLOTS = 2 };

typedef struct qe_thread_state {
    int num_threads;        /* ≥ 1: the team size every region may use */
    int max_team;           /* largest team any region ran with since the last reset */
    int pool_started;       /* some region ran with > 1 thread: OpenMP has worker threads */
    int fork_fallback;      /* forked after pool_started: this process stays on 1 thread */
    void *(*workspace)(int slot, size_t bytes);
} qe_thread_state;

#define QE_THREAD_STATE_CAPSULE "qengine._ext._cpu.thread_state"

static qe_thread_state qe_thread_state_unbound = {1, 0, 0, 0, NULL};
static qe_thread_state *qe_ts = &qe_thread_state_unbound;

static inline void qe_threads_bind(qe_thread_state *s) { qe_ts = s; }

/* The team size for a call: the setting, or fewer when the caller asks for fewer. */
static inline int qe_threads(int requested) {
    const int nt = __atomic_load_n(&qe_ts->num_threads, __ATOMIC_RELAXED);
    return requested > 0 && requested < nt ? requested : nt;
}

/* Called inside every parallel region: records the team size (tests count threads with it) and
 * that OpenMP now has a worker pool (the fork handler needs to know). */
static inline void qe_threads_note_team(void) {
#ifdef _OPENMP
    const int n = omp_get_num_threads();
    int seen = __atomic_load_n(&qe_ts->max_team, __ATOMIC_RELAXED);
    while (n > seen && !__atomic_compare_exchange_n(&qe_ts->max_team, &seen, n, 1,
                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    if (n > 1 && !__atomic_load_n(&qe_ts->pool_started, __ATOMIC_RELAXED))
        __atomic_store_n(&qe_ts->pool_started, 1, __ATOMIC_RELAXED);
#endif
}

/* This thread's scratch for `slot`: ≥ bytes, 64-aligned; NULL when out of memory (or unbound). */
static inline void *qe_workspace(int slot, size_t bytes) {
    return qe_ts->workspace ? qe_ts->workspace(slot, bytes) : NULL;
}

#endif
