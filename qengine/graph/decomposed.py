"""Recognise the multi-node forms exporters write for LayerNorm and squeeze-and-excitation, and
replace each by one node computing exactly the same thing.

* `fuse_layer_norm`: ReduceMean → Sub → Pow(·, 2) | Mul(d, d) → ReduceMean → Add(ε) → Sqrt →
  Div → [Mul(γ)] → [Add(β)] over the same trailing axes (TorchScript's export of nn.LayerNorm
  below opset 17, paddle2onnx's) becomes LayerNormalization(divide=1), which performs those
  NumPy operations in that order (qengine/ops/norm.py).
* `fuse_squeeze_excite`: GlobalAveragePool | ReduceMean(H, W) → 1×1 Conv → activation →
  1×1 Conv → gate activation → Mul with the block's input becomes SqueezeExcite
  (qengine/ops/squeeze_excite.py), which runs the same ops (the pool and Conv op classes
  themselves, the activations as chain programs) as one node.

A match is exact or nothing: every constant is checked (the power is 2, the axes are the same
trailing axes with keepdims, ε, γ and β are constants, the convolutions are 1×1 with stride 1,
no padding, one group), every intermediate value has exactly the readers the pattern gives it
and is no graph output. A lookalike — another exponent, an intermediate read elsewhere, a
bias read at run time — is left as it is.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node


class _View:
    """Producers and readers of a graph, for matching."""

    def __init__(self, g: Graph):
        self.g = g
        self.prod = g.producers()
        self.readers = g.consumers()
        self.outputs = set(g.output_names)

    def only_read_by(self, value: str, *nodes: Node) -> bool:
        """True when `value` is no graph output and exactly `nodes` read it (once each)."""
        readers = self.readers.get(value, [])
        return value not in self.outputs and len(readers) == len(nodes) and \
            {id(r) for r in readers} == {id(n) for n in nodes} and \
            all(n.inputs.count(value) == 1 for n in nodes)

    def single_reader(self, value: str, op_type: str):
        readers = self.readers.get(value, [])
        if len(readers) != 1 or readers[0].op_type != op_type or value in self.outputs:
            return None
        return readers[0]

    def const(self, v: str):
        return self.g.initializers.get(v)


def _rank(g: Graph, v: str):
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return None if info is None or info.shape is None else len(info.shape)


def _reduce_axes(view: _View, n: Node, rank):
    """The sorted non-negative axes of a keepdims ReduceMean with constant axes, else None."""
    if n.op_type != "ReduceMean" or not n.attrs.get("keepdims", 1) or \
            n.attrs.get("noop_with_empty_axes", 0) or rank is None:
        return None
    axes = view.const(n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None
    if axes is None or axes.dtype.kind not in "iu" or axes.size == 0:
        return None
    out = sorted({int(a) % rank for a in axes.reshape(-1)})
    return out if all(-rank <= int(a) < rank for a in axes.reshape(-1)) else None


def _other(n: Node, v: str):
    """The operand of binary node n that is not v (None when v is not exactly one operand)."""
    if len(n.inputs) != 2 or n.inputs.count(v) != 1:
        return None
    return n.inputs[1] if n.inputs[0] == v else n.inputs[0]


def _match_layer_norm(view: _View, mean1: Node):
    g = view.g
    x = mean1.inputs[0]
    rank = _rank(g, x)
    axes = _reduce_axes(view, mean1, rank)
    if axes is None or axes != list(range(axes[0], rank)):
        return None                                 # trailing axes only
    sub = view.single_reader(mean1.outputs[0], "Sub")
    if sub is None or sub.inputs != (x, mean1.outputs[0]):
        return None
    d = sub.outputs[0]
    readers = view.readers.get(d, [])
    sq = next((r for r in readers if r.op_type in ("Pow", "Mul")), None)
    div = next((r for r in readers if r.op_type == "Div"), None)
    # d is read by the square (once by Pow, twice by Mul(d, d)) and by the Div, nothing else
    if sq is None or div is None or d in view.outputs or \
            {id(r) for r in readers} != {id(sq), id(div)} or \
            len(readers) != (3 if sq.op_type == "Mul" else 2):
        return None
    if sq.op_type == "Pow":
        e = view.const(sq.inputs[1])
        if sq.inputs[0] != d or e is None or e.size != 1 or e.dtype.kind != "f" or \
                float(e.reshape(-1)[0]) != 2.0:
            return None
    elif sq.inputs != (d, d):
        return None
    mean2 = view.single_reader(sq.outputs[0], "ReduceMean")
    if mean2 is None or mean2.inputs[0] != sq.outputs[0] or \
            _reduce_axes(view, mean2, rank) != axes:
        return None
    add = view.single_reader(mean2.outputs[0], "Add")
    eps_name = _other(add, mean2.outputs[0]) if add is not None else None
    eps = view.const(eps_name) if eps_name else None
    if eps is None or eps.size != 1 or eps.dtype.kind != "f" or eps.ndim > rank or \
            not np.isfinite(eps).all() or add.inputs[0] != mean2.outputs[0]:
        return None
    sqrt = view.single_reader(add.outputs[0], "Sqrt")
    if sqrt is None or view.single_reader(sqrt.outputs[0], "Div") is not div or \
            div.inputs != (d, sqrt.outputs[0]):
        return None
    nodes, y = [mean1, sub, sq, mean2, add, sqrt, div], div.outputs[0]
    scale = bias = None
    mul = view.single_reader(y, "Mul")
    if mul is not None and _is_affine_const(view, _other(mul, y), rank - axes[0]):
        scale, y = _other(mul, y), mul.outputs[0]
        nodes.append(mul)
    addb = view.single_reader(y, "Add")
    if addb is not None and _is_affine_const(view, _other(addb, y), rank - axes[0]):
        bias, y = _other(addb, y), addb.outputs[0]
        nodes.append(addb)
    return nodes, x, scale, bias, y, axes[0], float(eps.reshape(-1)[0])


def _is_affine_const(view: _View, v, n_axes: int) -> bool:
    """γ or β: a float constant varying only along the normalized (trailing) axes."""
    arr = view.const(v) if v else None
    return arr is not None and arr.dtype.kind == "f" and arr.ndim <= n_axes


def fuse_layer_norm(graph: Graph) -> Graph:
    g = graph.copy()
    view = _View(g)
    replace = {}
    taken = set()
    for n in g.nodes:
        if n.op_type != "ReduceMean" or id(n) in taken:
            continue
        m = _match_layer_norm(view, n)
        if m is None or any(id(k) in taken for k in m[0]):
            continue
        nodes, x, scale, bias, y, axis, eps = m
        if scale is None:
            scale = g.unique_name(f"{nodes[-1].name}.ones")
            g.initializers[scale] = np.ones(1, np.float32)     # ·1 changes nothing
        ins = (x, scale) + ((bias,) if bias else ())
        new = Node("LayerNormalization", nodes[-1].name, ins, (y,),
                   {"axis": axis, "epsilon": eps, "divide": 1})
        taken.update(id(k) for k in nodes)
        replace[id(nodes[-1])] = new
    if not replace:
        return graph
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in taken or id(n) in replace]
    from .passes import remove_dead_nodes
    return remove_dead_nodes(g)


def _plain_1x1(view: _View, n: Node, cin_value: str):
    """(W, B or '') of a Conv that is exactly a matrix-vector product per pixel: 1×1 kernel,
    stride 1, no padding, one group, constant weights and bias, no fused activation."""
    if n is None or n.op_type != "Conv" or n.inputs[0] != cin_value or len(n.inputs) < 2:
        return None
    w = view.const(n.inputs[1])
    b = n.inputs[2] if len(n.inputs) > 2 else ""
    if w is None or w.ndim != 4 or w.shape[2:] != (1, 1) or w.dtype.kind != "f" or \
            (b and view.const(b) is None):
        return None
    a = n.attrs
    if a.get("group", 1) != 1 or any(s != 1 for s in a.get("strides") or [1]) or \
            any(p != 0 for p in a.get("pads") or [0]) or \
            any(d != 1 for d in a.get("dilations") or [1]) or \
            a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or \
            a.get("fused_activation", ""):
        return None
    return n.inputs[1], b


def _match_squeeze_excite(view: _View, pool: Node):
    from .chains import activation_program
    g = view.g
    x = pool.inputs[0]
    if _rank(g, x) != 4:
        return None
    if pool.op_type == "ReduceMean":
        if _reduce_axes(view, pool, 4) != [2, 3]:
            return None
    elif pool.op_type != "GlobalAveragePool":
        return None
    chain, v = [pool], pool.outputs[0]
    parts = []
    for step in ("conv", "act", "conv", "gate"):
        readers = view.readers.get(v, [])
        if len(readers) != 1 or v in view.outputs:
            return None
        n = readers[0]
        if step == "conv":
            wb = _plain_1x1(view, n, v)
            if wb is None:
                return None
            parts.append(wb)
        else:
            prog = activation_program(g, n) if n.inputs[0] == v and \
                all(i in g.initializers for i in n.inputs[1:] if i) else None
            if prog is None:
                return None
            parts.append(prog)
        chain.append(n)
        v = n.outputs[0]
    mul = view.single_reader(v, "Mul")
    if mul is None or _other(mul, v) != x:
        return None
    (w1, b1), act, (w2, b2), gate = parts
    if g.initializers[w1].shape[1] != g.initializers[w2].shape[0]:
        return None                       # the gate must have one value per input channel
    return chain + [mul], x, (w1, b1, w2, b2), act, gate


def fuse_squeeze_excite(graph: Graph) -> Graph:
    from ..ops.chain import chain_attrs
    g = graph.copy()
    view = _View(g)
    replace, taken = {}, set()
    for n in g.nodes:
        if n.op_type not in ("GlobalAveragePool", "ReduceMean") or id(n) in taken:
            continue
        m = _match_squeeze_excite(view, n)
        if m is None or any(id(k) in taken for k in m[0]):
            continue
        nodes, x, (w1, b1, w2, b2), act, gate = m
        attrs = {"pool": n.op_type}
        for prefix, prog in (("act", act), ("gate", gate)):
            for k, v in chain_attrs(prog).items():
                if k != "pattern":
                    attrs[f"{prefix}_{k}"] = v
        mul = nodes[-1]
        replace[id(mul)] = Node("SqueezeExcite", mul.name, (x, w1, b1, w2, b2), mul.outputs,
                                attrs)
        taken.update(id(k) for k in nodes)
    if not replace:
        return graph
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in taken or id(n) in replace]
    from .passes import remove_dead_nodes
    return remove_dead_nodes(g)
