# cython: language_level=3
"""Thin nogil wrappers over the static-int8 CNN kernels (include/qengine/conv, pool, eltwise).
Arguments are validated by qengine/quantized/*.py (dtypes, C-contiguity, shapes, ranges); this
layer maps arrays to pointers and C error codes to exceptions."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, uint8_t, int32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.math cimport INFINITY
from qe_gemm cimport *
from qe_omp cimport bind_thread_state

cnp.import_array()
bind_thread_state()

cdef extern from "qengine/conv/qe_conv.h" nogil:
    ctypedef struct qe_conv_shape:
        size_t n, h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, groups, cin_g, cout_g
    int qe_conv2d_gemm(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                       const qe_packed_w *w, const qe_gemm_epilogue *ep, uint8_t *y,
                       int nthreads)
    int qe_conv2d_gemm_nchw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                            const qe_packed_w *w, const qe_gemm_epilogue *ep, float *y,
                            float lo, float hi, int nthreads)

cdef extern from "qengine/conv/qe_dwconv.h" nogil:
    ctypedef struct qe_dwconv_params:
        const void *w
        size_t wstride
        const int32_t *bias
        const float *mult
        int32_t zp, lo, hi
        int32_t layout
        const float *fbias
    int qe_conv2d_dw(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                     const qe_dwconv_params *p, uint8_t *y, int nthreads)
    int qe_conv2d_dw_dequant(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                             float a_scale, const qe_dwconv_params *pk, const int32_t *wsum,
                             size_t nwsum, const float *w_scale, const float *bias, float lo,
                             float hi, float *y, int nthreads)
    const char *qe_dwconv_ukernel_name(int isa)
    const char *qe_dwconv_dequant_ukernel_name(int isa)
    int qe_dwconv_layout(int isa)

cdef extern from "qengine/conv/qe_conv_dynamic.h" nogil:
    int qe_dynq_u8_nchw(int isa, size_t n, size_t c, size_t hw, const float *x, uint8_t *q,
                        float *scale, int32_t *zp, int nthreads)

cdef extern from "qengine/conv/qe_conv1x1_dynamic.h" nogil:
    ctypedef struct qe_conv1x1_dyn_w:
        const void *apack
        const int32_t *wsum
        const float *w_scale
        const float *bias
        size_t cout, cin
        int32_t isa
    size_t qe_conv1x1_dyn_apack_bytes(int isa, size_t cout, size_t cin)
    int qe_conv1x1_dyn_pack(int isa, size_t cout, size_t cin, const int8_t *w, void *apack,
                            int32_t *wsum)
    int qe_conv1x1_dynamic(int isa, const qe_conv1x1_dyn_w *w, size_t n, size_t p,
                           const float *x, float lo, float hi, float *y, int nthreads)

cdef extern from "qengine/pool/qe_pool.h" nogil:
    ctypedef struct qe_pool_params:
        int32_t kind, count_include_pad
        size_t pb, pr
        int32_t x_zp, zp, lo, hi
        const float *mult
    int qe_pool2d(const qe_conv_shape *s, const qe_pool_params *p, const uint8_t *x, uint8_t *y,
                  int nthreads)

cdef extern from "qengine/eltwise/qe_eltwise.h" nogil:
    ctypedef struct qe_u8_binary_params:
        int32_t a_zp, b_zp, zp, lo, hi
        float a_mult, b_mult
    ctypedef void (*qe_u8_binary_fn)(size_t n, const uint8_t *a, const uint8_t *b, uint8_t *y,
                                     const qe_u8_binary_params *p)
    qe_u8_binary_fn qe_u8_binary_for_isa(int op, int isa)
    int qe_u8_binary(int op, int isa, size_t n, const uint8_t *a, const uint8_t *b, uint8_t *y,
                     const qe_u8_binary_params *p, int nthreads)
    void qe_u8_lut(size_t n, const uint8_t *x, const uint8_t *table, uint8_t *y, int nthreads)

cdef extern from "qengine/eltwise/qe_u8_residual.h" nogil:
    ctypedef struct qe_u8_residual:
        const uint8_t *skip
        size_t lds
        qe_u8_binary_fn add
        qe_u8_binary_params p

cdef extern from "qengine/conv/qe_conv.h" nogil:
    int qe_conv2d_gemm_add(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                           const qe_packed_w *w, const qe_gemm_epilogue *ep,
                           const qe_u8_residual *res, uint8_t *y, int nthreads)
    int qe_gemm_ex(int isa, size_t m, const uint8_t *a, size_t lda, const qe_packed_w *w,
                   const qe_gemm_epilogue *ep, const qe_u8_residual *res, void *out, size_t ldc,
                   int nthreads, void *ws, size_t ws_bytes)


cdef extern from "qengine/conv/qe_conv_w4.h" nogil:
    int qe_conv2d_w4(int isa, const qe_conv_shape *s, const uint8_t *x, int32_t a_zp,
                     const qe_packed_w4 *w, const qe_gemm_epilogue *ep, const qe_u8_residual *res,
                     uint8_t *y, int nthreads)


cdef inline void *_d(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


cdef int _check(int rc) except -1:
    if rc == 0:
        return 0
    if rc == -2:
        raise MemoryError("qengine conv: out of memory for the scratch buffers")
    msg = {-1: "no kernel for this ISA, or weights packed for another ISA",
           -3: f"K = kh*kw*Cin/groups out of range (1..{QE_GEMM_MAX_K})",
           -4: "inconsistent sizes or parameters"}.get(rc, f"error {rc}")
    raise ValueError(f"qengine conv kernel: {msg}")


cdef qe_conv_shape _shape(tuple t):
    cdef qe_conv_shape s
    (s.n, s.h, s.w, s.c, s.oh, s.ow, s.cout, s.kh, s.kw, s.sh, s.sw, s.dh, s.dw, s.pt, s.pl,
     s.groups, s.cin_g, s.cout_g) = t
    return s


def dw_kernel_name(int isa):
    return qe_dwconv_ukernel_name(isa).decode()


def dw_dequant_kernel_name(int isa):
    return qe_dwconv_dequant_ukernel_name(isa).decode()


def dw_kernel_layout(int isa):
    """The packed-weight layout the ISA's depthwise kernel reads: 0 = int32 lanes [taps, C],
    1 = 64-channel vpdpbusd blocks, 4 taps per lane (include/qengine/conv/qe_dwconv_params.h)."""
    return qe_dwconv_layout(isa)


cdef int _residual(qe_u8_residual *r, int isa, cnp.ndarray skip, tuple add,
                   size_t lds) except -1:
    """The fused QAdd of a conv / GEMM output with `skip` (C-contiguous uint8, laid out like the
    output): add = (a_zp, b_zp, zp, lo, hi, a_mult, b_mult), operand a = the output."""
    if skip.dtype != np.uint8 or not skip.flags.c_contiguous:
        raise ValueError("qengine conv kernel: the residual must be C-contiguous uint8")
    r.skip = <const uint8_t *>_d(skip)
    r.lds = lds
    r.add = qe_u8_binary_for_isa(0, isa)
    r.p.a_zp, r.p.b_zp, r.p.zp, r.p.lo, r.p.hi, r.p.a_mult, r.p.b_mult = add
    return 0


cdef int _conv_gemm(int isa, tuple shape, cnp.ndarray x, int a_zp, list packs,
                    const qe_gemm_epilogue *ep, cnp.ndarray y, int nthreads, bint nchw=False,
                    float lo=-INFINITY, float hi=INFINITY,
                    const qe_u8_residual *res=NULL) except -1:
    """qe_conv2d_gemm (or, nchw, qe_conv2d_gemm_nchw; with res, qe_conv2d_gemm_add) over
    packs[g] = (data, colsum, n, k, kp), one packed matrix per group."""
    cdef qe_conv_shape s = _shape(shape)
    cdef size_t g, ng = len(packs)
    cdef qe_packed_w *w = <qe_packed_w *>malloc(sizeof(qe_packed_w) * ng)
    if w == NULL:
        raise MemoryError()
    for g in range(ng):
        w[g].data = _d(packs[g][0])
        w[g].colsum = <const int32_t *>_d(packs[g][1])
        w[g].w_zp = NULL
        w[g].n, w[g].k, w[g].kp = packs[g][2], packs[g][3], packs[g][4]
        w[g].isa = isa
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef int rc
    with nogil:
        if nchw:
            rc = qe_conv2d_gemm_nchw(isa, &s, px, a_zp, w, ep, <float *>py, lo, hi, nthreads)
        elif res != NULL:
            rc = qe_conv2d_gemm_add(isa, &s, px, a_zp, w, ep, res, py, nthreads)
        else:
            rc = qe_conv2d_gemm(isa, &s, px, a_zp, w, ep, py, nthreads)
    free(w)
    _check(rc)
    return 0


def conv2d_gemm(int isa, cnp.ndarray x, tuple shape, int a_zp, list packs,
                cnp.ndarray col_bias, cnp.ndarray mult, int zp, int lo, int hi,
                cnp.ndarray y, int nthreads=0, cnp.ndarray skip=None, tuple add=None):
    """x uint8 NHWC, y uint8 NHWC (C-contiguous); packs[g] = (data, colsum, n, k, kp).
    With skip (uint8, y's shape, not overlapping y) and add = (a_zp, b_zp, zp, lo, hi,
    a_mult, b_mult): y = QAdd(conv(x), skip), the add fused into the conv's tiles."""
    cdef qe_gemm_epilogue ep
    cdef qe_u8_residual res
    memset(&ep, 0, sizeof(ep))
    ep.col_bias = <const int32_t *>_d(col_bias)
    ep.multiplier = <const float *>_d(mult)
    ep.kind = QE_EPI_U8
    ep.out_zp, ep.lo, ep.hi = zp, lo, hi
    if skip is None:
        _conv_gemm(isa, shape, x, a_zp, packs, &ep, y, nthreads)
        return
    if skip.size != y.size:
        raise ValueError("qengine conv kernel: the residual must have the output's shape")
    _residual(&res, isa, skip, add, y.shape[y.ndim - 1])
    _conv_gemm(isa, shape, x, a_zp, packs, &ep, y, nthreads, False, -INFINITY, INFINITY, &res)


