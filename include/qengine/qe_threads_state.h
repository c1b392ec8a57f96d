/* The one qe_thread_state of the process and the per-thread workspaces behind it (the design is
 * in qe_threads.h). Included by src_pyx/_cpu.pyx only: the other extensions reach this state
 * through the capsule _cpu exports, never through their own copy of this file. POSIX threads. */
#ifndef QE_THREADS_STATE_H
#define QE_THREADS_STATE_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include "qe_threads.h"

#if defined(_WIN32)
#define QE_EXPORT __declspec(dllexport)
#else
#define QE_EXPORT __attribute__((visibility("default")))
#endif

static qe_thread_state qe_thread_state_owned;

/* ---- per-thread workspaces ------------------------------------------------------------------ */
typedef struct qe_ws_thread {
    void *p[QE_WS_SLOTS];
    size_t n[QE_WS_SLOTS];
} qe_ws_thread;

static pthread_key_t qe_ws_key;
static size_t qe_ws_total;            /* bytes held by every thread's workspaces (atomic) */

static void qe_ws_drop(qe_ws_thread *t, int slot) {
    free(t->p[slot]);
    __atomic_sub_fetch(&qe_ws_total, t->n[slot], __ATOMIC_RELAXED);
    t->p[slot] = NULL;
    t->n[slot] = 0;
}

/* pthread key destructor: runs when a thread that used a workspace ends */
static void qe_ws_thread_exit(void *arg) {
    qe_ws_thread *t = (qe_ws_thread *)arg;
    for (int i = 0; i < QE_WS_SLOTS; i++) qe_ws_drop(t, i);
    free(t);
}

static void *qe_ws_get(int slot, size_t bytes) {
    if (slot < 0 || slot >= QE_WS_SLOTS || bytes > SIZE_MAX - 4095) return NULL;
    qe_ws_thread *t = (qe_ws_thread *)pthread_getspecific(qe_ws_key);
    if (!t) {
        t = (qe_ws_thread *)calloc(1, sizeof *t);
        if (!t || pthread_setspecific(qe_ws_key, t)) { free(t); return NULL; }
    }
    if (t->n[slot] < bytes || !t->p[slot]) {
        /* grow only: the largest call so far sets the size; whole pages, no copy (scratch) */
        const size_t size = bytes ? (bytes + 4095) & ~(size_t)4095 : 4096;
        qe_ws_drop(t, slot);
        void *p = aligned_alloc(64, size);     /* C11; size is a multiple of the alignment */
        if (!p) return NULL;
        t->p[slot] = p;
        t->n[slot] = size;
        __atomic_add_fetch(&qe_ws_total, t->n[slot], __ATOMIC_RELAXED);
    }
    return t->p[slot];
}

static size_t qe_ws_total_bytes(void) { return __atomic_load_n(&qe_ws_total, __ATOMIC_RELAXED); }

/* ---- the thread count ----------------------------------------------------------------------- */
/* OMP_NUM_THREADS (its first entry, as OpenMP reads "4,2") or every CPU this process may use.
 * Read here rather than through omp_get_max_threads(), which reports the importing thread's
 * own ICV (e.g. one a threadpoolctl context happened to set around the import). */
static int qe_threads_default(void) {
#ifdef _OPENMP
    const char *env = getenv("OMP_NUM_THREADS");
    const long n = env ? strtol(env, NULL, 10) : 0;
    if (n >= 1) return n < 4096 ? (int)n : 4096;
    return omp_get_num_procs() > 0 ? omp_get_num_procs() : 1;
#else
    return 1;
#endif
}

static void qe_threads_after_fork_child(void) {
    qe_thread_state *s = &qe_thread_state_owned;
    if (s->pool_started) {
        s->num_threads = 1;
        s->fork_fallback = 1;
    }
}

/* Exported for threadpoolctl (qengine/_threadpool.py finds the _cpu library by these names). */
QE_EXPORT int qengine_get_num_threads(void) {
    return __atomic_load_n(&qe_thread_state_owned.num_threads, __ATOMIC_RELAXED);
}

QE_EXPORT void qengine_set_num_threads(int n) {
    if (n < 1 || __atomic_load_n(&qe_thread_state_owned.fork_fallback, __ATOMIC_RELAXED)) n = 1;
    __atomic_store_n(&qe_thread_state_owned.num_threads, n, __ATOMIC_RELAXED);
}

static int qe_threads_max_team(int reset) {
    int *m = &qe_thread_state_owned.max_team;
    return reset ? __atomic_exchange_n(m, 0, __ATOMIC_RELAXED) : __atomic_load_n(m, __ATOMIC_RELAXED);
}

/* Once, when _cpu is imported. Returns the state to hand to the other extensions, or NULL. */
static qe_thread_state *qe_threads_state_init(void) {
    qe_thread_state *s = &qe_thread_state_owned;
    if (pthread_key_create(&qe_ws_key, qe_ws_thread_exit)) return NULL;
    s->num_threads = qe_threads_default();
    s->workspace = qe_ws_get;
    pthread_atfork(NULL, NULL, qe_threads_after_fork_child);
    qe_threads_bind(s);
    return s;
}

#endif
