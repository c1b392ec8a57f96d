"""`fuse_attention`: scaled dot-product attention's core as one node, for a Session's executor.

torch exports attention as Mul(Q, c) and Mul(Kᵀ, c) (c = d**-0.25 each), MatMul, Softmax over
the last axis, MatMul with V: five nodes, each an op's Python call around a few µs of NumPy
on a transformer's small tensors. An `AttentionCore` node (qengine/ops/linear.py) runs them as
one compiled kernel in float32 (the same bits on every ISA, the unfused nodes' to float
rounding), or makes the same NumPy calls in the same order — the same bits — where the kernel
does not apply (float64, broadcast leading dims, a decoder's few query rows). Like the layout chains
(graph/layout.py `fold_layout_chains`) it exists only in a Session's executor: the graph a
user holds, saves, quantizes or exports keeps the five nodes, and calibration sees them.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node


def _scale_of(g: Graph, n: Node | None, readers):
    """(input, float32 scalar) when `n` multiplies a tensor by a float32 scalar constant and
    is read once, else None."""
    if n is None or n.op_type != "Mul" or len(n.inputs) != 2 or len(readers.get(n.outputs[0],
                                                                             ())) != 1:
        return None
    for x, c in (n.inputs, n.inputs[::-1]):
        arr = g.initializers.get(c)
        if arr is not None and x not in g.initializers and arr.size == 1 and \
                arr.dtype == np.float32 and arr.ndim <= 1:
            return x, float(arr.reshape(-1)[0])
    return None


def fuse_attention(graph: Graph) -> Graph:
    """MatMul(A, B) → Softmax(last axis) → MatMul(·, V), the scores and probabilities read by
    the next node alone and no graph output, A and B optionally Mul by a float32 scalar (read
    by the MatMul alone), as one AttentionCore node at the last MatMul's place."""
    g = graph.copy()
    readers = g.consumers()
    producers = g.producers()
    outputs = set(g.output_names)
    drop: set = set()
    replace: dict = {}
    for sm in g.nodes:
        if sm.op_type != "Softmax" or sm.attrs.get("axis", -1) != -1:
            continue
        mm1 = producers.get(sm.inputs[0])
        after = readers.get(sm.outputs[0], [])
        if mm1 is None or mm1.op_type != "MatMul" or len(after) != 1 or \
                after[0].op_type != "MatMul" or after[0].inputs[0] != sm.outputs[0] or \
                len(readers.get(mm1.outputs[0], [])) != 1 or \
                {mm1.outputs[0], sm.outputs[0]} & outputs or \
                any(v in g.initializers for v in (*mm1.inputs, after[0].inputs[1])):
            continue
        mm2 = after[0]
        attrs, ins, fused = {}, [], []
        for side, v in zip("qk", mm1.inputs):
            found = _scale_of(g, producers.get(v), readers)
            if found is None:
                ins.append(v)
            else:
                ins.append(found[0])
                attrs[f"{side}_scale"] = [found[1]]
                fused.append(producers[v])
        fused += [mm1, sm, mm2]
        if any(id(m) in drop for m in fused):
            continue
        drop.update(id(m) for m in fused[:-1])
        replace[id(mm2)] = Node("AttentionCore", "+".join(m.name for m in fused),
                                (*ins, mm2.inputs[1]), mm2.outputs,
                                {**attrs, "fused_nodes": [m.name for m in fused]})
    if not replace:
        return graph
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return g