def conv2d_w4(int isa, cnp.ndarray x, tuple shape, int a_zp, list packs,
              cnp.ndarray col_bias, cnp.ndarray mult, int zp, int lo, int hi,
              cnp.ndarray y, int nthreads=0, cnp.ndarray skip=None, tuple add=None):
    """conv2d_gemm with 4-bit weights (include/qengine/conv/qe_conv_w4.h): packs[g] =
    (data, colsum, scale, n, k, gs, ng) from _gemm.w4_pack with one group per row."""
    cdef qe_conv_shape s = _shape(shape)
    cdef qe_gemm_epilogue ep
    cdef qe_u8_residual res
    cdef const qe_u8_residual *pres = NULL
    memset(&ep, 0, sizeof(ep))
    ep.col_bias = <const int32_t *>_d(col_bias)
    ep.multiplier = <const float *>_d(mult)
    ep.kind = QE_EPI_U8
    ep.out_zp, ep.lo, ep.hi = zp, lo, hi
    if skip is not None:
        if skip.size != y.size:
            raise ValueError("qengine conv kernel: the residual must have the output's shape")
        _residual(&res, isa, skip, add, y.shape[y.ndim - 1])
        pres = &res
    cdef size_t g, ngr = len(packs)
    cdef qe_packed_w4 *w = <qe_packed_w4 *>malloc(sizeof(qe_packed_w4) * ngr)
    if w == NULL:
        raise MemoryError()
    for g in range(ngr):
        w[g].data = <const uint8_t *>_d(packs[g][0])
        w[g].colsum = <const int32_t *>_d(packs[g][1])
        w[g].scale = <const float *>_d(packs[g][2])
        w[g].n, w[g].k, w[g].gs, w[g].ng = packs[g][3], packs[g][4], packs[g][5], packs[g][6]
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_conv2d_w4(isa, &s, px, a_zp, w, &ep, pres, py, nthreads)
    free(w)
    _check(rc)


