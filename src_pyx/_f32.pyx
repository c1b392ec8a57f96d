# cython: language_level=3
"""Thin nogil wrappers over the FP32 window kernels (include/qengine/f32): convolution,
depthwise convolution, max/average pooling, NCHW. Arguments are validated by qengine/ops
(dtypes, C-contiguity, shapes); this layer maps arrays to pointers and C error codes to
exceptions. `geom` is (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset
from qe_omp cimport bind_thread_state

cnp.import_array()
bind_thread_state()

cdef extern from "qengine/f32/qe_f32_window.h" nogil:
    ctypedef struct qe_f32_window:
        size_t h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl

cdef extern from "qengine/f32/qe_f32_conv.h" nogil:
    ctypedef struct qe_f32_minmax:
        float lo, hi
    ctypedef struct qe_f32_conv_kernel_rec:
        const char *name
        size_t mr, nr
        const char *pc_name
        size_t pc_mr, pc_nr
    const qe_f32_conv_kernel_rec *qe_f32_conv_kernel_for_isa(int isa)
    size_t qe_f32_conv_packed_floats(size_t mr, size_t m, size_t k, size_t groups)
    void qe_f32_conv_pack_w(size_t mr, const float *w, size_t m, size_t k, size_t groups,
                            float *dst)
    void qe_f32_conv_pack_w_pc(size_t nr, const float *w, size_t m, size_t k, size_t groups,
                               float *dst)
    int qe_f32_conv_orientation(int isa, const qe_f32_window *g, size_t c, size_t m,
                                size_t groups)
    ctypedef struct qe_f32_conv_args:
        qe_f32_window g
        size_t n, c, m, groups
        const float *x
        const float *w
        int orientation
        size_t w_tile
        const float *bias
        qe_f32_minmax act
        float *y
        int isa, nthreads
    int qe_f32_conv2d(const qe_f32_conv_args *a)
    enum:
        QE_F32_OK, QE_F32_ENOMEM, QE_F32_EARG, QE_F32_CONV_CP, QE_F32_CONV_PC

cdef extern from "qengine/f32/qe_f32_dwconv.h" nogil:
    ctypedef struct qe_f32_dwconv_kernel_rec:
        const char *name
    const qe_f32_dwconv_kernel_rec *qe_f32_dwconv_kernel_for_isa(int isa)
    ctypedef struct qe_f32_dwconv_args:
        qe_f32_window g
        size_t n, c, m
        const float *x
        const float *w
        const float *bias
        qe_f32_minmax act
        float *y
        int isa, nthreads
    int qe_f32_dwconv2d(const qe_f32_dwconv_args *a)

cdef extern from "qengine/f32/qe_f32_pool.h" nogil:
    enum:
        QE_F32_POOL_MAX, QE_F32_POOL_AVG
    ctypedef struct qe_f32_pool_args:
        qe_f32_window g
        size_t n, c
        int32_t kind, count_include_pad
        size_t pb, pr
        const float *x
        float *y
        int isa, nthreads
    int qe_f32_pool2d(const qe_f32_pool_args *a)

POOL_MAX = QE_F32_POOL_MAX
POOL_AVG = QE_F32_POOL_AVG
CONV_CP = QE_F32_CONV_CP
CONV_PC = QE_F32_CONV_PC


cdef int _check(int rc, what) except -1:
    if rc == QE_F32_OK:
        return 0
    if rc == QE_F32_ENOMEM:
        raise MemoryError(f"qengine fp32 {what}: out of memory for the scratch buffers")
    raise ValueError(f"qengine fp32 {what}: inconsistent sizes or parameters (code {rc})")


cdef inline float *_f(cnp.ndarray a):
    return <float *>cnp.PyArray_DATA(a)


cdef cnp.ndarray _f32c(a, what, int ndim):
    """a as a C-contiguous float32 array of `ndim` dims (no copy; refuses anything else)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != ndim or \
            not a.flags.c_contiguous:
        raise ValueError(f"{what} must be a C-contiguous float32 array of rank {ndim}")
    return a


