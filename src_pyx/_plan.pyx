# cython: language_level=3
"""The executor's compiled loop (qengine/graph/executor.py): values live in a list of slots,
each node is one vectorcall of its bound run function on the slots it reads, its results go to
the slots it writes, and values past their last reader are dropped — no dict, no name lookup,
no per-node Python frame of the executor's own. Also the NaN test of Session inputs."""
cimport numpy as cnp
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, PyObject *kw)


class StepError(Exception):
    """Node `index` raised (the original exception is the __cause__)."""

    def __init__(self, index):
        super().__init__(index)
        self.index = index


class ShortResult(Exception):
    """Node `index` returned fewer outputs than it has."""

    def __init__(self, index, got):
        super().__init__(index, got)
        self.index, self.got = index, got


cdef Py_ssize_t *_flat(list rows, Py_ssize_t *offsets) except NULL:
    cdef Py_ssize_t i, j, k = 0, total = sum(len(r) for r in rows)
    cdef Py_ssize_t *out = <Py_ssize_t *>malloc(max(total, 1) * sizeof(Py_ssize_t))
    if out == NULL:
        raise MemoryError()
    for i in range(len(rows)):
        offsets[i] = k
        for j in range(len(rows[i])):
            out[k] = rows[i][j]
            k += 1
    offsets[len(rows)] = k
    return out


cdef class Schedule:
    """Slot indices per node: ins (-1 = an omitted optional input, passed as None), outs (-1 =
    an unnamed output, dropped) and the slots that die after the node. Immutable; `run` is
    reentrant (all per-run state is in its arguments)."""
    cdef Py_ssize_t n
    cdef Py_ssize_t *oin
    cdef Py_ssize_t *oout
    cdef Py_ssize_t *odead
    cdef Py_ssize_t *fin
    cdef Py_ssize_t *fout
    cdef Py_ssize_t *fdead

    def __cinit__(self, list ins, list outs, list dead):
        self.n = len(ins)
        if len(outs) != self.n or len(dead) != self.n:
            raise ValueError("ins, outs and dead must have one entry per node")
        self.oin = <Py_ssize_t *>malloc((self.n + 1) * sizeof(Py_ssize_t))
        self.oout = <Py_ssize_t *>malloc((self.n + 1) * sizeof(Py_ssize_t))
        self.odead = <Py_ssize_t *>malloc((self.n + 1) * sizeof(Py_ssize_t))
        if self.oin == NULL or self.oout == NULL or self.odead == NULL:
            raise MemoryError()
        self.fin = _flat(ins, self.oin)
        self.fout = _flat(outs, self.oout)
        self.fdead = _flat(dead, self.odead)

    def __dealloc__(self):
        free(self.oin); free(self.oout); free(self.odead)
        free(self.fin); free(self.fout); free(self.fdead)

    def run(self, list calls, list vals, Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Run nodes [start, stop) with calls[i] bound to node i, over the slot list `vals`.
        A node's exception comes out as StepError(i) from it."""
        cdef PyObject *args[16]
        cdef PyObject *none = <PyObject *>None
        cdef Py_ssize_t i, j, k, nin, slot
        cdef object res, fn
        if stop < 0 or stop > self.n:
            stop = self.n
        for i in range(start, stop):
            nin = self.oin[i + 1] - self.oin[i]
            if nin > 16:
                res = _call_many(calls[i], vals, [self.fin[k] for k in
                                                   range(self.oin[i], self.oin[i + 1])], i)
            else:
                for j in range(nin):
                    slot = self.fin[self.oin[i] + j]
                    args[j] = <PyObject *>vals[slot] if slot >= 0 else none
                fn = calls[i]
                try:
                    res = PyObject_Vectorcall(fn, args, nin, NULL)
                except BaseException as e:
                    raise StepError(i) from e
            k = self.oout[i + 1] - self.oout[i]
            if type(res) is not tuple:
                res = tuple(res)
            if len(<tuple>res) < k:
                raise ShortResult(i, len(<tuple>res))
            for j in range(k):
                slot = self.fout[self.oout[i] + j]
                if slot >= 0:
                    vals[slot] = (<tuple>res)[j]
            for j in range(self.odead[i], self.odead[i + 1]):
                vals[self.fdead[j]] = None


cdef object _call_many(object fn, list vals, list slots, Py_ssize_t i):
    try:
        return fn(*[vals[s] if s >= 0 else None for s in slots])
    except BaseException as e:
        raise StepError(i) from e


def has_nan(cnp.ndarray x):
    """True when the C-contiguous float32/float64 array x holds a NaN (one pass, no temporary;
    the NaN check of every Session input)."""
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(x)
    cdef const float *f
    cdef const double *d
    cdef int found = 0
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        f = <const float *>cnp.PyArray_DATA(x)
        with nogil:
            for i in range(n):
                found |= f[i] != f[i]
    elif cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64:
        d = <const double *>cnp.PyArray_DATA(x)
        with nogil:
            for i in range(n):
                found |= d[i] != d[i]
    else:
        raise TypeError("has_nan: float32 or float64 expected")
    return found != 0
