# cython: language_level=3
"""Thin nogil wrappers over the C GEMM driver. Inputs are validated by qengine/functional.py
(dtypes, C-contiguity, shapes); this layer only maps arrays to pointers and C errors to Python."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, uint8_t, int32_t
from libc.string cimport memset
from qe_gemm cimport *
from qe_omp cimport bind_thread_state

cnp.import_array()
bind_thread_state()


cdef const void *_p(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _check(int rc) except -1:
    if rc == QE_GEMM_OK:
        return 0
    if rc == QE_GEMM_ENOMEM:
        raise MemoryError("qengine GEMM: out of memory for the workspace")
    msg = {QE_GEMM_EISA: "no kernel for this ISA, or weights packed for another ISA",
           QE_GEMM_EK: f"K out of range (1..{QE_GEMM_MAX_K}, {QE_GEMM_MAX_K_WZP} with weight zero points)",
           QE_GEMM_EARG: "inconsistent sizes, strides or epilogue parameters"}.get(rc, f"error {rc}")
    raise ValueError(f"qengine GEMM driver: {msg}")


MAX_K = QE_GEMM_MAX_K
MAX_K_WZP = QE_GEMM_MAX_K_WZP
PAR_MIN_MACS = QE_GEMM_PAR_MIN_MACS
EPI_INT32, EPI_F32, EPI_U8, EPI_S8 = QE_EPI_INT32, QE_EPI_F32, QE_EPI_U8, QE_EPI_S8


def kernel_table():
    """Every compiled GEMM kernel (from qe_gemm_kernels.inc) as dicts."""
    return [dict(name=qe_gemm_kernels[i].name.decode(), isa=qe_gemm_kernels[i].isa,
                 mr=qe_gemm_kernels[i].mr, nr=qe_gemm_kernels[i].nr, kr=qe_gemm_kernels[i].kr,
                 kpad=qe_gemm_kernels[i].kpad,
                 elem=qe_gemm_kernels[i].elem,
                 fused_requant=qe_gemm_kernels[i].ukernel_requant != NULL,
                 fused_dequant=qe_gemm_kernels[i].ukernel_dequant != NULL,
                 fused_gemv_dequant=qe_gemm_kernels[i].gemv_dequant != NULL,
                 indirect=qe_gemm_kernels[i].igemm != NULL)
            for i in range(QE_GEMM_NKERNELS)]


def packed_bytes(int isa, size_t n, size_t k):
    cdef const qe_gemm_kernel_rec *r = qe_gemm_kernel_for_isa(isa)
    if r == NULL:
        _check(QE_GEMM_EISA)
    return qe_gemm_packed_w_bytes(r, n, k)


def pack(int isa, cnp.ndarray w, cnp.ndarray out, cnp.ndarray colsum):
    """w int8 [N, K] C-contiguous -> out (uint8, packed_bytes), colsum int32 [N]."""
    cdef size_t n = w.shape[0], k = w.shape[1]
    cdef const int8_t *pw = <const int8_t *>cnp.PyArray_DATA(w)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef int32_t *pc = <int32_t *>cnp.PyArray_DATA(colsum)
    cdef int rc
    with nogil:
        rc = qe_gemm_pack_weights(isa, n, k, pw, k, po, pc)
    _check(rc)


cdef qe_packed_w _packed(int isa, object data, object colsum, object w_zp, int n, int k, int kp):
    cdef qe_packed_w w
    w.data = _p(data)
    w.colsum = <const int32_t *>_p(colsum)
    w.w_zp = <const int32_t *>_p(w_zp)
    w.n = n
    w.k = k
    w.kp = kp
    w.isa = isa
    return w


def gemm(int isa, cnp.ndarray a, tuple wp, int kind, cnp.ndarray out, *, a_zp=None,
         a_scale=None, int row_step=0, col_bias=None, w_scale=None, bias=None, multiplier=None,
         int out_zp=0, int lo=0, int hi=0, bint accumulate=False, int nthreads=0):
    """a uint8 [M, >=K] (rows contiguous), wp = (data, colsum, w_zp, n, k, kp),
    out [M, >=N] of the epilogue's dtype (rows contiguous)."""
    cdef qe_packed_w w = _packed(isa, wp[0], wp[1], wp[2], wp[3], wp[4], wp[5])
    cdef qe_gemm_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.a_zp = <const int32_t *>_p(a_zp)
    ep.a_scale = <const float *>_p(a_scale)
    ep.col_bias = <const int32_t *>_p(col_bias)
    ep.w_scale = <const float *>_p(w_scale)
    ep.bias = <const float *>_p(bias)
    ep.multiplier = <const float *>_p(multiplier)
    ep.row_step = row_step
    ep.kind = kind
    ep.accumulate = accumulate
    ep.out_zp = out_zp
    ep.lo = lo
    ep.hi = hi
    cdef size_t m = a.shape[0]
    cdef const uint8_t *pa = <const uint8_t *>cnp.PyArray_DATA(a)
    cdef size_t lda = a.strides[0]
    cdef size_t ldc = out.strides[0] // out.itemsize
    cdef void *po = cnp.PyArray_DATA(out)
    cdef int rc
    with nogil:
        rc = qe_gemm(isa, m, pa, lda, &w, &ep, po, ldc, nthreads, NULL, 0)
    _check(rc)
    return out


