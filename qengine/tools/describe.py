"""What ``qengine inspect`` shows: nodes, value dtypes/shapes, quantization parameters of
int8 weights, initializer sizes."""
from __future__ import annotations

import numpy as np

from ..graph.ir import Graph
from ..ops import get_op_class, is_registered

#: op type → (quantized weight input index, its scale input index) pairs. Ops that hold int8
#: weights register their layout here (static-mode ops will add theirs).


def _shape(v):
    return None if v.shape is None else list(v.shape)


def qparams(graph: Graph) -> list[dict]:
    """Per quantized weight: node, weight name, dtype, shape, number of scales and their range."""
    rows = []
    for node in graph.nodes:
        cls = get_op_class(node.op_type) if is_registered(node.op_type) else None
        for wi, si in getattr(cls, "WEIGHT_INPUTS", ()):
            if max(wi, si) >= len(node.inputs):
                continue
            w = graph.initializers.get(node.inputs[wi])
            s = graph.initializers.get(node.inputs[si])
            if w is None or s is None:
                continue
            s = np.asarray(s, np.float64)
            rows.append({"node": node.name, "op": node.op_type, "weight": node.inputs[wi],
                         "dtype": w.dtype.name, "shape": list(w.shape), "scales": int(s.size),
                         "scale_min": float(s.min()) if s.size else None,
                         "scale_max": float(s.max()) if s.size else None})
    return rows


def describe(graph: Graph) -> dict:
    inits = graph.initializers
    nodes = []
    for n in graph.nodes:
        weights = [i for i in n.inputs if i in inits]
        nodes.append({"name": n.name, "op": n.op_type, "inputs": list(n.inputs),
                      "outputs": list(n.outputs),
                      "weight_dtypes": sorted({inits[w].dtype.name for w in weights}),
                      "weight_bytes": int(sum(inits[w].nbytes for w in set(weights)))})
    return {
        "name": graph.name,
        "opset": dict(graph.opset),
        "inputs": [{"name": v.name, "dtype": v.dtype, "shape": _shape(v)} for v in graph.inputs],
        "outputs": [{"name": v.name, "dtype": v.dtype, "shape": _shape(v)}
                    for v in graph.outputs],
        "nodes": nodes,
        "qparams": qparams(graph),
        "initializers": [{"name": k, "dtype": a.dtype.name, "shape": list(a.shape),
                          "bytes": int(a.nbytes)} for k, a in inits.items()],
        "total_bytes": int(sum(a.nbytes for a in inits.values())),
        "unsupported": [],
        "float_units": [],
    }
