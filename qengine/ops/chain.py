"""Float elementwise chains: `ElementwiseChain`, the op the `fuse_elementwise` pass
(qengine/graph/chains.py) makes of a run of elementwise nodes, and the compiled path of the
standalone activation ops.

A chain is a program over one input tensor x (include/qengine/chain/qe_f32_chain_params.h):
steps `(name, register, constant)` that update a running value `acc` — binary steps combine
acc with a constant or a register (register 0 holds x, `store` fills registers 1..3), unary
steps map acc. `x·Clip(x+3, 0, 6)/6` is

    [("add", -1, 3.0), ("max", -1, 0.0), ("min", -1, 6.0), ("mul", 0, 0.0), ("div", -1, 6.0)]

In float32 the program runs as one compiled pass (`_chain.Program`), bit-identical on every ISA
and to the unfused graph: every step performs the float32 operation the ONNX node it came from
performs (IEEE add/sub/mul/div/sqrt; max/min/clip with NumPy's NaN and ±0 rules), and the
transcendental steps use the same compiled functions as the standalone Exp/Sigmoid/Tanh/Erf ops
(accuracy in include/qengine/chain/qe_f32_math.h). In float64 (a Session built as a float64
reference) `chain_ref` evaluates the same steps with NumPy; static int8 builds a lookup table
from it (qengine/ops/integer.py, QLut with function "chain").
"""
from __future__ import annotations

import math

import numpy as np

from .. import _runtime
from .._ext import _chain
from ..errors import ModelError, ShapeError
from .base import Op, register_op

#: the step names (include/qengine/chain/qe_f32_chain_ops.inc) and their kind
STEP_KINDS = dict(_chain.KINDS)
REGISTERS = _chain.REGISTERS
MAX_STEPS = _chain.MAX_STEPS

_erf64 = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


_BINARY = {
    "add": lambda a, v: a + v, "sub": lambda a, v: a - v, "rsub": lambda a, v: v - a,
    "mul": lambda a, v: a * v, "div": lambda a, v: a / v, "rdiv": lambda a, v: v / a,
    "max": lambda a, v: np.maximum(a, v), "rmax": lambda a, v: np.maximum(v, a),
    "min": lambda a, v: np.minimum(a, v), "rmin": lambda a, v: np.minimum(v, a),
}
_UNARY = {
    "cliplo": lambda a, c: np.where(a < c, c, a), "cliphi": lambda a, c: np.where(a > c, c, a),
    "leaky": lambda a, c: np.where(a >= 0, a, a * c), "square": lambda a, c: a * a,
    "neg": lambda a, c: -a, "abs": lambda a, c: np.abs(a), "sqrt": lambda a, c: np.sqrt(a),
    "exp": lambda a, c: np.exp(a), "sigmoid": lambda a, c: _sigmoid(a),
    "tanh": lambda a, c: np.tanh(a),
    "erf": lambda a, c: _erf64(a).astype(a.dtype, copy=False),
}


def chain_ref(x: np.ndarray, steps) -> np.ndarray:
    """Evaluate a chain with NumPy in x's float dtype (float64 for references and tables).
    The IEEE steps round like the compiled kernel; exp/sigmoid/tanh/erf are NumPy's / math's."""
    x = np.asarray(x)
    dt = x.dtype.type
    regs = [x] + [None] * (REGISTERS - 1)
    acc = x
    with np.errstate(all="ignore"):
        for name, reg, c in steps:
            if name == "store":
                regs[reg] = acc
            elif name == "load":
                acc = regs[reg]
            elif name in _BINARY:
                acc = _BINARY[name](acc, regs[reg] if reg >= 0 else dt(c))
            else:
                acc = _UNARY[name](acc, dt(c))
    return np.asarray(acc, dtype=x.dtype)


def steps_of(attrs) -> list[tuple[str, int, float]]:
    """The program of an ElementwiseChain / QLut node from its three parallel attributes."""
    return list(zip(attrs["steps"], attrs["registers"], attrs["constants"]))


def chain_attrs(steps, pattern: str = "") -> dict:
    """Node attributes for a program (JSON-friendly: the engine file stores them as is)."""
    return {"steps": [s for s, _, _ in steps], "registers": [int(r) for _, r, _ in steps],
            "constants": [float(c) for _, _, c in steps], "pattern": pattern}


def check_program(steps, where: str) -> "_chain.Program":
    """A compiled program, or ModelError saying which step is wrong."""
    for i, (_, _, c) in enumerate(steps):
        if not math.isfinite(c):
            raise ModelError(f"{where}: step {i} has a non-finite constant {c!r}")
    try:
        return _chain.Program(steps)
    except ValueError as e:
        raise ModelError(f"{where}: {e}") from None


class ChainRunner:
    """Runs one program: compiled for float32 arrays, `chain_ref` for other float dtypes."""

    def __init__(self, steps, where: str):
        self.steps = list(steps)
        self.program = check_program(self.steps, where)
        self.isa = _runtime.isa_index(None)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if type(x) is not np.ndarray:   # a NumPy scalar: what a reduction to 0-d returns
            x = np.asarray(x)
        if x.dtype == np.float32:
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            y = np.empty(x.shape, np.float32) if out is None else out
            return self.program.run(self.isa, x, y)
        return chain_ref(x, self.steps)


@register_op
class ElementwiseChain(Op):
    """y = program(x) (module docstring). `pattern` names what the fusion pass recognised
    ("HardSwish", "GELU", "SiLU", ...; "" for any other chain): a label for summaries and
    profiles, never used for the arithmetic."""
    op_type = "ElementwiseChain"
    ATTRS = {"steps": ("strings", None), "registers": ("ints", None),
             "constants": ("floats", None), "pattern": ("string", "")}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (ElementwiseChain)"
        lists = [attrs[k] for k in ("steps", "registers", "constants")]
        if any(v is None for v in lists) or len({len(v) for v in lists}) != 1 or not lists[0]:
            raise ModelError(f"{where}: steps, registers and constants must be given, non-empty "
                             f"and of one length")
        check_program(steps_of(attrs), where)

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return [in_shapes[0]]

    def prepare(self, initializers):
        self.runner = ChainRunner(steps_of(self.attrs), f"node {self.name!r}")

    def run(self, x):
        if x.dtype.kind != "f":
            self.fail(f"expects a float tensor, got {x.dtype}", ShapeError)
        return (self.runner(x),)
