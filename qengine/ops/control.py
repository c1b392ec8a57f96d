"""Control flow: ONNX If, Loop and Scan.

An If node holds its two branches as subgraphs (attributes `then_branch`, `else_branch`), a Loop
or a Scan its body (`body`). What a subgraph reads from the enclosing graph is an explicit input of the
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


class _BodyOp(Op):
    """Loop and Scan: one `body` subgraph whose inputs end with what it reads from the
    enclosing graph, which the node passes as its last inputs, in the same order."""

    @staticmethod
    def check_captured(body, node, first: int, where: str) -> None:
        captured = [v.name for v in body.inputs[first:]]
        if captured != list(node.inputs[first:]):
            raise ModelError(f"{where}: the body reads {captured} from outside, the node "
                             f"passes {list(node.inputs[first:])}")
        body.verify()

    def prepare(self, initializers):
        from ..graph.executor import Executor    # the executor imports the ops: import late
        body = self.attrs["body"]
        self.exe = Executor(body, float_dtype=self.float_dtype)
        self.in_names = [v.name for v in body.inputs]
        self.out_names = body.output_names

    def step(self, values) -> list:
        """One run of the body on its inputs in order; its outputs in order."""
        out = self.exe.run(dict(zip(self.in_names, values)))
        return [out[k] for k in self.out_names]

    def check_same_shape(self, values, what: str) -> None:
        shapes = {np.shape(v) for v in values}
        if len(shapes) > 1:
            self.fail(f"a scan output changed shape between {what}: {sorted(shapes)}",
                      ShapeError)


@register_op
class Loop(_BodyOp):
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
        cls.check_captured(body, node, 2 + n, where)

    def prepare(self, initializers):
        super().prepare(initializers)
        scans = self.attrs["body"].outputs[1 + self.attrs["carried"]:]
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
            vals = self.step((np.array(i, np.int64), np.array(go), *carried, *captured))
            go = bool(np.asarray(vals[0]).reshape(-1)[0])
            carried = vals[1:1 + n]
            for acc, v in zip(scans, vals[1 + n:]):
                acc.append(v)
            i += 1
        stacked = []
        for acc, dt, empty in zip(scans, self.scan_dtypes, self.scan_empty):
            self.check_same_shape(acc, "iterations")
            stacked.append(np.stack(acc) if acc else np.zeros(empty, dt))
        return (*carried, *stacked)


@register_op
class Scan(_BodyOp):
    """ONNX Scan: inputs (initial state..., scan inputs..., captured...); the body maps
    (state..., one slice of each scan input...) to (state..., scan values...). Each scan input
    is sliced along its scan_input_axes entry, backwards where its direction is 1; each scan
    output stacks its values along its scan_output_axes entry, in reverse order where its
    direction is 1. `carried` (qengine's attribute, set by the importer) is how many values are
    state. `batched` = 1 is opset 8's form: every state and scan input has a leading batch axis
    and each batch element is scanned on its own (sequence_lens is refused at import)."""
    op_type = "Scan"
    INPUTS = (1, None)
    OUTPUTS = (1, None)
    ATTRS = {"body": ("graph", REQUIRED), "carried": ("int", REQUIRED),
             "num_scan_inputs": ("int", REQUIRED), "batched": ("int", 0),
             "scan_input_axes": ("ints", None), "scan_input_directions": ("ints", None),
             "scan_output_axes": ("ints", None), "scan_output_directions": ("ints", None)}

    @classmethod
    def check_attrs(cls, attrs, node):
        body, n, m = attrs["body"], attrs["carried"], attrs["num_scan_inputs"]
        where = f"node {node.name!r} (Scan)"
        k = len(node.outputs) - n
        if n < 0 or m < 1 or len(node.inputs) < n + m or len(body.inputs) != len(node.inputs) \
                or len(body.outputs) != len(node.outputs) or k < 0:
            raise ModelError(f"{where}: {len(node.inputs)} inputs / {len(node.outputs)} outputs "
                             f"and a body of {len(body.inputs)} / {len(body.outputs)} do not fit "
                             f"{n} state values and {m} scan inputs")
        for key, size in (("scan_input_axes", m), ("scan_input_directions", m),
                          ("scan_output_axes", k), ("scan_output_directions", k)):
            v = attrs[key]
            if v is not None and len(v) != size:
                raise ModelError(f"{where}: {key} has {len(v)} values, expected {size}")
            if v is not None and key.endswith("directions") and any(d not in (0, 1) for d in v):
                raise ModelError(f"{where}: {key} must hold 0 or 1, got {v}")
        if attrs["batched"] and (attrs["scan_input_axes"] or attrs["scan_output_axes"]):
            raise ModelError(f"{where}: the batched form (opset 8) has no scan axes")
        cls.check_captured(body, node, n + m, where)

    def prepare(self, initializers):
        super().prepare(initializers)
        a = self.attrs
        m, k = a["num_scan_inputs"], len(self.node.outputs) - a["carried"]
        self.in_axes = a["scan_input_axes"] or [0] * m
        self.in_dirs = a["scan_input_directions"] or [0] * m
        self.out_axes = a["scan_output_axes"] or [0] * k
        self.out_dirs = a["scan_output_directions"] or [0] * k

    def run(self, *args):
        n, m = self.attrs["carried"], self.attrs["num_scan_inputs"]
        state, xs, captured = list(args[:n]), args[n:n + m], args[n + m:]
        if not self.attrs["batched"]:
            return self._scan(state, xs, captured)
        sizes = {np.shape(v)[0] if np.ndim(v) else None for v in (*state, *xs)}
        if len(sizes) != 1 or None in sizes:
            self.fail(f"the batched form needs one leading batch axis on every state and scan "
                      f"input, got sizes {sorted(map(str, sizes))}", ShapeError)
        per = [self._scan([v[b] for v in state], [x[b] for x in xs], captured)
               for b in range(sizes.pop())]
        return tuple(np.stack([p[i] for p in per]) for i in range(len(self.node.outputs)))

    def _scan(self, state, xs, captured):
        n = self.attrs["carried"]
        axes = []
        for x, ax in zip(xs, self.in_axes):
            if not -np.ndim(x) <= ax < np.ndim(x):
                self.fail(f"scan_input_axes {ax} is out of range for rank {np.ndim(x)}",
                          ShapeError)
            axes.append(ax % np.ndim(x))
        lengths = {np.shape(x)[ax] for x, ax in zip(xs, axes)}
        if len(lengths) != 1:
            self.fail(f"the scan inputs have different lengths along their axes: "
                      f"{sorted(lengths)}", ShapeError)
        steps = lengths.pop()
        scans: list[list] = [[] for _ in self.out_axes]
        for t in range(steps):
            slices = [np.take(x, steps - 1 - t if d else t, axis=ax)
                      for x, ax, d in zip(xs, axes, self.in_dirs)]
            vals = self.step((*state, *slices, *captured))
            state = vals[:n]
            for acc, v in zip(scans, vals[n:]):
                acc.append(v)
        stacked = []
        for acc, ax, d in zip(scans, self.out_axes, self.out_dirs):
            if not acc:
                self.fail("a Scan over zero steps has no scan output shape", ShapeError)
            self.check_same_shape(acc, "steps")
            r = np.ndim(acc[0]) + 1
            if not -r <= ax < r:
                self.fail(f"scan_output_axes {ax} is out of range for rank {r}", ShapeError)
            stacked.append(np.stack(acc[::-1] if d else acc, axis=ax % r))
        return (*state, *stacked)
