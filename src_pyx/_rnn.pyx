# cython: language_level=3
"""Recurrent kernels: vectorized gate math (and the dynamic-int8 LSTM/GRU layers)."""
import numpy as np
cimport numpy as cnp
from qe_omp cimport bind_thread_state

cnp.import_array()
bind_thread_state()

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


# ---------------------------------------------------------------------------------------------
# Dynamic-int8 recurrent layers (include/qengine/rnn/qe_rnn_dynamic.h)
from libc.stdint cimport int8_t, uint8_t, int32_t
from libc.string cimport memset
from qe_gemm cimport (qe_packed_w, qe_gemm_epilogue, qe_gemm, qe_dynq_u8, QE_EPI_F32,
                      qe_packed_w4, qe_gemm_w4_row_terms, qe_gemm_w4_dequant)
from qengine._runtime import ISA_NAMES

cdef extern from "qengine/rnn/qe_rnn_dynamic.h" nogil:
    enum:
        QE_RNN_NB, QE_RNN_FUSE_MIN_B, QE_RNN_LSTM, QE_RNN_GRU, QE_RNN_OK, QE_RNN_EARG,
        QE_RNN_ENOMEM, QE_RNN_EISA
    ctypedef struct qe_rnn_layer:
        int32_t kind, T, B, H, Hp, per_row, linear_before_reset
        float *gx
        Py_ssize_t gx_s, gx_b
        float *y
        Py_ssize_t y_s, y_b
        float *h
        float *c
        const int32_t *lens
        const qe_packed_w *r
        const float *r_scale
        const float *r_bias
        int32_t isa, nthreads
        const float *x
        Py_ssize_t x_s, x_b
        int32_t input_size, w_row0
        const qe_packed_w *w
        const float *w_scale
        const float *w_bias
        const qe_packed_w4 *r4
    int qe_rnn_layer_run(const qe_rnn_layer *L)

BLOCK = QE_RNN_NB
FUSE_MIN_B = QE_RNN_FUSE_MIN_B
LSTM = QE_RNN_LSTM
GRU = QE_RNN_GRU


cdef qe_packed_w _packed(pw) except *:
    """The C view of a qengine.functional.PackedWeights (which owns the buffers)."""
    cdef const uint8_t[::1] dv = pw.data
    cdef const int32_t[::1] cv = pw.colsum
    cdef qe_packed_w w
    if pw.w_zero_point is not None:
        raise ValueError("recurrent/dynamic layers take symmetric weights (zero point 0)")
    w.data = &dv[0]
    w.colsum = &cv[0]
    w.w_zp = NULL
    w.n = pw.n
    w.k = pw.k
    w.kp = pw.kp
    w.isa = ISA_NAMES.index(pw.isa)
    return w


def project(x, int group, pw, w_scale, bias, int nthreads):
    """gx = dequant(quant(x) · Wᵀ) + bias for x f32 [M, K] → f32 [M, n].

    Rows are quantized in groups of `group` consecutive rows, each group with its own
    (scale, zero point): group = batch makes every time step a tensor of its own, so a sequence
    fed in chunks is quantized exactly as when fed whole; group = 1 is per-row quantization.
    """
    cdef const float[:, ::1] xv = x
    cdef size_t m = xv.shape[0], k = xv.shape[1], g = group
    cdef qe_packed_w w = _packed(pw)
    cdef int isa = w.isa, n = w.n
    if <int>k != w.k:
        raise ValueError(f"project: x has {k} columns, weights expect {w.k}")
    cdef const float[::1] sv = w_scale
    cdef const float[::1] bv = bias
    out = np.empty((m, n), np.float32)
    if m == 0:
        return out
    if g < 1 or m % g:
        raise ValueError(f"project: {m} rows do not split into groups of {g}")
    q = np.empty((m, k), np.uint8)
    a_scale = np.empty(m, np.float32)
    a_zp = np.empty(m, np.int32)
    cdef uint8_t[:, ::1] qv = q
    cdef float[::1] asv = a_scale
    cdef int32_t[::1] azv = a_zp
    cdef float[:, ::1] ov = out
    cdef qe_gemm_epilogue ep
    cdef size_t i, j
    cdef int rc = 0
    memset(&ep, 0, sizeof(ep))
    ep.kind = QE_EPI_F32
    ep.a_zp = &azv[0]
    ep.a_scale = &asv[0]
    ep.row_step = 1
    ep.w_scale = &sv[0]
    ep.bias = &bv[0]
    with nogil:
        i = 0
        while i < m and rc == 0:
            rc = qe_dynq_u8(isa, g, k, &xv[i, 0], k, 0, &qv[i, 0], k, &asv[i], &azv[i])
            for j in range(i + 1, i + g):
                asv[j] = asv[i]
                azv[j] = azv[i]
            i += g
        if rc == 0:
            rc = qe_gemm(isa, m, &qv[0, 0], k, &w, &ep, &ov[0, 0], n, nthreads, NULL, 0)
    if rc != 0:
        raise MemoryError(f"dynamic linear failed (code {rc})")
    return out


