"""Control flow: ONNX If and Loop.

An If node holds its two branches as subgraphs (attributes `then_branch`, `else_branch`), a Loop
its body (`body`). What a subgraph reads from the enclosing graph is an explicit input of the
node here (the importer adds them after the node's own inputs, qengine/frontends/onnx.py), and
the subgraph declares those names as its own inputs: every pass sees the data the node depends
on without looking inside it, and a value's lifetime in the enclosing graph covers the node
that reads it. The enclosing graph's constants are copied into the subgraph instead.

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


@register_op
class Loop(Op):
    """ONNX Loop: inputs (M, cond, v_initial..., captured...); the body maps (iteration, cond,
    carried...) to (cond, carried..., scan values...). `carried` (qengine's attribute, set by
    the importer) is how many values are loop-carried. The importer replaces an omitted M by
    the largest int64 and an omitted cond by true, which ONNX defines to mean the same. Scan
    values are stacked along a new first axis (as onnxruntime does; onnx.reference concatenates
    them instead); with no iteration they are empty."""
    op_type = "Loop"
    INPUTS = (2, None)
    OUTPUTS = (1, None)
    ATTRS = {"body": ("graph", REQUIRED), "carried": ("int", REQUIRED)}

    @classmethod
    def check_attrs(cls, attrs, node):
        body, n = attrs["body"], attrs["carried"]
        where = f"node {node.name!r} (Loop)"
        if n < 0 or len(node.inputs) < 2 + n or len(body.inputs) != len(node.inputs):
            raise ModelError(f"{where}: {len(node.inputs)} inputs and a body of "
                             f"{len(body.inputs)} do not fit {n} loop-carried values")
        if len(body.outputs) != 1 + len(node.outputs) or len(node.outputs) < n:
            raise ModelError(f"{where}: the body's {len(body.outputs)} outputs do not fit the "
                             f"node's {len(node.outputs)} with {n} loop-carried values")
        captured = [v.name for v in body.inputs[2 + n:]]
        if captured != list(node.inputs[2 + n:]):
            raise ModelError(f"{where}: the body reads {captured} from outside, the node "
                             f"passes {list(node.inputs[2 + n:])}")
        body.verify()

    def prepare(self, initializers):
        from ..graph.executor import Executor    # the executor imports the ops: import late
        body = self.attrs["body"]
        self.exe = Executor(body, float_dtype=self.float_dtype)
        self.in_names = [v.name for v in body.inputs]
        self.out_names = body.output_names
        scans = body.outputs[1 + self.attrs["carried"]:]
        self.scan_dtypes = [self.map_dtype(v.dtype) for v in scans]
        # with no iteration a scan output is [0, *its per-iteration shape] when that is static
        self.scan_empty = [(0, *v.shape) if v.shape is not None and
                           all(isinstance(d, int) for d in v.shape) else (0,) for v in scans]

    def run(self, m, cond, *rest):
        n = self.attrs["carried"]
        for what, v, kind in (("M", m, "iu"), ("cond", cond, "b")):
            if np.size(v) != 1 or np.asarray(v).dtype.kind not in kind:
                self.fail(f"{what} must be one {'integer' if kind == 'iu' else 'bool'}, got "
                          f"{np.asarray(v).dtype} {np.shape(v)}", ShapeError)
        trips = int(np.asarray(m).reshape(-1)[0])
        go = bool(np.asarray(cond).reshape(-1)[0])
        carried, captured = list(rest[:n]), rest[n:]
        scans: list[list] = [[] for _ in self.scan_dtypes]
        i = 0
        while go and i < trips:
            feeds = dict(zip(self.in_names, (np.array(i, np.int64), np.array(go), *carried,
                                             *captured)))
            out = self.exe.run(feeds)
            vals = [out[k] for k in self.out_names]
            go = bool(np.asarray(vals[0]).reshape(-1)[0])
            carried = vals[1:1 + n]
            for acc, v in zip(scans, vals[1 + n:]):
                acc.append(v)
            i += 1
        stacked = []
        for acc, dt, empty in zip(scans, self.scan_dtypes, self.scan_empty):
            shapes = {np.shape(v) for v in acc}
            if len(shapes) > 1:
                self.fail(f"a scan output changed shape between iterations: {sorted(shapes)}",
                          ShapeError)
            stacked.append(np.stack(acc) if acc else np.zeros(empty, dt))
        return (*carried, *stacked)
