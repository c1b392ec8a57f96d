"""CNN graph rewrites. Each takes a Graph and returns a new one (the input is left untouched)
computing the same outputs.

* `remove_identities`: drop Identity nodes (Dropout becomes Identity on import) by renaming.
* `fold_batch_norm`: fold BatchNormalization — and per-channel constant Mul/Add, the Caffe2
  "scale" layer written as Unsqueeze→Mul→Add — into the preceding Conv or Gemm's weights and
  bias: W'[m] = a[m]·W[m], B'[m] = a[m]·B[m] + c[m], computed in float64, rounded once.
* `fuse_activations`: record a Relu / Clip (constant, finite bounds) / LeakyRelu that is the only
  reader of a Conv or Gemm output on that producer (`fused_activation`, see
  `qengine.ops.activation`) and drop it.
* `fuse_matmul_bias`: MatMul by a constant 2-D weight followed by the Add of a constant
  vector over its last axis (`nn.Linear` on 3-D inputs, as torch exports it) becomes a Gemm
  with that bias, between two Reshapes when the input has more than two axes. Every path then
  has one op with a bias where it had two: the compiled float GEMM adds it in its epilogue,
  dynamic int8 folds it into the dequantization, static int8 into the int32 accumulator
  (before, the Add was a float island between a DequantizeLinear and a QuantizeLinear).
* `fuse_residual_add` (static int8 graphs): a QConv whose output only a QAdd reads and that QAdd
  become one QConvAdd node, the residual add running in the conv's epilogue
  (qengine/ops/integer.py); its results are the unfused pair's, byte for byte.

A producer is only rewritten when its output has exactly one reader and is not a graph output
(anything else would change a value someone else reads).
"""
from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Node


def _rename_value(nodes, old: str, new: str):
    return [n.replace(inputs=tuple(new if i == old else i for i in n.inputs),
                      outputs=tuple(new if o == old else o for o in n.outputs))
            if old in n.inputs or old in n.outputs else n for n in nodes]


def remove_identities(graph: Graph) -> Graph:
    g = graph.copy()
    boundary = set(g.input_names) | set(g.initializers)
    outputs = set(g.output_names)
    kept: set[str] = set()  # Identity nodes (by name) that have to stay
    while True:
        n = next((m for m in g.nodes if m.op_type == "Identity" and m.name not in kept), None)
        if n is None:
            return g
        src, dst = n.inputs[0], n.outputs[0]
        nodes = [m for m in g.nodes if m is not n]
        if dst not in outputs:
            g.nodes = _rename_value(nodes, dst, src)
        elif src not in boundary and src not in outputs:
            g.nodes = _rename_value(nodes, src, dst)  # the producer now writes the output
        else:  # an output that merely aliases an input/initializer/output stays an Identity
            kept.add(n.name)


class _Readers:
    """Reader counts of values, kept current while a sweep rewrites the graph (a fold renames
    the producer's output to the folded node's output, so other counts never change)."""

    def __init__(self, g: Graph):
        self.outputs = set(g.output_names)
        self.count: dict[str, int] = {}
        for n in g.nodes:
            for i in n.inputs:
                if i:
                    self.count[i] = self.count.get(i, 0) + 1

    def only(self, value: str, node: Node) -> bool:
        """True when `node` is the one reader of `value` (read once) and it is no output."""
        return value not in self.outputs and self.count.get(value) == 1 and \
            node.inputs.count(value) == 1


def _channel_vector(arr, channels: int, rank: int, channel_axis: int = 1):
    """`arr` as a (channels,) vector when broadcasting it against a rank-`rank` tensor with
    `channels` at `channel_axis` acts per channel only (and does not change the shape)."""
    if arr is None or arr.dtype.kind != "f" or arr.ndim > rank:
        return None
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != channel_axis):
        return None
    if shape[channel_axis] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1).astype(np.float64), (channels,))


def _affine_of(g: Graph, node: Node, channels: int, rank: int):
    """(a, c) if `node` applies y = a·x + c per channel with constant a, c; else None."""
    inits = g.initializers
    if node.op_type == "BatchNormalization":
        if rank < 2 or not all(i in inits for i in node.inputs[1:5]):
            return None
        scale, bias, mean, var = (inits[i] for i in node.inputs[1:5])
        if scale.shape != (channels,) or {bias.shape, mean.shape, var.shape} != {(channels,)}:
            return None
        eps = node.attrs.get("epsilon", 1e-5)
        a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        return a, bias.astype(np.float64) - mean.astype(np.float64) * a
    if node.op_type in ("Mul", "Add"):
        other = [i for i in node.inputs if i in inits]
        if len(other) != 1:
            return None
        v = _channel_vector(inits[other[0]], channels, rank)
        if v is None:
            return None
        return (v, np.zeros(channels)) if node.op_type == "Mul" else (np.ones(channels), v)
    return None


