# cython: language_level=3
"""Recurrent kernels: vectorized gate math (and the dynamic-int8 LSTM/GRU layers)."""
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "qengine/rnn/qe_gates.h":
    ctypedef void (*qe_vunary_fn)(size_t, const float*, float*) noexcept nogil
    ctypedef void (*qe_lstm_cell_fn)(size_t, const float*, const float*, const float*,
                                     const float*, float*, float*) noexcept nogil
    ctypedef struct qe_gates_ops:
        qe_vunary_fn sigmoid
        qe_vunary_fn tanh
        qe_lstm_cell_fn lstm_cell
    qe_gates_ops qe_gates_for_isa(int isa) nogil


def _unary(x, int isa, int which):
    cdef cnp.ndarray[cnp.float32_t, ndim=1, mode="c"] a = np.ascontiguousarray(x, np.float32).ravel()
    cdef cnp.ndarray[cnp.float32_t, ndim=1, mode="c"] y = np.empty_like(a)
    cdef qe_gates_ops ops = qe_gates_for_isa(isa)
    cdef qe_vunary_fn fn = ops.sigmoid if which == 0 else ops.tanh
    with nogil:
        fn(<size_t>a.shape[0], &a[0] if a.shape[0] else NULL, &y[0] if y.shape[0] else NULL)
    return y.reshape(np.shape(x))


def sigmoid(x, int isa):
    return _unary(x, isa, 0)


def tanh(x, int isa):
    return _unary(x, isa, 1)


def lstm_cell(gates, c_prev, int isa):
    """gates f32 [4, n] in ONNX order i, o, f, c; returns (h, c)."""
    cdef cnp.ndarray[cnp.float32_t, ndim=2, mode="c"] g = np.ascontiguousarray(gates, np.float32)
    cdef cnp.ndarray[cnp.float32_t, ndim=1, mode="c"] c = np.array(c_prev, np.float32).ravel()
    cdef Py_ssize_t n = g.shape[1]
    if g.shape[0] != 4 or c.shape[0] != n or n == 0:
        raise ValueError("lstm_cell: expected gates [4, n] and c_prev [n] with n > 0")
    cdef cnp.ndarray[cnp.float32_t, ndim=1, mode="c"] h = np.empty(n, np.float32)
    cdef qe_gates_ops ops = qe_gates_for_isa(isa)
    with nogil:
        ops.lstm_cell(n, &g[0, 0], &g[1, 0], &g[2, 0], &g[3, 0], &c[0], &h[0])
    return h, c