cdef qe_f32_window _window(tuple geom, tuple x_shape):
    cdef qe_f32_window g
    g.h, g.w = x_shape[2], x_shape[3]
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.oh, g.ow = geom
    return g


def conv_kernel(int isa, int orientation=QE_F32_CONV_CP):
    """(name, mr, nr) of an ISA's FP32 convolution microkernel in an orientation (CONV_CP:
    channels × pixels, CONV_PC: pixels × channels; include/qengine/f32/qe_f32_conv.h)."""
    cdef const qe_f32_conv_kernel_rec *r = qe_f32_conv_kernel_for_isa(isa)
    if orientation == QE_F32_CONV_PC:
        return r.pc_name.decode(), r.pc_mr, r.pc_nr
    return r.name.decode(), r.mr, r.nr


def conv_orientation(int isa, tuple geom, tuple x_shape, int m, int groups):
    """The orientation the ISA's kernels compute the fewest lanes in for this layer."""
    cdef qe_f32_window g = _window(geom, x_shape)
    return qe_f32_conv_orientation(isa, &g, x_shape[1], m, groups)


def dwconv_kernel(int isa):
    return qe_f32_dwconv_kernel_for_isa(isa).name.decode()


def conv_pack(w, int groups, int isa, int orientation=QE_F32_CONV_CP):
    """Pack float32 weights [m, k] (OIHW reshaped, k = Cin/groups·kh·kw) for the ISA's kernel
    in an orientation. Returns (packed 1-D float32, tile: the mr (cp) or nr (pc) used)."""
    cdef cnp.ndarray wa = _f32c(w, "conv weights", 2)
    cdef size_t m = wa.shape[0], k = wa.shape[1]
    cdef const qe_f32_conv_kernel_rec *r = qe_f32_conv_kernel_for_isa(isa)
    cdef size_t tile = r.pc_nr if orientation == QE_F32_CONV_PC else r.mr
    if groups < 1 or m % groups:
        raise ValueError(f"conv_pack: {m} rows do not split into {groups} groups")
    cdef cnp.ndarray out = np.empty(qe_f32_conv_packed_floats(tile, m, k, groups), np.float32)
    cdef const float *src = _f(wa)
    cdef float *dst = _f(out)
    with nogil:
        if orientation == QE_F32_CONV_PC:
            qe_f32_conv_pack_w_pc(tile, src, m, k, groups, dst)
        else:
            qe_f32_conv_pack_w(tile, src, m, k, groups, dst)
    out.setflags(write=False)
    return out, tile


def conv2d(x, packed, int orientation, int w_tile, bias, tuple geom, int groups, int m,
           float lo, float hi, y, int isa, int nthreads=0):
    """y[n, m, oh, ow] = clamp(conv(x[n, c, h, w]) + bias, lo, hi) (NCHW, float32); `packed`,
    `orientation` and `w_tile` as conv_pack returned them."""
    cdef cnp.ndarray xa = _f32c(x, "x", 4), ya = _f32c(y, "y", 4)
    cdef cnp.ndarray wa = _f32c(packed, "packed weights", 1)
    cdef cnp.ndarray ba
    cdef qe_f32_conv_args a
    memset(&a, 0, sizeof(a))
    a.g = _window(geom, x.shape)
    a.n, a.c, a.m, a.groups = x.shape[0], x.shape[1], m, groups
    if y.shape != (x.shape[0], m, a.g.oh, a.g.ow):
        raise ValueError(f"conv2d: y has shape {y.shape}, expected "
                         f"{(x.shape[0], m, a.g.oh, a.g.ow)}")
    a.x, a.w, a.orientation, a.w_tile, a.y = _f(xa), _f(wa), orientation, w_tile, _f(ya)
    if bias is not None:
        ba = _f32c(bias, "bias", 1)
        if ba.shape[0] != m:
            raise ValueError(f"conv2d: bias has {ba.shape[0]} values, expected {m}")
        a.bias = _f(ba)
    a.act.lo, a.act.hi = lo, hi
    a.isa, a.nthreads = isa, nthreads
    cdef int rc
    with nogil:
        rc = qe_f32_conv2d(&a)
    _check(rc, "conv2d")