def conv2d_gemm_f32(int isa, cnp.ndarray x, tuple shape, int a_zp, float a_scale, list packs,
                    cnp.ndarray w_scale, object bias, cnp.ndarray y, int nthreads=0,
                    bint nchw=False, float lo=-INFINITY, float hi=INFINITY):
    """Dynamic quantization: x uint8 NHWC quantized per tensor with (a_scale, a_zp); y float32
    = float32(acc)·float32(a_scale·w_scale[o]) + bias[o] (docs/numerics.md epilogue (a)), NHWC,
    or with nchw NCHW [n, cout, oh, ow] clamped to [lo, hi] (a fused activation)."""
    cdef int32_t zp = a_zp
    cdef float sc = a_scale
    cdef qe_gemm_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = QE_EPI_F32
    ep.a_zp = &zp
    ep.a_scale = &sc
    ep.w_scale = <const float *>_d(w_scale)
    ep.bias = NULL if bias is None else <const float *>_d(bias)
    _conv_gemm(isa, shape, x, a_zp, packs, &ep, y, nthreads, nchw, lo, hi)


def dynq_nchw(int isa, cnp.ndarray x, cnp.ndarray q, int nthreads=0):
    """x float32 NCHW [n, c, h, w] -> q uint8 NHWC [n, h, w, c] quantized per tensor
    (asymmetric u8, numerics.md); returns (scale, zero_point)."""
    cdef size_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
    cdef const float *px = <const float *>_d(x)
    cdef uint8_t *pq = <uint8_t *>_d(q)
    cdef float sc = 1.0
    cdef int32_t zp = 0
    with nogil:
        qe_dynq_u8_nchw(isa, n, c, hw, px, pq, &sc, &zp, nthreads)
    return sc, zp


