# cython: language_level=3
"""Drivers for the element-wise quantize/dequantize kernels (include/qengine/quant/).

The array is seen as [outer, C, inner] with C the channel axis (C = 1 per tensor). Work is cut
into runs that share a parameter layout (see qe_quant.h) and, above PARALLEL_MIN elements,
spread over OpenMP threads (the process-wide count, include/qengine/qe_threads.h); below that,
fork/join costs more than it saves. Validation lives in qengine/quant.py: these functions trust
their arguments.
"""
from cython.parallel cimport prange
from libc.stdint cimport int32_t
from qe_omp cimport bind_thread_state, qe_threads, qe_threads_note_team
cimport numpy as cnp

cnp.import_array()
bind_thread_state()

cdef extern from "qengine/quant/qe_quant.h" nogil:
    void qe_quantize_run(int isa, int qtype, size_t n, const float* x, void* y, const float* s,
                         const int32_t* z, size_t pstride, int32_t qmin, int32_t qmax)
    void qe_dequantize_run(int isa, int qtype, size_t n, const void* q, float* y, const float* s,
                           const int32_t* z, size_t pstride)
    const char* qe_quantize_kernel_name(int isa, int qtype)
    const char* qe_dequantize_kernel_name(int isa, int qtype)

PARALLEL_MIN = 1 << 18
cdef Py_ssize_t CHUNK = 1 << 16


cdef void _layout(Py_ssize_t C, Py_ssize_t inner, Py_ssize_t* run, Py_ssize_t* pc,
                  size_t* pstride) noexcept:
    if C == 1:                      # per tensor: fixed-size chunks, one (scale, zero point)
        run[0] = CHUNK; pc[0] = 1; pstride[0] = 0
    elif inner == 1:                # channels innermost: a run is a row, params per element
        run[0] = C; pc[0] = 1; pstride[0] = 1
    else:                           # a run is one (row, channel) pair
        run[0] = inner; pc[0] = C; pstride[0] = 0


def quantize(const float[::1] x, unsigned char[::1] y, const float[::1] scale,
             const int32_t[::1] zero_point, Py_ssize_t C, Py_ssize_t inner,
             int32_t qmin, int32_t qmax, int qtype, Py_ssize_t itemsize, int isa):
    """x (flat float32) -> y (flat bytes of the output dtype)."""
    cdef Py_ssize_t total = x.shape[0]
    if total == 0:
        return
    cdef Py_ssize_t run, pc, u, start, n, p
    cdef size_t pstride
    _layout(C, inner, &run, &pc, &pstride)
    cdef Py_ssize_t runs = (total + run - 1) // run
    cdef int threads = qe_threads(0) if total >= PARALLEL_MIN else 1
    for u in prange(runs, nogil=True, schedule="static", num_threads=threads):
        qe_threads_note_team()
        start = u * run
        n = min(run, total - start)
        p = u % pc
        qe_quantize_run(isa, qtype, n, &x[start], &y[start * itemsize], &scale[p],
                        &zero_point[p], pstride, qmin, qmax)


def dequantize(const unsigned char[::1] q, float[::1] y, const float[::1] scale,
               const int32_t[::1] zero_point, Py_ssize_t C, Py_ssize_t inner, int qtype,
               Py_ssize_t itemsize, int isa):
    """q (flat bytes of the stored dtype) -> y (flat float32)."""
    cdef Py_ssize_t total = y.shape[0]
    if total == 0:
        return
    cdef Py_ssize_t run, pc, u, start, n, p
    cdef size_t pstride
    _layout(C, inner, &run, &pc, &pstride)
    cdef Py_ssize_t runs = (total + run - 1) // run
    cdef int threads = qe_threads(0) if total >= PARALLEL_MIN else 1
    for u in prange(runs, nogil=True, schedule="static", num_threads=threads):
        qe_threads_note_team()
        start = u * run
        n = min(run, total - start)
        p = u % pc
        qe_dequantize_run(isa, qtype, n, &q[start * itemsize], &y[start], &scale[p],
                          &zero_point[p], pstride)


def quantize_u8(cnp.ndarray x, cnp.ndarray y, float scale, int32_t zero_point, int isa):
    """Per-tensor float32 → uint8 (qmin 0, qmax 255) between C-contiguous arrays of equal size:
    the lean entry of the graph's QuantizeU8 op, whose parameters were validated once at
    session build (no memoryview set-up or Python checks per call)."""
    cdef Py_ssize_t total = cnp.PyArray_SIZE(x), u, start, n
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    cdef unsigned char *py = <unsigned char *>cnp.PyArray_DATA(y)
    cdef int threads = qe_threads(0) if total >= PARALLEL_MIN else 1
    if threads == 1:
        with nogil:
            qe_quantize_run(isa, 0, total, px, py, &scale, &zero_point, 0, 0, 255)
        return
    for u in prange((total + CHUNK - 1) // CHUNK, nogil=True, schedule="static",
                    num_threads=threads):
        qe_threads_note_team()
        start = u * CHUNK
        n = min(CHUNK, total - start)
        qe_quantize_run(isa, 0, n, &px[start], &py[start], &scale, &zero_point, 0, 0, 255)


def dequantize_u8(cnp.ndarray q, cnp.ndarray y, float scale, int32_t zero_point, int isa):
    """Per-tensor uint8 → float32 between C-contiguous arrays of equal size: the lean entry of
    the graph's DequantizeU8 op (parameters validated at session build)."""
    cdef Py_ssize_t total = cnp.PyArray_SIZE(q), u, start, n
    cdef const unsigned char *pq = <const unsigned char *>cnp.PyArray_DATA(q)
    cdef float *py = <float *>cnp.PyArray_DATA(y)
    cdef int threads = qe_threads(0) if total >= PARALLEL_MIN else 1
    if threads == 1:
        with nogil:
            qe_dequantize_run(isa, 0, total, pq, py, &scale, &zero_point, 0)
        return
    for u in prange((total + CHUNK - 1) // CHUNK, nogil=True, schedule="static",
                    num_threads=threads):
        qe_threads_note_team()
        start = u * CHUNK
        n = min(CHUNK, total - start)
        qe_dequantize_run(isa, 0, n, &pq[start], &py[start], &scale, &zero_point, 0)


def kernel_name(str op, int isa, int qtype):
    """Name of the kernel `op` ('quantize' or 'dequantize') runs for this ISA and data type."""
    cdef const char* s = (qe_quantize_kernel_name(isa, qtype) if op == "quantize"
                          else qe_dequantize_kernel_name(isa, qtype))
    return s.decode()