def dynq(int isa, cnp.ndarray x, bint per_row, cnp.ndarray q, cnp.ndarray scale, cnp.ndarray zp):
    """x float32 [M, K] C-contiguous -> q uint8 [M, >=K], scale f32, zp int32 ([M] or [1])."""
    cdef size_t m = x.shape[0], k = x.shape[1]
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    cdef uint8_t *pq = <uint8_t *>cnp.PyArray_DATA(q)
    cdef size_t ldq = q.strides[0]
    cdef float *ps = <float *>cnp.PyArray_DATA(scale)
    cdef int32_t *pz = <int32_t *>cnp.PyArray_DATA(zp)
    cdef int rc
    with nogil:
        rc = qe_dynq_u8(isa, m, k, px, k, per_row, pq, ldq, ps, pz)
    _check(rc)


def linear_dynamic(int isa, cnp.ndarray x, bint per_row, tuple wp, cnp.ndarray w_scale, bias,
                   cnp.ndarray out, bint accumulate=False, int nthreads=0):
    """x float32 [M, K] C-contiguous -> out float32 [M, >=N] (rows contiguous)."""
    cdef qe_packed_w w = _packed(isa, wp[0], wp[1], wp[2], wp[3], wp[4], wp[5])
    cdef size_t m = x.shape[0]
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    cdef const float *ps = <const float *>cnp.PyArray_DATA(w_scale)
    cdef const float *pb = <const float *>_p(bias)
    cdef float *po = <float *>cnp.PyArray_DATA(out)
    cdef size_t ldc = out.strides[0] // 4
    cdef int rc
    with nogil:
        rc = qe_gemm_linear_dynamic(isa, m, px, w.k, per_row, &w, ps, pb, po, ldc, accumulate,
                                    nthreads, NULL, 0)
    _check(rc)
    return out


# ---------------------------------------------------------------------------------------------
# 4-bit weights (include/qengine/gemm/qe_gemm_w4.h)
W4_NR = QE_W4_NR
W4_MAX_K = QE_W4_MAX_K


def w4_kernel_table():
    """Every compiled 4-bit-weight kernel (qe_gemm_w4_kernels.inc) as dicts."""
    return [dict(name=qe_gemm_w4_kernels[i].name.decode(), isa=qe_gemm_w4_kernels[i].isa)
            for i in range(QE_GEMM_W4_NKERNELS)]


def w4_layout(size_t k, size_t group):
    """(group size, number of groups) the kernels use for K (group 0: one per row)."""
    cdef size_t gs = 0, ng = 0
    _check(qe_gemm_w4_layout(k, group, &gs, &ng))
    return gs, ng


def w4_pack(cnp.ndarray w, cnp.ndarray scale, size_t gs):
    """w int8 [N, K] in [-7, 7], scale float32 [N, NG] (both C-contiguous) ->
    (data uint8, colsum int32, scale float32) in the packed layout of qe_gemm_w4_params.h."""
    cdef size_t n = w.shape[0], k = w.shape[1], ng = scale.shape[1]
    cdef size_t np_ = (n + QE_W4_NR - 1) // QE_W4_NR
    data = np.empty(qe_gemm_w4_packed_bytes(n, gs * ng), np.uint8)
    colsum = np.empty(np_ * ng * QE_W4_NR, np.int32)
    pscale = np.empty(np_ * ng * QE_W4_NR, np.float32)
    cdef const int8_t *pw = <const int8_t *>cnp.PyArray_DATA(w)
    cdef const float *ps = <const float *>cnp.PyArray_DATA(scale)
    cdef uint8_t *pd = <uint8_t *>cnp.PyArray_DATA(data)
    cdef int32_t *pc = <int32_t *>cnp.PyArray_DATA(colsum)
    cdef float *pp = <float *>cnp.PyArray_DATA(pscale)
    cdef int rc
    with nogil:
        rc = qe_gemm_w4_pack(n, k, pw, k, ps, gs, pd, pc, pp)
    _check(rc)
    return data, colsum, pscale


cdef qe_packed_w4 w4_view(tuple wp) except *:
    """wp = (data, colsum, scale, n, k, gs, ng) -> the C view (the arrays own the memory)."""
    cdef qe_packed_w4 w
    w.data = <const uint8_t *>_p(wp[0])
    w.colsum = <const int32_t *>_p(wp[1])
    w.scale = <const float *>_p(wp[2])
    w.n, w.k, w.gs, w.ng = wp[3], wp[4], wp[5], wp[6]
    return w


def w4_dequant(int isa, cnp.ndarray a, a_scale, a_zp, int row_step, tuple wp, bias,
               cnp.ndarray out, bint accumulate=False, int nthreads=0):
    """a uint8 [M, KP] C-contiguous (zero padded past K), a_scale f32 / a_zp int32 ([M] or
    [1]) -> out float32 [M, >=N] (rows contiguous): epilogue (c) on the ISA's kernel."""
    cdef qe_packed_w4 w = w4_view(wp)
    cdef size_t m = a.shape[0], lda = a.strides[0]
    rterm = np.empty((max(m, 1), w.ng), np.int32)
    cdef const uint8_t *pa = <const uint8_t *>cnp.PyArray_DATA(a)
    cdef int32_t *pr = <int32_t *>cnp.PyArray_DATA(rterm)
    cdef const float *psa = <const float *>_p(a_scale)
    cdef const int32_t *pza = <const int32_t *>_p(a_zp)
    cdef const float *pb = <const float *>_p(bias)
    cdef float *po = <float *>cnp.PyArray_DATA(out)
    cdef size_t ldc = out.strides[0] // 4
    cdef int rc
    if lda < <size_t>(w.gs * w.ng):
        raise ValueError(f"w4_dequant: activation rows must hold {w.gs * w.ng} bytes")
    with nogil:
        qe_gemm_w4_row_terms(m, pa, lda, &w, pr)
        rc = qe_gemm_w4_dequant(isa, m, pa, lda, pr, psa, pza, row_step, &w, pb, po, ldc,
                                accumulate, nthreads)
    _check(rc)
    return out