def dwconv2d(x, w, bias, tuple geom, float lo, float hi, y, int isa, int nthreads=0):
    """Depthwise: y[n, m, oh, ow], output channel o reads input channel o // (m / c);
    w float32 [m, kh·kw]."""
    cdef cnp.ndarray xa = _f32c(x, "x", 4), ya = _f32c(y, "y", 4), wa = _f32c(w, "w", 2)
    cdef cnp.ndarray ba
    cdef qe_f32_dwconv_args a
    memset(&a, 0, sizeof(a))
    a.g = _window(geom, x.shape)
    a.n, a.c, a.m = x.shape[0], x.shape[1], y.shape[1]
    if y.shape != (x.shape[0], a.m, a.g.oh, a.g.ow) or wa.shape[0] != a.m or \
            wa.shape[1] != a.g.kh * a.g.kw:
        raise ValueError("dwconv2d: inconsistent x, w, y shapes")
    a.x, a.w, a.y = _f(xa), _f(wa), _f(ya)
    if bias is not None:
        ba = _f32c(bias, "bias", 1)
        if ba.shape[0] != a.m:
            raise ValueError(f"dwconv2d: bias has {ba.shape[0]} values, expected {a.m}")
        a.bias = _f(ba)
    a.act.lo, a.act.hi = lo, hi
    a.isa, a.nthreads = isa, nthreads
    cdef int rc
    with nogil:
        rc = qe_f32_dwconv2d(&a)
    _check(rc, "dwconv2d")


def pool2d(x, int kind, tuple geom, bint count_include_pad, size_t pb, size_t pr, y, int isa,
           int nthreads=0):
    """Max (kind POOL_MAX) or average (POOL_AVG) pooling, NCHW float32; pb, pr: explicit end
    pads (the divisor counts them with count_include_pad; ceil_mode overhang never counts)."""
    cdef cnp.ndarray xa = _f32c(x, "x", 4), ya = _f32c(y, "y", 4)
    cdef qe_f32_pool_args a
    memset(&a, 0, sizeof(a))
    a.g = _window(geom, x.shape)
    a.n, a.c = x.shape[0], x.shape[1]
    if y.shape != (x.shape[0], x.shape[1], a.g.oh, a.g.ow):
        raise ValueError("pool2d: inconsistent x, y shapes")
    a.kind, a.count_include_pad, a.pb, a.pr = kind, count_include_pad, pb, pr
    a.x, a.y = _f(xa), _f(ya)
    a.isa, a.nthreads = isa, nthreads
    cdef int rc
    with nogil:
        rc = qe_f32_pool2d(&a)
    _check(rc, "pool2d")


# ---------------------------------------------------------------------------------------------
# Row-major GEMM and the FP32 recurrent layers (qe_f32_gemm.h, qe_f32_rnn.h)
cdef extern from "qengine/f32/qe_f32_rnn.h" nogil:
    ctypedef struct qe_f32_gemm_args:
        size_t m, n, k
        const float *a
        size_t lda
        const float *w
        size_t w_tile
        const float *bias
        float *c
        size_t ldc
        qe_f32_minmax act
        int isa, nthreads
    int qe_f32_gemm(const qe_f32_gemm_args *g)
    enum:
        QE_F32_RNN_NB, QE_F32_RNN_LSTM, QE_F32_RNN_GRU
    ctypedef struct qe_f32_rnn_layer:
        int32_t kind, T, B, H, Hp, linear_before_reset, reverse
        float *gx
        Py_ssize_t gx_s, gx_b
        float *y
        Py_ssize_t y_s, y_b
        float *h
        float *c
        const int32_t *lens
        const float *r
        size_t r_tile
        const float *rbh
        float clip
        int32_t isa, nthreads
    int qe_f32_rnn_layer_run(const qe_f32_rnn_layer *L)

RNN_BLOCK = QE_F32_RNN_NB
RNN_LSTM = QE_F32_RNN_LSTM
RNN_GRU = QE_F32_RNN_GRU