cdef qe_packed_w4 _packed4(pw) except *:
    """The C view of a qengine.functional.PackedWeights4 (which owns the buffers)."""
    cdef const uint8_t[::1] dv = pw.data
    cdef const int32_t[::1] cv = pw.colsum
    cdef const float[::1] sv = pw.scale
    cdef qe_packed_w4 w
    w.data = &dv[0]
    w.colsum = &cv[0]
    w.scale = &sv[0]
    w.n = pw.n
    w.k = pw.k
    w.gs = pw.gs
    w.ng = pw.ng
    return w


def project4(x, int group, pw4, bias, int isa, int nthreads):
    """project() for 4-bit weights (qe_gemm_w4.h): x f32 [M, K] → f32 [M, n], rows quantized in
    groups of `group` rows as in project(), epilogue (c)."""
    cdef const float[:, ::1] xv = x
    cdef size_t m = xv.shape[0], k = xv.shape[1], g = group
    cdef qe_packed_w4 w = _packed4(pw4)
    cdef size_t kp = <size_t>w.gs * w.ng
    if <int>k != w.k:
        raise ValueError(f"project4: x has {k} columns, weights expect {w.k}")
    cdef const float[::1] bv = bias
    out = np.empty((m, w.n), np.float32)
    if m == 0:
        return out
    if g < 1 or m % g:
        raise ValueError(f"project4: {m} rows do not split into groups of {g}")
    q = np.empty((m, kp), np.uint8)
    rterm = np.empty((m, w.ng), np.int32)
    a_scale = np.empty(m, np.float32)
    a_zp = np.empty(m, np.int32)
    cdef uint8_t[:, ::1] qv = q
    cdef int32_t[:, ::1] rv = rterm
    cdef float[::1] asv = a_scale
    cdef int32_t[::1] azv = a_zp
    cdef float[:, ::1] ov = out
    cdef size_t i, j
    cdef int rc = 0
    with nogil:
        i = 0
        while i < m and rc == 0:
            rc = qe_dynq_u8(isa, g, k, &xv[i, 0], k, 0, &qv[i, 0], kp, &asv[i], &azv[i])
            for j in range(i + 1, i + g):
                asv[j] = asv[i]
                azv[j] = azv[i]
            i += g
        if rc == 0:
            qe_gemm_w4_row_terms(m, &qv[0, 0], kp, &w, &rv[0, 0])
            rc = qe_gemm_w4_dequant(isa, m, &qv[0, 0], kp, &rv[0, 0], &asv[0], &azv[0], 1, &w,
                                    &bv[0], &ov[0, 0], w.n, 0, nthreads)
    if rc != 0:
        raise MemoryError(f"dynamic 4-bit linear failed (code {rc})")
    return out


