# Cython view of the C GEMM driver (include/qengine/gemm/qe_gemm.h, qe_gemm_dynamic.h).
# Other extensions (LSTM/GRU) `from qe_gemm cimport *` and call these nogil, without Python.
from libc.stdint cimport int8_t, uint8_t, int32_t

cdef extern from "qengine/gemm/qe_gemm_dynamic.h" nogil:
    enum:
        QE_GEMM_OK, QE_GEMM_EISA, QE_GEMM_ENOMEM, QE_GEMM_EK, QE_GEMM_EARG
        QE_EPI_INT32, QE_EPI_F32, QE_EPI_U8, QE_EPI_S8
        QE_GEMM_MAX_K, QE_GEMM_MAX_K_WZP, QE_GEMM_NKERNELS, QE_GEMM_PAR_MIN_MACS

    ctypedef struct qe_packed_w:
        const void *data
        const int32_t *colsum
        const int32_t *w_zp
        int32_t n, k, kp, isa

    ctypedef struct qe_gemm_epilogue:
        const int32_t *a_zp
        const float *a_scale
        const int32_t *col_bias
        const float *w_scale
        const float *bias
        const float *multiplier
        int32_t row_step, kind, accumulate, out_zp, lo, hi

    ctypedef struct qe_gemm_kernel_rec:
        const char *name
        int32_t isa, mr, nr, kr, kpad, elem
        void *ukernel_requant
        void *ukernel_dequant
        void *gemv_dequant
        void *igemm

    const qe_gemm_kernel_rec qe_gemm_kernels[]
    const qe_gemm_kernel_rec *qe_gemm_kernel_for_isa(int isa)
    size_t qe_gemm_packed_w_bytes(const qe_gemm_kernel_rec *r, size_t n, size_t k)
    int qe_gemm_pack_weights(int isa, size_t n, size_t k, const int8_t *w, size_t ldw,
                             void *out, int32_t *colsum)
    size_t qe_gemm_workspace_bytes(int isa, size_t m, size_t k)
    int qe_gemm(int isa, size_t m, const uint8_t *a, size_t lda, const qe_packed_w *w,
                const qe_gemm_epilogue *ep, void *out, size_t ldc, int nthreads,
                void *ws, size_t ws_bytes)
    int qe_dynq_u8(int isa, size_t m, size_t k, const float *x, size_t ldx, int per_row,
                   uint8_t *q, size_t ldq, float *scale, int32_t *zp)
    size_t qe_gemm_linear_dynamic_ws_bytes(int isa, size_t m, size_t k)
    int qe_gemm_linear_dynamic(int isa, size_t m, const float *x, size_t ldx, int per_row,
                               const qe_packed_w *w, const float *w_scale, const float *bias,
                               float *out, size_t ldc, int accumulate, int nthreads,
                               void *ws, size_t ws_bytes)

cdef extern from "qengine/gemm/qe_gemm_w4.h" nogil:
    enum:
        QE_W4_NR, QE_W4_MR, QE_W4_MAX_K, QE_GEMM_W4_NKERNELS

    ctypedef struct qe_packed_w4:
        const uint8_t *data
        const int32_t *colsum
        const float *scale
        int32_t n, k, gs, ng

    ctypedef struct qe_w4_kernel_rec:
        const char *name
        int32_t isa

    const qe_w4_kernel_rec qe_gemm_w4_kernels[]
    const qe_w4_kernel_rec *qe_gemm_w4_kernel_for_isa(int isa)
    int qe_gemm_w4_layout(size_t k, size_t group, size_t *gs, size_t *ng)
    size_t qe_gemm_w4_packed_bytes(size_t n, size_t kp)
    int qe_gemm_w4_pack(size_t n, size_t k, const int8_t *w, size_t ldw, const float *scale,
                        size_t gs, uint8_t *data, int32_t *colsum, float *pscale)
    void qe_gemm_w4_row_terms(size_t m, const uint8_t *a, size_t lda, const qe_packed_w4 *w,
                              int32_t *rterm)
    int qe_gemm_w4_dequant(int isa, size_t m, const uint8_t *a, size_t lda, const int32_t *rterm,
                           const float *a_scale, const int32_t *a_zp, size_t row_step,
                           const qe_packed_w4 *w, const float *bias, float *out, size_t ldc,
                           int accumulate, int nthreads)