def gemm(a, packed, int tile, int n, bias, float lo, float hi, out, int isa, int nthreads=0):
    """out[m, n] = clamp(a[m, k]·B + bias, lo, hi); B packed with conv_pack(Bᵀ [n, k], 1, isa,
    CONV_PC) (returned `tile`). a and out float32 2-D, rows contiguous (any row stride)."""
    cdef const float[:, :] av = a
    cdef float[:, :] ov = out
    cdef cnp.ndarray wa = _f32c(packed, "packed weights", 1)
    cdef cnp.ndarray ba
    cdef qe_f32_gemm_args g
    memset(&g, 0, sizeof(g))
    g.m, g.k, g.n = av.shape[0], av.shape[1], n
    if ov.shape[0] != av.shape[0] or ov.shape[1] != n:
        raise ValueError(f"gemm: out has shape {out.shape}, expected {(av.shape[0], n)}")
    if (g.k > 1 and av.strides[1] != 4) or (n > 1 and ov.strides[1] != 4) or \
            av.strides[0] % 4 or ov.strides[0] % 4 or av.strides[0] < 0 or ov.strides[0] < 0:
        raise ValueError("gemm: rows of a and out must be contiguous float32")
    if g.m and g.k:
        g.a = &av[0, 0]
        g.c = &ov[0, 0]
    g.lda, g.ldc = av.strides[0] // 4, ov.strides[0] // 4
    g.w, g.w_tile = _f(wa), tile
    if bias is not None:
        ba = _f32c(bias, "bias", 1)
        if ba.shape[0] != n:
            raise ValueError(f"gemm: bias has {ba.shape[0]} values, expected {n}")
        g.bias = _f(ba)
    g.act.lo, g.act.hi = lo, hi
    g.isa, g.nthreads = isa, nthreads
    cdef int rc
    with nogil:
        rc = qe_f32_gemm(&g)
    _check(rc, "gemm")


def rnn(int kind, float[:, :, :] gx, r_packed, int r_tile, int H, float[:, ::1] h, c, lens, y,
        bint linear_before_reset, bint reverse, rbh, float clip, int isa, int nthreads=0):
    """Run the time loop of one direction. gx [T, B, G·Hp] (block order, updated in place),
    h [B, Hp] (and c for LSTM) in/out, y [T, B, ≥H] view or None, lens int32 [B] or None,
    rbh float32 [Hp] or None (GRU linear_before_reset), clip ≤ 0 for none."""
    cdef int G = 4 if kind == QE_F32_RNN_LSTM else 3
    cdef int T = gx.shape[0], B = gx.shape[1], Hp = h.shape[1]
    cdef cnp.ndarray ra = _f32c(r_packed, "packed R", 1)
    cdef float[:, ::1] cv
    cdef float[:, :, :] yv
    cdef const int32_t[::1] lv
    cdef const float[::1] rv
    cdef qe_f32_rnn_layer L
    memset(&L, 0, sizeof(L))
    if gx.strides[2] != 4 or gx.shape[2] != G * Hp or h.shape[0] != B:
        raise ValueError("rnn: inconsistent gx/h shapes")
    L.kind, L.T, L.B, L.H, L.Hp = kind, T, B, H, Hp
    L.linear_before_reset, L.reverse = linear_before_reset, reverse
    L.gx_s, L.gx_b = gx.strides[0] // 4, gx.strides[1] // 4
    L.gx = &gx[0, 0, 0] if T else NULL
    L.h = &h[0, 0]
    L.r, L.r_tile = _f(ra), r_tile
    L.clip = clip
    L.isa, L.nthreads = isa, nthreads
    if kind == QE_F32_RNN_LSTM:
        cv = c
        if cv.shape[0] != B or cv.shape[1] != Hp:
            raise ValueError("rnn: c must have the shape of h")
        L.c = &cv[0, 0]
    if rbh is not None:
        rv = rbh
        if rv.shape[0] != Hp:
            raise ValueError("rnn: rbh must have Hp values")
        L.rbh = &rv[0]
    if lens is not None:
        lv = lens
        if lv.shape[0] != B:
            raise ValueError("rnn: lens must have B values")
        L.lens = &lv[0]
    if y is not None and T:
        yv = y
        if yv.shape[0] != T or yv.shape[1] != B or yv.shape[2] < H or yv.strides[2] != 4:
            raise ValueError("rnn: y must be [T, B, >= H] with unit stride on the last axis")
        L.y = &yv[0, 0, 0]
        L.y_s, L.y_b = yv.strides[0] // 4, yv.strides[1] // 4
    cdef int rc
    with nogil:
        rc = qe_f32_rnn_layer_run(&L)
    _check(rc, "recurrent layer")


