"""Control flow: ONNX If.

An If node holds its two branches as subgraphs (attributes `then_branch`, `else_branch`). What a
branch reads from the enclosing graph is an explicit input of the node here (the importer adds
them after `cond`, qengine/frontends/onnx.py), and the branch declares those names as its own
inputs: every pass sees the data an If depends on without looking inside it, and a value's
lifetime in the enclosing graph covers the If that reads it.

An If whose condition is a constant is replaced by the branch it takes (graph/passes.py,
`inline_constant_ifs`, part of `optimize`): exporters put If on things like a sample rate or a
rank that are fixed once the model is loaded. The rest run here, each branch on an executor of
its own built once.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from .base import REQUIRED, Op, register_op


@register_op
class If(Op):
    op_type = "If"
    INPUTS = (1, None)
    OUTPUTS = (1, None)
    ATTRS = {"then_branch": ("graph", REQUIRED), "else_branch": ("graph", REQUIRED)}

    @classmethod
    def check_attrs(cls, attrs, node):
        captured = set(node.inputs[1:])
        for key in ("then_branch", "else_branch"):
            g = attrs[key]
            missing = [v.name for v in g.inputs if v.name not in captured]
            if missing:
                raise ModelError(f"node {node.name!r} (If): {key} reads {missing}, which are not "
                                 f"inputs of the node")
            if len(g.outputs) != len(node.outputs):
                raise ModelError(f"node {node.name!r} (If): {key} has {len(g.outputs)} outputs, "
                                 f"the node {len(node.outputs)}")
            g.verify()

    def prepare(self, initializers):
        from ..graph.executor import Executor    # the executor imports the ops: import late
        self.branches = {}
        for key in ("then_branch", "else_branch"):
            g = self.attrs[key]
            slots = [self.node.inputs.index(v.name) for v in g.inputs]
            self.branches[key] = (Executor(g, float_dtype=self.float_dtype), g.inputs, slots,
                                  g.output_names)

    def run(self, cond, *captured):
        if cond is None or np.size(cond) != 1:
            self.fail(f"cond must hold exactly one element, got shape {np.shape(cond)}",
                      ShapeError)
        key = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        exe, inputs, slots, outputs = self.branches[key]
        args = (cond, *captured)
        out = exe.run({v.name: np.asarray(args[i]) for v, i in zip(inputs, slots)})
        return tuple(out[k] for k in outputs)