def recur(int kind, float[:, :, :] gx, rpw, r_scale, r_bias, float[:, ::1] h, c, lens, y,
          int H, bint per_row, bint linear_before_reset, bint reverse, int nthreads,
          const float[:, :, ::1] x=None, wpw=None, w_scale=None, w_bias=None, int w_row0=0):
    """Run the time loop of one direction. gx [T, B, G·Hp] (a view; rows of each step are
    updated in place), h [B, Hp] (and c for LSTM) in/out, y [T, B, ≥H] view or None.
    LSTM with B ≥ FUSE_MIN_B may pass gx=None and x [T, B, I] with the packed W of all
    directions (wpw, w_scale, w_bias = the gx bias) and this direction's first row w_row0:
    each step then projects its own x (qe_rnn_dynamic.h)."""
    cdef int G = 4 if kind == QE_RNN_LSTM else 3
    cdef int T, B, Hp = h.shape[1]
    cdef qe_packed_w r
    cdef qe_packed_w4 r4
    cdef qe_packed_w w
    cdef const float[::1] wsv
    cdef const float[::1] wbv
    if x is not None:
        if gx is not None or wpw is None or w_scale is None or w_bias is None:
            raise ValueError("recur: x comes with wpw, w_scale, w_bias and without gx")
        T, B = x.shape[0], x.shape[1]
    else:
        T, B = gx.shape[0], gx.shape[1]
    cdef int isa
    cdef const float[::1] rs
    cdef const float[::1] rb
    cdef float[:, ::1] cv
    cdef float[:, :, :] yv
    cdef const int32_t[::1] lv
    cdef qe_rnn_layer L
    L.r4 = NULL
    if isinstance(rpw, tuple):     # (PackedWeights4, isa index): 4-bit R, scales inside
        r4 = _packed4(rpw[0])
        isa = rpw[1]
        L.r4 = &r4
        memset(&r, 0, sizeof(r))
        r.isa = isa
    else:
        r = _packed(rpw)
        isa = r.isa
        rs = r_scale
    if (gx is not None and (gx.strides[2] != 4 or gx.shape[2] != G * Hp)) or h.shape[0] != B:
        raise ValueError("recur: inconsistent gx/h shapes")
    L.kind = kind
    L.T = T
    L.B = B
    L.H = H
    L.Hp = Hp
    L.per_row = per_row
    L.linear_before_reset = linear_before_reset
    L.gx = NULL
    L.gx_s = L.gx_b = 0
    if gx is not None:
        L.gx_s = gx.strides[0] // 4
        L.gx_b = gx.strides[1] // 4
        L.gx = &gx[0, 0, 0] if T else NULL
    L.x = NULL
    L.x_s = L.x_b = 0
    L.input_size = L.w_row0 = 0
    L.w = NULL
    L.w_scale = L.w_bias = NULL
    if x is not None:
        w = _packed(wpw)
        wsv = w_scale
        wbv = w_bias
        if wsv.shape[0] != w.n or wbv.shape[0] != w.n:
            raise ValueError("recur: W scales/bias do not match W")
        L.x_s = x.strides[0] // 4
        L.x_b = x.strides[1] // 4
        L.x = &x[0, 0, 0] if T and B else NULL
        L.input_size = x.shape[2]
        L.w_row0 = w_row0
        L.w = &w
        L.w_scale = &wsv[0]
        L.w_bias = &wbv[0]
    L.h = &h[0, 0]
    L.c = NULL
    L.lens = NULL
    L.r = &r
    L.r_scale = &rs[0] if L.r4 == NULL else NULL
    L.r_bias = NULL
    L.isa = isa
    L.nthreads = nthreads
    L.y = NULL
    L.y_s = L.y_b = 0
    if kind == QE_RNN_LSTM:
        cv = c
        L.c = &cv[0, 0]
    else:
        rb = r_bias
        L.r_bias = &rb[0]
    if lens is not None:
        lv = lens
        L.lens = &lv[0]
    if y is not None and T:
        yv = y
        L.y = &yv[0, 0, 0]
        L.y_s = yv.strides[0] // 4
        L.y_b = yv.strides[1] // 4
    if reverse and T:
        # walk gx and y backwards: processing step s is time T-1-s
        if L.gx != NULL:
            L.gx = &gx[T - 1, 0, 0]
            L.gx_s = -L.gx_s
        if L.x != NULL:
            L.x = &x[T - 1, 0, 0]
            L.x_s = -L.x_s
        if L.y != NULL:
            L.y = &yv[T - 1, 0, 0]
            L.y_s = -L.y_s
    cdef int rc
    with nogil:
        rc = qe_rnn_layer_run(&L)
    if rc == QE_RNN_ENOMEM:
        raise MemoryError("recurrent layer: out of memory")
    if rc != QE_RNN_OK:
        raise ValueError(f"recurrent layer: invalid arguments (code {rc})")


