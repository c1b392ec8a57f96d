"""Which uint8 values of a lowered graph are NHWC, for ONNX export (qengine/export/rules.py).

Layouts. Inside an int8 region 4-D values are NHWC (the kernels' layout) and the lowering puts
uint8 Transposes where a value changes between "nhwc" and "plain" (NCHW or not 4-D). The
graph does not label layouts, so `infer_layouts` recovers them from the ops that fix one (QConv,
pools, QGemm, the reshaping ops, QuantizeU8 / DequantizeU8 flags), shared through elementwise
ops. A uint8 Transpose between the two layouts is a layout change and disappears (its output
is its input's tensor); any other Transpose is the model's own and stays. Where a Transpose
with perm [0,2,3,1] could be either, calling it the model's own is equally correct: the ops in
between are elementwise, so both readings compute the same values.
"""
from __future__ import annotations

from ..errors import ModelError
from ..graph.ir import Graph, Node

#: qengine ops whose data inputs and output are NHWC uint8 (the data inputs' indices)
_NHWC_OPS = {"QConv": (0,), "QConvAdd": (0, 1), "QConvTranspose": (0,), "QMaxPool": (0,),
             "QAveragePool": (0,), "QGlobalAveragePool": (0,)}
#: elementwise int8 ops: inputs and output share one layout
_SAME_LAYOUT = ("QAdd", "QMul", "QConcat", "QLut")
#: ops that run on uint8 unchanged (no qparams of their own) when their input is uint8
PASS_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Gather", "Slice",
            "Pad", "Resize", "GlobalMaxPool")
INTEGER_OPS = ("QuantizeU8", "DequantizeU8", *_NHWC_OPS, "QGemm", "QGemmDequant", "QMatMul",
               *_SAME_LAYOUT)
DYNAMIC_OPS = ("DynamicQuantLinear", "DynamicQuantConv", "DynamicQuantLSTM", "DynamicQuantGRU",
               "DynamicQuantMatMul", "StaticQuantLSTM", "StaticQuantGRU")   # (the integer RNNs: float at the edges)
_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def fail(n: Node, why: str):
    raise ModelError(f"cannot export node {n.name!r} ({n.op_type}) to ONNX: {why}")


# ----------------------------------------------------------------------------- layouts
def infer_layouts(g: Graph):
    """({uint8 value: "nhwc" | "plain"}, {names of layout-change Transpose nodes})."""
    parent: dict[str, str] = {}

    def find(v):
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    u8: set[str] = set()
    fixed: dict[str, str] = {}            # class root -> layout
    pending = []                          # (value, layout, node) before classes are final
    transposes = []
    for n in g.nodes:
        op, ins = n.op_type, n.inputs
        if op == "QuantizeU8":
            u8.add(n.outputs[0])
            pending.append((n.outputs[0], "nhwc" if n.attrs.get("to_nhwc") else "plain", n))
        elif op in _NHWC_OPS:
            u8.add(n.outputs[0])
            for i in _NHWC_OPS[op] + (None,):
                pending.append((n.outputs[0] if i is None else ins[i], "nhwc", n))
        elif op == "QGemm":
            u8.add(n.outputs[0])
            pending += [(ins[0], "plain", n), (n.outputs[0], "plain", n)]
        elif op == "QMatMul":
            u8.add(n.outputs[0])
            pending += [(ins[0], "plain", n), (ins[1], "plain", n), (n.outputs[0], "plain", n)]
        elif op in _SAME_LAYOUT:
            u8.add(n.outputs[0])
            for v in ins:
                parent[find(v)] = find(n.outputs[0])
        elif op == "DequantizeU8":
            pending.append((ins[0], "nhwc" if n.attrs.get("from_nhwc") else "plain", n))
        elif op in PASS_OPS and ins and ins[0] in u8:
            u8.add(n.outputs[0])
            if op == "Transpose" and list(n.attrs.get("perm") or ()) in (_TO_NHWC, _TO_NCHW):
                transposes.append(n)
            else:
                pending += [(ins[0], "plain", n), (n.outputs[0], "plain", n)]

    def fix(v, lay, n):
        r = find(v)
        if fixed.setdefault(r, lay) != lay:
            fail(n, f"value {v!r} is used both as NHWC and as plain uint8 (inconsistent graph)")

    for v, lay, n in pending:
        fix(v, lay, n)
    layout_of = lambda v: fixed.get(find(v))  # noqa: E731
    changes: set[str] = set()
    todo = list(transposes)
    while todo:
        progress = False
        for t in list(todo):
            perm, lin, lout = list(t.attrs["perm"]), layout_of(t.inputs[0]), layout_of(t.outputs[0])
            src, dst = ("nhwc", "plain") if perm == _TO_NCHW else ("plain", "nhwc")
            if lin is None and lout is None:
                continue
            todo.remove(t)
            progress = True
            # a layout change reads `src` and writes `dst`; the model's own Transpose reads and
            # writes plain (the lowering only ever gives it plain inputs)
            if (perm == _TO_NCHW and lin == "nhwc") or (perm == _TO_NHWC and lout == "nhwc"):
                changes.add(t.name)
                fix(t.inputs[0], src, t)
                fix(t.outputs[0], dst, t)
            else:
                fix(t.inputs[0], "plain", t)
                fix(t.outputs[0], "plain", t)
        if not progress:                  # nothing fixes either side: the model's own
            t = todo[0]
            fix(t.inputs[0], "plain", t)
    return {v: layout_of(v) or "plain" for v in u8}, changes


def ranks(g: Graph) -> dict:
    """Ranks of values where known (only QGemm needs one: rank 2 is written as Gemm)."""
    r = {v.name: len(v.shape) for v in list(g.inputs) + list(g.value_info.values())
         if v.shape is not None}
    r.update({k: a.ndim for k, a in g.initializers.items()})
    for n in g.nodes:
        if not n.inputs or n.outputs[0] in r:
            continue
        r0 = r.get(n.inputs[0])
        if n.op_type == "Flatten":
            out = 2
        elif n.op_type == "Reshape" and n.inputs[1] in g.initializers:
            out = int(g.initializers[n.inputs[1]].size)
        elif n.op_type in ("Squeeze", "Unsqueeze") and len(n.inputs) > 1 and \
                n.inputs[1] in g.initializers and r0 is not None:
            k = int(g.initializers[n.inputs[1]].size)
            out = r0 + (k if n.op_type == "Unsqueeze" else -k)
        elif n.op_type in INTEGER_OPS or n.op_type in ("Transpose", "Relu", "Clip", "Resize",
                                                        "GlobalMaxPool"):
            out = r0
        else:
            out = None
        if out is not None:
            r[n.outputs[0]] = out
    return r
