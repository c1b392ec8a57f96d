"""SqueezeExcite: a squeeze-and-excitation block as one node (made by
qengine/graph/decomposed.py from GlobalAveragePool | ReduceMean(H, W) → 1×1 Conv → activation →
1×1 Conv → gate → Mul).

    y = x · gate(Conv2(act(Conv1(mean over H, W of x))))

Inputs X [N, C, H, W], W1 [C1, C, 1, 1], B1 (optional), W2 [C, C1, 1, 1], B2 (optional); the two
activations are chain programs (qengine/ops/chain.py) in act_* / gate_* attributes. The block
runs the pool and Conv op classes themselves and the activations' chain programs — the
operations the unfused nodes run — so it equals the unfused block bit for bit; what it saves is
five dispatches, five output arrays and the lifetime bookkeeping of four tiny values.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from ..graph.ir import Node
from .base import Op, get_op_class, register_op
from .chain import ChainRunner, ElementwiseChain

_PROGRAM = ("steps", "registers", "constants")


def _program(attrs, prefix):
    return list(zip(*(attrs[f"{prefix}_{k}"] for k in _PROGRAM)))


@register_op
class SqueezeExcite(Op):
    op_type = "SqueezeExcite"
    INPUTS = (5, 5)
    ATTRS = {"pool": ("string", "GlobalAveragePool"),
             **{f"{p}_{k}": (kind, None) for p in ("act", "gate")
                for k, kind in zip(_PROGRAM, ("strings", "ints", "floats"))}}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (SqueezeExcite)"
        if attrs["pool"] not in ("GlobalAveragePool", "ReduceMean"):
            raise ModelError(f"{where}: pool must be GlobalAveragePool or ReduceMean")
        for p in ("act", "gate"):
            ElementwiseChain.check_attrs({k: attrs[f"{p}_{k}"] for k in _PROGRAM}, node)
        if not node.inputs[1] or not node.inputs[3]:
            raise ModelError(f"{where}: W1 and W2 are required")

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return [in_shapes[0]]

    def prepare(self, initializers):
        n, inits = self.node, dict(initializers)
        x, w1, b1, w2, b2 = n.inputs
        where = f"node {self.name!r}"
        if self.attrs["pool"] == "ReduceMean":
            axes = f"{n.name}/axes"
            inits[axes] = np.array([2, 3], np.int64)
            pool = Node("ReduceMean", f"{n.name}/pool", (x, axes), ("p",), {"keepdims": 1})
        else:
            pool = Node("GlobalAveragePool", f"{n.name}/pool", (x,), ("p",))
        conv1 = Node("Conv", f"{n.name}/conv1", ("p", w1) + ((b1,) if b1 else ()), ("c1",))
        conv2 = Node("Conv", f"{n.name}/conv2", ("a", w2) + ((b2,) if b2 else ()), ("c2",))
        self.parts = [get_op_class(m.op_type)(m, inits, float_dtype=self.float_dtype)
                      for m in (pool, conv1, conv2)]
        self.act = ChainRunner(_program(self.attrs, "act"), where)
        self.gate = ChainRunner(_program(self.attrs, "gate"), where)

    def run(self, x, w1, b1, w2, b2):
        if x.ndim != 4:
            self.fail(f"expects an NCHW input, got shape {x.shape}", ShapeError)
        pool, conv1, conv2 = self.parts
        rest = () if len(pool.node.inputs) == 1 else (None,)
        (p,) = pool.run(x, *rest)
        (c,) = conv1.run(p, w1, *(() if b1 is None else (b1,)))
        (c,) = conv2.run(self.act(c), w2, *(() if b2 is None else (b2,)))
        return (np.multiply(x, self.gate(c)),)