# ---------------------------------------------------------------------------------------------
# Integer (static) LSTM / GRU (include/qengine/rnn/qe_rnn_static.h)
from libc.stdint cimport int16_t, int64_t

cdef extern from "qengine/rnn/qe_rnn_static.h" nogil:
    enum:
        QE_S16S8_KB, QE_RNN_LUT_SIZE
    ctypedef void (*qe_s16s8_dot_fn)(size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                    size_t ldw, int64_t *out)
    qe_s16s8_dot_fn qe_s16s8_dot_for_isa(int isa)
    const char *qe_s16s8_dot_names[4]
    const int32_t qe_rnn_sigmoid_lut[]
    const int32_t qe_rnn_tanh_lut[]
    size_t qe_s16_panels_bytes(size_t n, size_t kp)
    void qe_s16_pack_panels(size_t n, size_t kp, const int8_t *w, size_t ldw, int16_t *out)
    ctypedef struct qe_srnn_layer:
        int32_t kind, scheme, T, B, H, input_size
        int32_t reverse, linear_before_reset, e_c, z_h
        float mo, mq
        const int16_t *x
        size_t kpx
        const int8_t *w
        const int16_t *w16
        const int8_t *r
        const float *mx
        const float *mh
        const float *bx
        const float *bh
        const int32_t *lens
        int16_t *h
        int16_t *c
        int16_t *y
        int32_t isa
        int32_t nthreads
    int qe_srnn_run(const qe_srnn_layer *L)
    ctypedef struct qe_srnn_io:
        const float *xf
        const float *h0f
        const float *c0f
        float s_x, s_h, s_c
        int32_t z_x, lo, hi
        float *yf
        float *hf
        float *cf
        size_t y_t
    int qe_srnn_forward(qe_srnn_layer *L, const qe_srnn_io *io)

SRNN_KB = QE_S16S8_KB


def srnn_luts():
    """The compiled (sigmoid, tanh) tables, int32 [QE_RNN_LUT_SIZE] each."""
    return (np.array([qe_rnn_sigmoid_lut[i] for i in range(QE_RNN_LUT_SIZE)], np.int32),
            np.array([qe_rnn_tanh_lut[i] for i in range(QE_RNN_LUT_SIZE)], np.int32))


def s16s8_dot_name(int isa):
    return qe_s16s8_dot_names[isa].decode()