def dwconv_dequant(int isa, cnp.ndarray x, tuple shape, int a_zp, float a_scale,
                   cnp.ndarray wpk, int layout, cnp.ndarray wsum, cnp.ndarray w_scale,
                   object bias, cnp.ndarray y, float lo=-INFINITY, float hi=INFINITY,
                   int nthreads=0):
    """Dynamic depthwise: x uint8 NHWC [n, h, w, c] quantized with (a_scale, a_zp); wpk / wsum
    as packed for `layout` (wsum = Σ_t w in layout order); w_scale, bias f32 [c] (channel
    order); y float32 NCHW [n, c, oh, ow], clamped to [lo, hi]."""
    cdef qe_conv_shape s = _shape(shape)
    cdef qe_dwconv_params p
    memset(&p, 0, sizeof(p))
    p.w = _d(wpk)
    p.wstride = wpk.shape[1] if layout == 0 else 0
    p.layout = layout
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef const int32_t *pws = <const int32_t *>_d(wsum)
    cdef size_t nws = wsum.shape[0]
    cdef const float *psc = <const float *>_d(w_scale)
    cdef const float *pb = NULL if bias is None else <const float *>_d(<cnp.ndarray>bias)
    cdef float *py = <float *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_conv2d_dw_dequant(isa, &s, px, a_zp, a_scale, &p, pws, nws, psc, pb, lo, hi, py,
                                  nthreads)
    _check(rc)


def conv1x1_dyn_pack(int isa, cnp.ndarray w):
    """w int8 [cout, cin] (C-contiguous) -> (apack uint8, wsum int32 [cout]) for
    conv1x1_dynamic: the weights + 128 as the ISA's GEMM A panels (qe_conv1x1_dynamic.h)."""
    cdef size_t cout = w.shape[0], cin = w.shape[1]
    apack = np.zeros(max(qe_conv1x1_dyn_apack_bytes(isa, cout, cin), 1), np.uint8)
    wsum = np.empty(cout, np.int32)
    _check(qe_conv1x1_dyn_pack(isa, cout, cin, <const int8_t *>_d(w), _d(apack),
                               <int32_t *>_d(wsum)))
    return apack, wsum


def conv1x1_dynamic(int isa, cnp.ndarray apack, cnp.ndarray wsum, cnp.ndarray w_scale,
                    object bias, size_t cin, cnp.ndarray x, cnp.ndarray y, float lo=-INFINITY,
                    float hi=INFINITY, int nthreads=0):
    """Dynamic 1×1 stride-1 conv, one group, NCHW throughout: x float32 [n, cin, h, w] ->
    y float32 [n, cout, h, w] (C-contiguous), clamped to [lo, hi]; apack / wsum from
    conv1x1_dyn_pack for the same isa."""
    cdef qe_conv1x1_dyn_w w
    w.apack = _d(apack)
    w.wsum = <const int32_t *>_d(wsum)
    w.w_scale = <const float *>_d(w_scale)
    w.bias = NULL if bias is None else <const float *>_d(<cnp.ndarray>bias)
    w.cout = wsum.shape[0]
    w.cin = cin
    w.isa = isa
    cdef size_t n = x.shape[0], p = x.shape[2] * x.shape[3]
    cdef const float *px = <const float *>_d(x)
    cdef float *py = <float *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_conv1x1_dynamic(isa, &w, n, p, px, lo, hi, py, nthreads)
    _check(rc)