cdef extern from "qengine/f32/qe_f32_rows.h" nogil:
    void qe_f32_softmax_rows(int isa, size_t rows, size_t n, const float *x, float *y)
    void qe_f32_layer_norm_rows(int isa, size_t rows, size_t n, const float *x, const float *scale,
                                const float *bias, float eps, float *y, float *mean, float *inv)


def softmax_rows(x, y, int isa):
    """y = softmax of x over its last axis; both C-contiguous float32 of one shape (n > 0).
    The same bits for every isa."""
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == np.float32
            and y.dtype == np.float32 and x.flags.c_contiguous and y.flags.c_contiguous
            and x.shape == y.shape and x.ndim >= 1 and x.shape[x.ndim - 1] > 0):
        raise ValueError("softmax_rows: x and y must be C-contiguous float32 of one shape")
    cdef size_t n = x.shape[x.ndim - 1]
    cdef size_t rows = x.size // n
    cdef const float *xp = _f(x)
    cdef float *yp = _f(y)
    with nogil:
        qe_f32_softmax_rows(isa, rows, n, xp, yp)


def layer_norm_rows(x, scale, bias, float eps, y, mean, inv, int isa):
    """LayerNormalization of rows of `scale.size` values: x and y C-contiguous float32 of one
    shape whose size is a multiple of n = scale.size; scale, bias (or None) float32 of n values;
    mean and inv (or None) float32 with one value per row, written. The same bits for every
    isa."""
    cdef cnp.ndarray s = _f32c(scale, "scale", 1)
    cdef size_t n = s.shape[0]
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == np.float32
            and y.dtype == np.float32 and x.flags.c_contiguous and y.flags.c_contiguous
            and x.shape == y.shape and n > 0 and x.size % n == 0):
        raise ValueError("layer_norm_rows: x and y must be C-contiguous float32 of one shape "
                         "made of rows of scale.size values")
    cdef size_t rows = x.size // n
    cdef const float *bp = NULL
    cdef float *mp = NULL
    cdef float *ip = NULL
    cdef cnp.ndarray b, m, i
    if bias is not None:
        b = _f32c(bias, "bias", 1)
        if b.shape[0] != n:
            raise ValueError(f"layer_norm_rows: bias has {b.shape[0]} values, expected {n}")
        bp = _f(b)
    for arr, what in ((mean, "mean"), (inv, "inv")):
        if arr is not None and not (isinstance(arr, np.ndarray) and arr.dtype == np.float32
                                    and arr.flags.c_contiguous and arr.size == rows):
            raise ValueError(f"layer_norm_rows: {what} must be C-contiguous float32 of {rows}")
    if mean is not None:
        m = mean
        mp = _f(m)
    if inv is not None:
        i = inv
        ip = _f(i)
    cdef const float *xp = _f(x)
    cdef const float *sp = _f(s)
    cdef float *yp = _f(y)
    with nogil:
        qe_f32_layer_norm_rows(isa, rows, n, xp, sp, bp, eps, yp, mp, ip)


cdef extern from "qengine/f32/qe_f32_resize.h" nogil:
    void qe_f32_resize_axis(size_t outer, size_t n_in, size_t inner, size_t n_out, size_t k,
                            const int64_t *idx, const float *w, const float *x, float *y)