def _fold_into_conv(g: Graph, conv: Node, a, c, new_inits):
    w = g.initializers[conv.inputs[1]]
    b = g.initializers.get(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
    if b is not None and b.shape != (w.shape[0],):
        return None  # a malformed bias: leave the Conv to report it
    w2 = (w.astype(np.float64) * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b64 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    b2 = (b64 * a + c).astype(w.dtype)
    wn, bn = g.unique_name(f"{conv.inputs[1]}_folded"), g.unique_name(f"{conv.name}_bias_folded")
    new_inits[wn], new_inits[bn] = w2, b2
    g.initializers[wn], g.initializers[bn] = w2, b2  # reserve the names
    return conv.replace(inputs=(conv.inputs[0], wn, bn))


def _fold_into_gemm(g: Graph, gemm: Node, a, c, new_inits):
    at = gemm.attrs
    bmat = g.initializers[gemm.inputs[1]]
    n = bmat.shape[0] if at.get("transB", 0) else bmat.shape[1]
    cvec = np.zeros(n)
    if len(gemm.inputs) > 2 and gemm.inputs[2]:
        cin = g.initializers.get(gemm.inputs[2])
        v = None if cin is None else _channel_vector(cin, n, 2, channel_axis=1)
        if v is None:
            return None  # a full-matrix or run-time C cannot take a per-column scale
        cvec = v * at.get("beta", 1.0)
    scale = a[:, None] if at.get("transB", 0) else a[None, :]
    b2 = (bmat.astype(np.float64) * scale).astype(bmat.dtype)
    c2 = (cvec * a + c).astype(bmat.dtype)
    bn, cn = g.unique_name(f"{gemm.inputs[1]}_folded"), g.unique_name(f"{gemm.name}_C_folded")
    new_inits[bn], new_inits[cn] = b2, c2
    g.initializers[bn], g.initializers[cn] = b2, c2
    attrs = dict(at)
    attrs["beta"] = 1.0
    return gemm.replace(inputs=(gemm.inputs[0], bn, cn), attrs=attrs)


def _foldable_producer(g: Graph, node: Node, producers, readers: _Readers):
    """(producer, channels, rank) when `node` reads a Conv/Gemm output it could fold into."""
    cands = node.inputs[:1] if node.op_type == "BatchNormalization" else node.inputs
    prod = next((producers[i] for i in cands if i in producers), None)
    if prod is None or prod.op_type not in ("Conv", "Gemm"):
        return None
    if prod.attrs.get("fused_activation", ""):
        return None  # the activation sits between the producer and this node
    if len(prod.inputs) < 2 or prod.inputs[1] not in g.initializers:
        return None
    if not readers.only(prod.outputs[0], node):
        return None
    w = g.initializers[prod.inputs[1]]
    if prod.op_type == "Conv":
        if w.ndim < 3 or w.dtype.kind != "f":
            return None
        if len(prod.inputs) > 2 and prod.inputs[2] and prod.inputs[2] not in g.initializers:
            return None
        return prod, w.shape[0], w.ndim
    if prod.attrs.get("transA", 0) or w.ndim != 2 or w.dtype.kind != "f":
        return None
    return prod, (w.shape[0] if prod.attrs.get("transB", 0) else w.shape[1]), 2


def fold_batch_norm(graph: Graph) -> Graph:
    from .passes import remove_dead_nodes
    g = graph.copy()
    producers, readers = g.producers(), _Readers(g)
    nodes = list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    for node in graph.nodes:
        if node.op_type not in ("BatchNormalization", "Mul", "Add"):
            continue
        found = _foldable_producer(g, node, producers, readers)
        if found is None:
            continue
        prod, channels, rank = found
        ac = _affine_of(g, node, channels, rank)
        if ac is None:
            continue
        new_inits: dict = {}
        fold = _fold_into_conv if prod.op_type == "Conv" else _fold_into_gemm
        new = fold(g, prod, *ac, new_inits)
        if new is None:
            for k in new_inits:
                g.initializers.pop(k, None)
            continue
        new = new.replace(outputs=(node.outputs[0],) + prod.outputs[1:])
        nodes[index.pop(id(prod))] = None
        pos = index.pop(id(node))
        nodes[pos], index[id(new)] = new, pos  # at the folded node's place: inputs are ready
        producers[node.outputs[0]] = new
        readers.count.pop(prod.outputs[0], None)
    g.nodes = [n for n in nodes if n is not None]
    return remove_dead_nodes(g)


def _activation_of(g: Graph, node: Node):
    """(name, params) for a fusable activation node, else None."""
    if node.op_type == "Relu":
        return "Relu", []
    if node.op_type == "LeakyRelu":
        return "LeakyRelu", [float(node.attrs.get("alpha", 0.01))]
    if node.op_type == "Clip":
        bounds = []
        for idx, default in ((1, -math.inf), (2, math.inf)):
            name = node.inputs[idx] if len(node.inputs) > idx else ""
            if not name:
                bounds.append(default)
                continue
            arr = g.initializers.get(name)
            if arr is None or arr.size != 1:
                return None
            bounds.append(float(arr.reshape(-1)[0]))
        lo, hi = bounds
        if lo == 0.0 and hi == math.inf:
            return "Relu", []
        # infinities cannot be stored in the engine file's JSON; min > max means "all = max"
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            return None
        return "Clip", [lo, hi]
    return None


def fuse_activations(graph: Graph) -> Graph:
    g = graph.copy()
    producers, readers = g.producers(), _Readers(g)
    nodes = list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    for node in graph.nodes:
        act = _activation_of(g, node) if node.op_type in ("Relu", "LeakyRelu", "Clip") else None
        if act is None or not node.inputs[0]:
            continue
        prod = producers.get(node.inputs[0])
        if prod is None or prod.op_type not in ("Conv", "Gemm") or \
                prod.attrs.get("fused_activation", ""):
            continue
        if not readers.only(prod.outputs[0], node):
            continue
        attrs = dict(prod.attrs, fused_activation=act[0], fused_activation_params=act[1])
        new = prod.replace(outputs=(node.outputs[0],) + prod.outputs[1:], attrs=attrs)
        nodes[index.pop(id(prod))] = None
        pos = index.pop(id(node))
        nodes[pos], index[id(new)] = new, pos
        producers[node.outputs[0]] = new
        readers.count.pop(prod.outputs[0], None)
    g.nodes = [n for n in nodes if n is not None]
    from .passes import remove_dead_nodes
    return remove_dead_nodes(g)  # Clip bounds nobody reads any more


#: QConv attributes the fused node renames (the conv output is now internal: operand a)
_CONV_RENAMED = {"y_scale": "conv_scale", "y_zero_point": "conv_zero_point",
                 "activation": "conv_activation", "activation_min": "conv_activation_min",
                 "activation_max": "conv_activation_max"}


def _residual_conv(g: Graph, add: Node, side: int, producers, readers: _Readers):
    """The QConv producing QAdd input `side` when it can run fused with the add: its output is
    read by this add alone (and is no graph output), its output qparams are those the add reads
    it with, and it is no depthwise conv (the depthwise kernel has no GEMM tiles to hook into)."""
    v = add.inputs[side]
    conv = producers.get(v)
    if conv is None or conv.op_type != "QConv" or not readers.only(v, add):
        return None
    p = "ab"[side]
    if (conv.attrs.get("y_scale"), conv.attrs.get("y_zero_point")) != \
            (add.attrs.get(f"{p}_scale"), add.attrs.get(f"{p}_zero_point")):
        return None
    w = g.initializers.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or w.ndim != 4:
        return None
    if conv.attrs.get("group", 1) > 1 and w.shape[1] == 1:
        return None                                        # depthwise: stays unfused
    return conv


def fuse_residual_add(graph: Graph) -> Graph:
    """QConv → QAdd, where the QAdd is the QConv output's only reader, becomes one QConvAdd
    node: inputs (x, skip, W, W_scale[, B]), the QAdd's output (see QConvAddOp), named
    "<conv>+<add>", with `fused_nodes` = [conv, add] (their names: reports map the float
    graph's Conv and Add to it). The QAdd's other input is the skip tensor; its absorbed Relu
    stays its clamp. When both inputs are
    fusable convs (a ResNet block with a downsampling shortcut), the one computed last is fused,
    so the skip is ready where that conv ran, and the fused node takes the conv's place (the
    add's when the skip comes later): no value lives longer than before. The QAdd's operand
    order does not matter for the bytes (QConvAdd2d). Graphs without such pairs come back
    unchanged; depthwise convs are left alone."""
    g = graph.copy()
    producers, readers = g.producers(), _Readers(g)
    nodes = list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    for add in graph.nodes:
        if add.op_type != "QAdd" or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
            continue
        found = [(index[id(c)], side, c) for side in (0, 1)
                 if (c := _residual_conv(g, add, side, producers, readers)) is not None]
        if not found:
            continue
        pos, side, conv = max(found, key=lambda f: f[0])
        skip = add.inputs[1 - side]
        p = "ba"[side]                                     # the skip's operand letter
        attrs = {_CONV_RENAMED.get(k, k): v for k, v in conv.attrs.items()}
        attrs.update(fused_nodes=[conv.name, add.name],
                     skip_scale=add.attrs.get(f"{p}_scale", 1.0),
                     skip_zero_point=add.attrs.get(f"{p}_zero_point", 0),
                     **{k: add.attrs[k] for k in ("y_scale", "y_zero_point", "activation",
                                                  "activation_min", "activation_max")
                        if k in add.attrs})
        new = Node("QConvAdd", g.unique_name(f"{conv.name}+{add.name}"),
                   (conv.inputs[0], skip, *conv.inputs[1:]), add.outputs, attrs)
        skip_at = index.get(id(producers[skip])) if skip in producers else -1
        nodes[pos] = None
        at = index.pop(id(add))
        if skip_at is not None and skip_at < pos:
            nodes[at] = None
            at = pos
        nodes[at] = new
        index.pop(id(conv))
        index[id(new)] = at
        for o in add.outputs:
            producers[o] = new
        readers.count.pop(conv.outputs[0], None)
        g.value_info.pop(conv.outputs[0], None)            # the conv output is internal now
    g.nodes = [n for n in nodes if n is not None]
    return g


def fuse_matmul_bias(graph: Graph) -> Graph:
    """MatMul(x, W) → Add(·, b), W a constant float [K, N], b a constant that only adds a
    vector over the last axis, the MatMul's output read by that Add alone, becomes
    Gemm(x, W, b) — with x reshaped to [-1, K] before and the result back to x's leading axes
    after when x has more than two axes (those must be static — the shapes are the Reshapes'
    constants —, as must the graph's inputs). Needs `value_info` (shape inference)."""
    g = graph.copy()
    static = g.inputs_static()      # else x's shape in value_info may be one batch's
    producers, readers = g.producers(), _Readers(g)
    nodes = list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    for add in graph.nodes:
        if add.op_type != "Add" or len(add.inputs) != 2:
            continue
        side = next((k for k in (0, 1) if add.inputs[k] in producers and
                     producers[add.inputs[k]].op_type == "MatMul"), None)
        if side is None:
            continue
        mm, b_name = producers[add.inputs[side]], add.inputs[1 - side]
        w = g.initializers.get(mm.inputs[1])
        info = g.value_info.get(mm.inputs[0]) or next(
            (v for v in g.inputs if v.name == mm.inputs[0]), None)
        shape = None if info is None else info.shape
        if w is None or w.ndim != 2 or w.dtype.kind != "f" or b_name not in g.initializers or \
                shape is None or len(shape) < 2 or shape[-1] != w.shape[0] or \
                mm.inputs[0] in g.initializers or not readers.only(mm.outputs[0], add):
            continue
        if len(shape) > 2 and not (static and all(isinstance(d, int) for d in shape)):
            continue                # the Reshape back needs the leading axes, fixed
        k, n = w.shape
        bias = _channel_vector(g.initializers[b_name], n, len(shape), len(shape) - 1)
        if bias is None:
            continue
        cn = g.unique_name(f"{mm.name}_bias")
        g.initializers[cn] = bias.astype(w.dtype)
        new = []
        x, y = mm.inputs[0], add.outputs[0]
        if len(shape) > 2:
            x2, y2 = g.unique_name(f"{mm.name}_2d"), g.unique_name(f"{add.name}_2d")
            s_in, s_out = g.unique_name(f"{mm.name}_rows"), g.unique_name(f"{add.name}_shape")
            g.initializers[s_in] = np.array([-1, k], np.int64)
            g.initializers[s_out] = np.array([*shape[:-1], n], np.int64)
            new.append(Node("Reshape", g.unique_name(f"{mm.name}_flatten"), (x, s_in), (x2,)))
            x, y = x2, y2
        new.append(Node("Gemm", g.unique_name(f"{mm.name}+{add.name}"), (x, mm.inputs[1], cn),
                        (y,)))
        if len(shape) > 2:
            new.append(Node("Reshape", g.unique_name(f"{add.name}_unflatten"), (y, s_out),
                            add.outputs))
        nodes[index.pop(id(mm))] = None
        pos = index.pop(id(add))
        nodes[pos] = new                       # at the Add's place: x and W are ready there
        for m in new:
            producers[m.outputs[0]] = m
        readers.count.pop(mm.outputs[0], None)
        g.value_info.pop(mm.outputs[0], None)
    g.nodes = [m for item in nodes if item is not None
               for m in (item if isinstance(item, list) else [item])]
    return g