def conv1x1(int isa, cnp.ndarray x, size_t m, size_t cin, list packs, cnp.ndarray col_bias,
            cnp.ndarray mult, int zp, int lo, int hi, cnp.ndarray y, size_t cout,
            int nthreads=0, cnp.ndarray skip=None, tuple add=None):
    """1×1 stride-1 unpadded conv as GEMM straight over the NHWC pixels: x [m, cin], y [m, cout];
    group g reads columns g·cin_g.. of x and writes columns g·cout_g.. of y. skip / add: as for
    conv2d_gemm, y = QAdd(conv(x), skip) fused into the GEMM's tiles (qe_gemm_ex)."""
    cdef size_t g, ng = len(packs)
    cdef size_t cin_g = cin // ng, cout_g = cout // ng
    cdef qe_packed_w w
    cdef qe_gemm_epilogue ep
    cdef qe_u8_residual res
    cdef qe_u8_residual *pres = NULL
    cdef const uint8_t *pskip = NULL
    if skip is not None:
        if skip.size != y.size:
            raise ValueError("qengine conv kernel: the residual must have the output's shape")
        _residual(&res, isa, skip, add, cout)
        pres = &res
        pskip = res.skip
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef const int32_t *pb = <const int32_t *>_d(col_bias)
    cdef const float *pm = <const float *>_d(mult)
    cdef int rc = 0
    memset(&ep, 0, sizeof(ep))
    ep.kind = QE_EPI_U8
    ep.out_zp, ep.lo, ep.hi = zp, lo, hi
    for g in range(ng):
        w.data = _d(packs[g][0])
        w.colsum = <const int32_t *>_d(packs[g][1])
        w.w_zp = NULL
        w.n, w.k, w.kp = packs[g][2], packs[g][3], packs[g][4]
        w.isa = isa
        ep.col_bias = pb + g * cout_g
        ep.multiplier = pm + g * cout_g
        if pres != NULL:
            res.skip = pskip + g * cout_g
        with nogil:
            rc = qe_gemm_ex(isa, m, px + g * cin_g, cin, &w, &ep, pres, py + g * cout_g, cout,
                            nthreads, NULL, 0)
        if rc:
            break
    _check(rc)


def dwconv(int isa, cnp.ndarray x, tuple shape, int a_zp, cnp.ndarray wpk, int layout,
           cnp.ndarray bias, cnp.ndarray mult, int zp, int lo, int hi, cnp.ndarray y,
           int nthreads=0):
    """x uint8 NHWC [n, h, w, c]; wpk the weights packed in `layout` (layout 0: int32
    [kh·kw, c], low half = int8 weight); bias int32 / mult f32 in layout order (folded bias);
    y uint8 NHWC [n, oh, ow, c]."""
    cdef qe_conv_shape s = _shape(shape)
    cdef qe_dwconv_params p
    memset(&p, 0, sizeof(p))
    p.w = _d(wpk)
    p.wstride = wpk.shape[1] if layout == 0 else 0
    p.layout = layout
    p.bias = <const int32_t *>_d(bias)
    p.mult = <const float *>_d(mult)
    p.zp, p.lo, p.hi = zp, lo, hi
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_conv2d_dw(isa, &s, px, a_zp, &p, py, nthreads)
    _check(rc)


def pool2d(int kind, cnp.ndarray x, tuple shape, size_t pb, size_t pr, bint count_include_pad,
           int x_zp, int zp, int lo, int hi, mult, cnp.ndarray y, int nthreads=0):
    """kind 0 max / 1 average; mult f32 [kh·kw + 1] (average) or None."""
    cdef qe_conv_shape s = _shape(shape)
    cdef qe_pool_params p
    p.kind, p.count_include_pad, p.pb, p.pr = kind, count_include_pad, pb, pr
    p.x_zp, p.zp, p.lo, p.hi = x_zp, zp, lo, hi
    p.mult = NULL if mult is None else <const float *>_d(<cnp.ndarray>mult)
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_pool2d(&s, &p, px, py, nthreads)
    _check(rc)


def binary(int op, int isa, cnp.ndarray a, cnp.ndarray b, cnp.ndarray y, int a_zp, int b_zp,
           int zp, int lo, int hi, float a_mult, float b_mult, int nthreads=0):
    """op 0 add / 1 mul on equal-size C-contiguous uint8 arrays."""
    cdef qe_u8_binary_params p
    p.a_zp, p.b_zp, p.zp, p.lo, p.hi, p.a_mult, p.b_mult = a_zp, b_zp, zp, lo, hi, a_mult, b_mult
    cdef size_t n = y.size
    cdef const uint8_t *pa = <const uint8_t *>_d(a)
    cdef const uint8_t *pb = <const uint8_t *>_d(b)
    cdef uint8_t *py = <uint8_t *>_d(y)
    cdef int rc
    with nogil:
        rc = qe_u8_binary(op, isa, n, pa, pb, py, &p, nthreads)
    _check(rc)


def lut(cnp.ndarray x, cnp.ndarray table, cnp.ndarray y, int nthreads=0):
    """y = table[x] for C-contiguous uint8 x, y and a uint8 [256] table."""
    cdef size_t n = x.size
    cdef const uint8_t *px = <const uint8_t *>_d(x)
    cdef const uint8_t *pt = <const uint8_t *>_d(table)
    cdef uint8_t *py = <uint8_t *>_d(y)
    with nogil:
        qe_u8_lut(n, px, pt, py, nthreads)