def resize_axis(x, int axis, idx, w):
    """One axis of a separable Resize: x C-contiguous float32; idx int64 [n_out, k] of indices
    in [0, x.shape[axis]); w float32 [n_out, k]. Returns the resized float32 array."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
        raise ValueError("resize_axis: x must be C-contiguous float32")
    cdef cnp.ndarray iv = np.ascontiguousarray(idx, np.int64)
    cdef cnp.ndarray wv = np.ascontiguousarray(w, np.float32)
    if iv.ndim != 2 or (<object>wv).shape != (<object>iv).shape or not 0 <= axis < x.ndim:
        raise ValueError("resize_axis: idx and w must be [n_out, k] of one shape")
    cdef size_t n_in = x.shape[axis], n_out = iv.shape[0], k = iv.shape[1]
    if n_out and (k == 0 or iv.min() < 0 or iv.max() >= <long long>n_in):
        raise ValueError(f"resize_axis: indices must lie in [0, {n_in})")
    cdef size_t outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    cdef size_t inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    y = np.empty(x.shape[:axis] + (n_out,) + x.shape[axis + 1:], np.float32)
    cdef const float *xp = _f(x)
    cdef float *yp = _f(y)
    cdef const int64_t *ip = <const int64_t *>cnp.PyArray_DATA(iv)
    cdef const float *wp = _f(wv)
    if y.size:
        with nogil:
            qe_f32_resize_axis(outer, n_in, inner, n_out, k, ip, wp, xp, yp)
    return y


cdef extern from "qengine/f32/qe_f32_attention.h" nogil:
    ctypedef struct qe_f32_attention_args:
        size_t batch, sq, sk, d, e
        const float *q
        const float *k
        const float *v
        ptrdiff_t qb, qr, qc, kb, kr, kc, vb, vr, vc
        float cq, ck
        float *y
    int qe_f32_attention(int isa, const qe_f32_attention_args *a)


cdef ptrdiff_t _estride(cnp.ndarray a, int axis) except? -1:
    cdef ptrdiff_t s = a.strides[axis]
    if s % 4:
        raise ValueError("attention: strides must be whole float32 elements")
    return s // 4


def attention(q, k, v, float cq, float ck, int isa):
    """softmax((q·cq)(k·ck)) · v per batch: q [B, Sq, D], k [B, D, Sk] (K transposed),
    v [B, Sk, E], float32 3-D arrays of any strides; returns a new C-contiguous [B, Sq, E].
    The same bits for every isa (include/qengine/f32/qe_f32_attention.h)."""
    for arr, what in ((q, "q"), (k, "k"), (v, "v")):
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.ndim == 3):
            raise ValueError(f"attention: {what} must be a 3-D float32 array")
    cdef cnp.ndarray qa = q, ka = k, va = v
    cdef size_t B = qa.shape[0], sq = qa.shape[1], d = qa.shape[2]
    cdef size_t sk = ka.shape[2], e = va.shape[2]
    if ka.shape[0] != B or va.shape[0] != B or ka.shape[1] != d or va.shape[1] != sk:
        raise ValueError(f"attention: shapes q {q.shape}, k {k.shape}, v {v.shape} do not "
                         f"chain as [B, Sq, D] · [B, D, Sk] · [B, Sk, E]")
    if 0 in (B, sq, d, sk, e):
        raise ValueError("attention: every dimension must be non-zero")
    y = np.empty((B, sq, e), np.float32)
    cdef cnp.ndarray ya = y
    cdef qe_f32_attention_args a
    a.batch, a.sq, a.sk, a.d, a.e = B, sq, sk, d, e
    a.q, a.k, a.v, a.y = _f(qa), _f(ka), _f(va), _f(ya)
    a.qb, a.qr, a.qc = _estride(qa, 0), _estride(qa, 1), _estride(qa, 2)
    a.kb, a.kr, a.kc = _estride(ka, 0), _estride(ka, 1), _estride(ka, 2)
    a.vb, a.vr, a.vc = _estride(va, 0), _estride(va, 1), _estride(va, 2)
    a.cq, a.ck = cq, ck
    cdef int rc
    with nogil:
        rc = qe_f32_attention(isa, &a)
    if rc:
        raise MemoryError("attention: could not allocate its scratch")
    return y
