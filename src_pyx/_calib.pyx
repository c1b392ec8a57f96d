# cython: language_level=3
"""Compiled parts of calibration (qengine/calibration/): the histogram pass, the KL-divergence
threshold search and the histogram MSE evaluation. Validation lives in the Python callers.

Threads: the histogram pass splits the array into one contiguous slice per thread, each with
its own histogram and statistics, merged after the loop (no atomics, no false sharing on the
counts). Counts are integers, so the result does not depend on the thread count or ISA. The
searches run one candidate per iteration of a prange: each candidate's value is computed by
one thread in a fixed order, so they are deterministic too.
"""
from cython.parallel cimport prange
from libc.math cimport log, rint, INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from qe_omp cimport bind_thread_state, qe_threads, qe_threads_note_team
import numpy as np

bind_thread_state()

cdef extern from "qengine/calib/qe_hist.h" nogil:
    ctypedef struct qe_hist_grid:
        double w
        int64_t m
        int64_t nbins
        double skip_lo
        double skip_hi
        float* spill
        int64_t spill_cap
    ctypedef struct qe_hist_stats:
        float min
        float max
        int64_t nan, pinf, ninf, binned, outside, skipped
    void qe_hist_stats_init(qe_hist_stats* st)
    void qe_hist_stats_merge(qe_hist_stats* into, const qe_hist_stats* frm)
    ctypedef void (*qe_f32_hist_fn)(size_t, const float*, const qe_hist_grid*, int64_t*,
                                    qe_hist_stats*)
    qe_f32_hist_fn* qe_f32_hist_table
    const char** qe_f32_hist_names

PARALLEL_MIN = 1 << 16
SPILL_CAP = 4096


def kernel_name(int isa):
    return qe_f32_hist_names[isa].decode()


def histogram(const float[::1] x, double w, int64_t m, int64_t[::1] hist, double skip_lo,
              double skip_hi, int isa, int threads=0, Py_ssize_t spill_cap=SPILL_CAP):
    """Add the finite values of x outside [skip_lo, skip_hi) that fall into the grid
    (bins m .. m + len(hist) - 1 of width w) to hist. Returns a dict of statistics; its
    "spill" is a float32 array of every finite value outside the grid when there were at most
    spill_cap of them per thread (else None: the caller needs a second pass).
    threads = 0: the process-wide count for large arrays, 1 below PARALLEL_MIN. `threads` is
    the number of slices; the team running them never exceeds the process-wide count."""
    cdef Py_ssize_t n = x.shape[0], nb = hist.shape[0]
    cdef int T = threads if threads > 0 else (qe_threads(0) if n >= PARALLEL_MIN else 1)
    if T > n:
        T = max(1, <int>n)
    cdef qe_f32_hist_fn fn = qe_f32_hist_table[isa]
    cdef qe_hist_stats total
    qe_hist_stats_init(&total)
    # One cache line (or more) apart per thread: no false sharing on the counters.
    cdef Py_ssize_t SP = (64 + sizeof(qe_hist_stats) - 1) // sizeof(qe_hist_stats)
    cdef qe_hist_stats* st = <qe_hist_stats*>malloc(T * SP * sizeof(qe_hist_stats))
    cdef qe_hist_grid* g = <qe_hist_grid*>malloc(T * sizeof(qe_hist_grid))
    if st == NULL or g == NULL:
        free(st)
        free(g)
        raise MemoryError()
    spill_arr = np.empty((T, max(spill_cap, 1)), dtype=np.float32)
    cdef float[:, ::1] spill = spill_arr
    # Thread 0 writes straight into hist; the others into their own zeroed rows.
    local = np.zeros((max(T - 1, 0), max(nb, 1)), dtype=np.int64)
    cdef int64_t[:, ::1] loc = local
    cdef Py_ssize_t t, start, stop, chunk = (n + T - 1) // T if T > 0 else 0, b
    cdef int64_t* dst
    for t in range(T):
        g[t].w = w; g[t].m = m; g[t].nbins = nb; g[t].skip_lo = skip_lo; g[t].skip_hi = skip_hi
        g[t].spill = &spill[t, 0]
        g[t].spill_cap = spill_cap
    try:
        for t in prange(T, nogil=True, schedule="static", chunksize=1,
                        num_threads=qe_threads(T)):
            qe_threads_note_team()
            qe_hist_stats_init(&st[t * SP])
            start = t * chunk
            stop = min(n, start + chunk)
            if t == 0:
                dst = &hist[0] if nb > 0 else NULL
            else:
                dst = &loc[t - 1, 0]
            if stop > start:
                fn(<size_t>(stop - start), &x[start], &g[t], dst, &st[t * SP])
        complete = True
        spilled = []
        for t in range(T):
            qe_hist_stats_merge(&total, &st[t * SP])
            if st[t * SP].outside > spill_cap:
                complete = False
            elif st[t * SP].outside:
                spilled.append(spill_arr[t, :st[t * SP].outside])
            if t > 0:
                for b in range(nb):
                    hist[b] += loc[t - 1, b]
    finally:
        free(st)
        free(g)
    if complete:
        spill_out = np.concatenate(spilled) if spilled else np.zeros(0, dtype=np.float32)
    else:
        spill_out = None
    return {"min": float(total.min), "max": float(total.max), "nan": int(total.nan),
            "pinf": int(total.pinf), "ninf": int(total.ninf), "binned": int(total.binned),
            "outside": int(total.outside), "skipped": int(total.skipped), "spill": spill_out}