def s16_pack_panels(cnp.ndarray w):
    """w int8 [n, kp] (C-contiguous) -> the AVX2 projection's int16 panels (qe_s16_pack_panels),
    a flat int16 array."""
    if w.dtype != np.int8 or w.ndim != 2 or not w.flags.c_contiguous or w.shape[1] % 2:
        raise ValueError("s16_pack_panels: w int8 [n, kp], kp even, C-contiguous")
    cdef size_t n = w.shape[0], kp = w.shape[1]
    out = np.empty(qe_s16_panels_bytes(n, kp) // 2, np.int16)
    qe_s16_pack_panels(n, kp, <const int8_t *>cnp.PyArray_DATA(w), kp,
                       <int16_t *>cnp.PyArray_DATA(out))
    return out


def s16s8_dot(int isa, cnp.ndarray a, cnp.ndarray w):
    """a int16 [kp], w int8 [n, kp] (C-contiguous, kp a multiple of SRNN_KB) -> int64 [n]."""
    cdef size_t n = w.shape[0], kp = w.shape[1]
    if a.dtype != np.int16 or w.dtype != np.int8 or a.shape[0] != kp or kp % QE_S16S8_KB or \
            not a.flags.c_contiguous or not w.flags.c_contiguous:
        raise ValueError("s16s8_dot: a int16 [kp], w int8 [n, kp], kp a multiple of "
                         f"{QE_S16S8_KB}, C-contiguous")
    out = np.empty(n, np.int64)
    cdef qe_s16s8_dot_fn fn = qe_s16s8_dot_for_isa(isa)
    cdef const int16_t *pa = <const int16_t *>cnp.PyArray_DATA(a)
    cdef const int8_t *pw = <const int8_t *>cnp.PyArray_DATA(w)
    cdef int64_t *po = <int64_t *>cnp.PyArray_DATA(out)
    with nogil:
        fn(n, kp, pa, pw, kp, po)
    return out


def srnn_forward(int isa, int kind, int scheme, cnp.ndarray x, cnp.ndarray w, object w16,
                 cnp.ndarray r,
                 cnp.ndarray mx, cnp.ndarray mh, cnp.ndarray bx, cnp.ndarray bh, object lens,
                 object h0, object c0, cnp.ndarray Y, int d, cnp.ndarray hn, object cn,
                 int reverse, int linear_before_reset, int e_c, int z_h, float mo, float mq,
                 float s_x, int z_x, int lo, int hi, float s_h, float s_c, int nthreads=0):
    """One direction, float in and out (qe_srnn_forward): x float32 [T, B, I]; h0 / c0 float32
    [B, H] or None; writes Y[:, d] (float32 [T, D, B, H]), hn and cn (float32 [B, H]). All
    C-contiguous, checked by qengine/quantized/static_rnn.py. nthreads: the team's size (0 = the
    process setting, one thread below QE_SRNN_PAR_MIN_MACS per step); any size, the same bits."""
    cdef qe_srnn_layer L
    cdef qe_srnn_io io
    memset(&L, 0, sizeof(L))
    memset(&io, 0, sizeof(io))
    L.kind, L.scheme, L.T, L.B, L.H = kind, scheme, x.shape[0], x.shape[1], hn.shape[1]
    L.input_size = x.shape[2]
    L.reverse, L.linear_before_reset, L.e_c, L.z_h = reverse, linear_before_reset, e_c, z_h
    L.mo, L.mq = mo, mq
    L.kpx = w.shape[1]
    L.w = <const int8_t *>cnp.PyArray_DATA(w)
    L.w16 = NULL if w16 is None else <const int16_t *>cnp.PyArray_DATA(<cnp.ndarray>w16)
    L.r = <const int8_t *>cnp.PyArray_DATA(r)
    L.mx = <const float *>cnp.PyArray_DATA(mx)
    L.mh = <const float *>cnp.PyArray_DATA(mh)
    L.bx = <const float *>cnp.PyArray_DATA(bx)
    L.bh = <const float *>cnp.PyArray_DATA(bh)
    L.lens = NULL if lens is None else <const int32_t *>cnp.PyArray_DATA(<cnp.ndarray>lens)
    L.isa = isa
    L.nthreads = nthreads
    io.xf = <const float *>cnp.PyArray_DATA(x)
    io.h0f = NULL if h0 is None else <const float *>cnp.PyArray_DATA(<cnp.ndarray>h0)
    io.c0f = NULL if c0 is None else <const float *>cnp.PyArray_DATA(<cnp.ndarray>c0)
    io.s_x, io.s_h, io.s_c, io.z_x, io.lo, io.hi = s_x, s_h, s_c, z_x, lo, hi
    io.y_t = Y.shape[1] * Y.shape[2] * Y.shape[3]
    io.yf = <float *>cnp.PyArray_DATA(Y) + d * Y.shape[2] * Y.shape[3]
    io.hf = <float *>cnp.PyArray_DATA(hn)
    io.cf = NULL if cn is None else <float *>cnp.PyArray_DATA(<cnp.ndarray>cn)
    cdef int rc
    with nogil:
        rc = qe_srnn_forward(&L, &io)
    if rc == -2:
        raise MemoryError("qengine static RNN: out of memory for the scratch buffers")
    if rc != 0:
        raise ValueError(f"qengine static RNN kernel: inconsistent arguments (error {rc})")
