# cython: language_level=3
"""Float32 elementwise chains (include/qengine/chain/): a short program of unary and
binary-with-constant steps run over a tensor in one compiled pass. qengine/ops/chain.py builds
the programs (from fused graph nodes and from the standalone Exp/Sigmoid/Tanh/Erf ops);
this layer validates a program once (`Program`) and then only maps arrays to pointers."""
cimport numpy as cnp
from libc.stdint cimport int32_t
from libc.stdlib cimport malloc, free
from qe_omp cimport bind_thread_state

cnp.import_array()
bind_thread_state()

cdef extern from "qengine/chain/qe_f32_chain.h" nogil:
    ctypedef struct qe_chain_step:
        int32_t op
        int32_t reg
        float c
    int QE_CHAIN_MAX_STEPS, QE_CHAIN_REGS, QE_CH_COUNT
    long qe_f32_chain_check(const qe_chain_step *prog, size_t nsteps)
    void qe_f32_chain_run(int isa, size_t n, const float *x, float *y, const qe_chain_step *prog,
                          size_t nsteps, int nthreads)
    const char *qe_f32_vchain_name(int isa)

cdef extern from *:
    """
    static const char *const qe_chain_op_names[] = {
    #define X(e, name, kind) name,
    #include "qengine/chain/qe_f32_chain_ops.inc"
    #undef X
    };
    static const int qe_chain_op_kinds[] = {
    #define X(e, name, kind) kind,
    #include "qengine/chain/qe_f32_chain_ops.inc"
    #undef X
    };
    """
    const char *const qe_chain_op_names[]
    const int qe_chain_op_kinds[]

#: step names by opcode, and their kind (2 binary, 1 unary, 0 register move)
OPS = tuple(qe_chain_op_names[i].decode() for i in range(QE_CH_COUNT))
KINDS = {OPS[i]: qe_chain_op_kinds[i] for i in range(QE_CH_COUNT)}
MAX_STEPS = QE_CHAIN_MAX_STEPS
REGISTERS = QE_CHAIN_REGS
_CODE = {name: i for i, name in enumerate(OPS)}


def kernel_name(int isa):
    return qe_f32_vchain_name(isa).decode()


cdef class Program:
    """A checked chain program: steps [(name, register or -1, constant)]. Raises ValueError
    naming the first bad step. Immutable; `run` may be called from many threads at once."""
    cdef qe_chain_step *steps
    cdef size_t n
    cdef readonly tuple source

    def __cinit__(self, steps):
        self.source = tuple((str(s), int(r), float(c)) for s, r, c in steps)
        self.n = len(self.source)
        self.steps = <qe_chain_step *>malloc(max(self.n, 1) * sizeof(qe_chain_step))
        if self.steps == NULL:
            raise MemoryError()
        for i, (name, reg, c) in enumerate(self.source):
            if name not in _CODE:
                raise ValueError(f"step {i}: unknown chain step {name!r} (known: {', '.join(OPS)})")
            self.steps[i].op = _CODE[name]
            self.steps[i].reg = reg if -1 <= reg < QE_CHAIN_REGS else QE_CHAIN_REGS
            self.steps[i].c = <float>c
        cdef long bad = qe_f32_chain_check(self.steps, self.n)
        if bad >= 0:
            raise ValueError(f"step {bad} of {self.source!r}: invalid (at most {MAX_STEPS} "
                             f"steps; registers 1..{REGISTERS - 1} must be stored before they "
                             f"are read, register 0 is the input)")

    def __dealloc__(self):
        free(self.steps)

    def run(self, int isa, cnp.ndarray x, cnp.ndarray y, int nthreads=0):
        """y = chain(x): float32, C-contiguous, the same size (x is y for in-place)."""
        cdef size_t n = cnp.PyArray_SIZE(x)
        if cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32 or cnp.PyArray_TYPE(y) != cnp.NPY_FLOAT32 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_IS_C_CONTIGUOUS(y) \
                or <size_t>cnp.PyArray_SIZE(y) != n or not cnp.PyArray_ISWRITEABLE(y):
            raise ValueError("chain: x and y must be C-contiguous float32 arrays of one size "
                             "(y writeable)")
        cdef const float *px = <const float *>cnp.PyArray_DATA(x)
        cdef float *py = <float *>cnp.PyArray_DATA(y)
        with nogil:
            qe_f32_chain_run(isa, n, px, py, self.steps, self.n, nthreads)
        return y