def kl_divergences(const double[::1] hist, Py_ssize_t start, Py_ssize_t levels, double eps):
    """KL(P_i || Q_i) for every candidate i = start .. n (bins kept), as in TensorRT's
    calibrator (see qengine/calibration/entropy.py for the definition).
    Returns float64[n - start + 1]."""
    cdef Py_ssize_t n = hist.shape[0]
    out_arr = np.full(max(n - start + 1, 0), np.inf)
    if n < start:
        return out_arr
    cdef double[::1] out = out_arr
    cs_arr = np.zeros(n + 1)
    nz_arr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(hist, out=cs_arr[1:])
    np.cumsum(np.asarray(hist) != 0, out=nz_arr[1:])
    cdef double[::1] cs = cs_arr
    cdef int64_t[::1] nz = nz_arr
    cdef Py_ssize_t i
    cdef int threads = qe_threads(0) if n > 256 else 1
    for i in prange(start, n + 1, nogil=True, schedule="dynamic", chunksize=16,
                    num_threads=threads):
        qe_threads_note_team()
        out[i - start] = _kl_one(&hist[0], &cs[0], &nz[0], n, i, levels, eps)
    return out_arr


cdef double _kl_one(const double* h, const double* cs, const int64_t* nz, Py_ssize_t n,
                    Py_ssize_t i, Py_ssize_t levels, double eps) noexcept nogil:
    cdef double total = cs[n], kept = cs[i], outl = total - cs[i]
    if kept <= 0 or total <= 0:
        return INFINITY
    # Zero counts of P (h with the outliers folded into bin i-1) and of Q (zero where h is).
    cdef int64_t zq = i - nz[i]
    cdef int64_t zp = zq
    if h[i - 1] == 0 and outl > 0:
        zp -= 1
    # Smoothing as in MXNet/ORT's smooth_distribution: eps onto each zero bin, the same mass
    # taken evenly off the non-zero bins, so the sums stay `total` and `kept`.
    cdef double ep = eps * zp / (i - zp), eq = eps * zq / (i - zq)
    # Group g holds bins j with g*i/L <= j < (g+1)*i/L (np.linspace(0, i, L+1) + digitize, as
    # TensorRT's pytorch-quantization calibrator splits them).
    cdef Py_ssize_t j, g, gs, ge
    cdef double acc = 0.0, p, q, qv
    for g in range(levels):
        gs = (g * i + levels - 1) // levels
        ge = ((g + 1) * i + levels - 1) // levels
        if nz[ge] - nz[gs] > 0:
            qv = (cs[ge] - cs[gs]) / (nz[ge] - nz[gs])
        else:
            qv = 0.0
        for j in range(gs, ge):
            p = h[j]
            if j == i - 1:
                p = p + outl
            p = p - ep if p != 0 else eps
            q = qv - eq if h[j] != 0 else eps
            acc = acc + p * log(p / q)
    return acc / total + log(kept / total)


def mse_errors(const double[::1] centers, const double[::1] counts, const double[::1] scale,
               const double[::1] zero_point, double qmin, double qmax):
    """Sum over bins of count * (c - s*(clamp(rint(c/s) + z, qmin, qmax) - z))^2, for every
    candidate (scale, zero point) pair. float64 throughout."""
    cdef Py_ssize_t nc = scale.shape[0], nb = centers.shape[0], k, j
    out_arr = np.empty(nc)
    cdef double[::1] out = out_arr
    cdef double s, z, q, e, acc
    cdef int threads = qe_threads(0) if nc * nb > (1 << 16) else 1
    for k in prange(nc, nogil=True, schedule="static", num_threads=threads):
        qe_threads_note_team()
        s = scale[k]
        z = zero_point[k]
        acc = 0.0
        for j in range(nb):
            q = rint(centers[j] / s) + z
            if q < qmin:
                q = qmin
            if q > qmax:
                q = qmax
            e = centers[j] - s * (q - z)
            acc = acc + counts[j] * e * e
        out[k] = acc
    return out_arr
