"""Static PTQ's half of the QDQ IR: decide which nodes run in int8, then write the QDQ graph.

`Plan(g, keep_float)` walks the float graph in order with the lowering rules: a node is int8
when its rule accepts it (and, for the followers — MaxPool, data movement, stand-alone
Relu/Clip, fused chains — when its input is int8 already: quantizing just for them adds error
and saves nothing). `insert_qdq` then writes the graph the lowering reads: each int8 node's
activation inputs come through DequantizeLinear, its output leaves through QuantizeLinear (after
the Relu/Clip it absorbs), weights are int8 constants through DequantizeLinear (symmetric,
narrow range, per output channel or per tensor); biases stay float (the integer layers quantize
them at s_x·s_w, numerics.md epilogue (b)).

Naming keeps the float graph's: a value an int8 node produces is the DQ output (its producer
writes `<v>.float`), so every consumer and graph output still reads `v`.
"""
from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node, ValueInfo
from ..quant import choose_qparams
from .names import Names
from .lower import BIAS_LIMIT, Unit
from .rules import bias_vector, clamp_of, rule_for


def is_float_value(g: Graph, v: str) -> bool:
    """False for a value known to be integer or bool (shape arithmetic: Shape → Gather →
    Unsqueeze → Concat in the TorchScript exports); True when float or not known."""
    if v in g.initializers:
        return g.initializers[v].dtype.kind == "f"
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return info is None or np.dtype(info.dtype).kind == "f"


class Plan:
    """Which nodes run in int8 (name → rule), the clamps they absorb, and the activations that
    need qparams (`watch`: what calibration observes)."""

    def __init__(self, g: Graph, keep_float: frozenset):
        self.g = g
        self.is_const = g.initializers.__contains__
        self.int8: dict = {}
        self.absorbed: dict[str, Node] = {}     # producer name -> the Relu/Clip it absorbs
        self.skip: set[str] = set()             # absorbed activation nodes
        self.same_as: dict[str, str] = {}       # output -> input whose qparams it keeps
        consumers = g.consumers()
        outputs = set(g.output_names)
        quantized, float_ok = set(), set(g.input_names) | set(g.initializers)
        for n in g.nodes:
            if n.name in self.skip:
                continue
            rule = None if n.name in keep_float else self.accepts(n)
            x = n.inputs[0] if n.inputs else ""
            if rule is not None and rule.needs_int8_input and \
                    (x not in quantized or (rule.moves_bytes and x in float_ok)):
                rule = None             # its input is (also) float: moving floats is as cheap
            if rule is None:
                float_ok.update(v for v in (*n.inputs, *n.outputs) if v)
                continue
            self.int8[n.name] = rule
            users = consumers.get(n.outputs[0], [])
            if rule.absorbs_clamp and len(users) == 1 and n.outputs[0] not in outputs and \
                    users[0].name not in keep_float and clamp_of(g, users[0]) is not None:
                self.absorbed[n.name] = users[0]
                self.skip.add(users[0].name)
            quantized.update(v for v in n.inputs[:rule.data_inputs(n, self.is_const)] if v)
            quantized.add(self.output_of(n))
            if rule.same_qparams:
                self.same_as[self.output_of(n)] = x
        watch = []
        for n in g.nodes:
            rule = self.int8.get(n.name)
            if rule is None:
                continue
            watch += [v for v in n.inputs[:rule.data_inputs(n, self.is_const)]
                      if v and v not in g.initializers]
            if not rule.same_qparams:
                watch.append(self.output_of(n))
        self.watch = list(dict.fromkeys(watch))

    def accepts(self, n):
        rule = rule_for(n, self.is_const)
        if rule is None:
            return None
        if not all(is_float_value(self.g, v) for v in n.inputs[:rule.data_inputs(n, self.is_const)]
                   if v):
            return None                  # an integer side computation: nothing to quantize
        return rule if rule.refuse(Unit(self.g, n)) is None else None

    def output_of(self, n: Node) -> str:
        a = self.absorbed.get(n.name)
        return a.outputs[0] if a is not None else n.outputs[0]


def quantize_weights(w, per_channel: bool, bias=None, x_scale=None, bits: int = 8):
    """float [Cout, ...] → (int8 of w's shape, float32 scale: [Cout] or a scalar); `bits` 8
    or 4 (codes in [−7, 7], stored as int8: the kernels run them as the same integers).

    With the layer's bias and input scale, a channel whose int32 bias would not fit at
    s_x·s_w (models whose activations are tiny, e.g. a randomly initialised MobileNetV2 deep
    down) gets the smallest weight scale that fits it, as ONNX Runtime's quantizer does: the
    layer then loses weight precision instead of saturating its bias."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(w.shape[0], -1)
    if per_channel:
        qp = choose_qparams(flat.min(axis=1), flat.max(axis=1), bits=bits, symmetric=True,
                            axis=0)
        scale = np.asarray(qp.scale, np.float32)
    else:
        qp = choose_qparams(float(flat.min()), float(flat.max()), bits=bits, symmetric=True)
        scale = np.asarray(np.float32(qp.scale))
    q = qp.quantize(flat).data.astype(np.int8)
    qmax = 2 ** (bits - 1) - 1
    if bias is not None:
        need = (np.abs(np.asarray(bias, np.float64)) / (np.float64(np.float32(x_scale)) *
                                                         BIAS_LIMIT) * (1 + 2.0 ** -20))
        need = need if per_channel else np.full(flat.shape[0], need.max())
        grow = need > np.broadcast_to(scale, need.shape)
        if grow.any():
            new = np.maximum(np.broadcast_to(scale, need.shape), need).astype(np.float32)
            scale = new if per_channel else np.asarray(np.float32(new.max()))
            rows = np.flatnonzero(grow) if per_channel else np.arange(flat.shape[0])
            s_rows = new[rows] if per_channel else np.full(rows.size, scale)
            q = q.copy()
            q[rows] = np.clip(np.rint(flat[rows] / s_rows[:, None]), -qmax, qmax).astype(np.int8)
    return q.reshape(w.shape), scale


class _Writer:
    def __init__(self, g: Graph):
        self.g = g
        self.out = g.copy()
        self.pending = []                # weight DQ nodes for the node being written
        self.fresh = Names(g).fresh


    def init(self, base, value):
        name = self.fresh(base)
        self.out.initializers[name] = value
        return name

    def info(self, name, like, dtype=None):
        src = self.g.value_info.get(like) or next((i for i in self.g.inputs if i.name == like),
                                                  None)
        if src is not None:
            self.out.value_info[name] = ValueInfo(name, dtype or src.dtype, src.shape)


def insert_qdq(g: Graph, plan: Plan, qparams, per_channel: bool = True,
               weight_bits: int = 8, weight_codes=None) -> Graph:
    """The QDQ graph of float graph `g` under `plan`; `qparams(v)` gives an activation's
    (scale, uint8 zero point); weights get `weight_bits` (8, or 4: codes in [−7, 7]).
    weight_codes: {node name: (int codes, scale)} chosen elsewhere (AdaRound) for the weights
    as _int8_node orients them ([Cout, ...]); used where the scale is the one quantization
    gives (a bias that needs a wider scale wins, with nearest rounding)."""
    w = _Writer(g)
    out = w.out
    int8_outputs = {plan.output_of(n) for n in g.nodes if n.name in plan.int8}
    need = []
    for n in g.nodes:
        rule = plan.int8.get(n.name)
        if rule is not None:
            need += [v for v in n.inputs[:rule.data_inputs(n, g.initializers.__contains__)] if v]
            need.append(plan.output_of(n))
    need = list(dict.fromkeys(need))
    qp = {}
    for v in need:                       # data movement keeps its input's qparams
        src = v
        while src in plan.same_as:
            src = plan.same_as[src]
        qp[v] = qparams(src)
    renamed, dq_name, qdq_nodes = {}, {}, {}
    for v in need:
        if v in int8_outputs:            # its producer writes v.float; the DQ output is v
            renamed[v] = w.fresh(f"{v}.float")
            w.info(renamed[v], v)
            dq_name[v] = v
            src = renamed[v]
        else:
            dq_name[v] = w.fresh(f"{v}.dq")
            w.info(dq_name[v], v)
            src = v
        s, z = qp[v]
        qv = w.fresh(f"{v}.q")
        w.info(qv, v, "uint8")
        sn = w.init(f"{v}.scale", np.asarray(np.float32(s)))
        zn = w.init(f"{v}.zero_point", np.asarray(np.uint8(z)))
        qdq_nodes[v] = [Node("QuantizeLinear", w.fresh(f"{v}.quantize"), (src, sn, zn), (qv,)),
                        Node("DequantizeLinear", w.fresh(f"{v}.dequantize"), (qv, sn, zn),
                             (dq_name[v],))]
    nodes = [m for v in need if v in g.input_names for m in qdq_nodes[v]]
    original = {r: v for v, r in renamed.items()}
    for n in g.nodes:
        rule = plan.int8.get(n.name)
        if rule is not None:
            n = _int8_node(w, n, rule, dq_name, per_channel,
                           qp[n.inputs[0]][0] if n.inputs[0] in qp else None, weight_bits,
                           (weight_codes or {}).get(n.name))
            nodes += w.pending
            w.pending = []
        n = n.replace(outputs=tuple(renamed.get(o, o) for o in n.outputs))
        nodes.append(n)
        for o in n.outputs:
            orig = original.get(o, o)
            if orig in qdq_nodes and orig not in g.input_names:
                nodes += qdq_nodes[orig]
    out.nodes = nodes
    out.toposort()
    used = {v for n in out.nodes for v in n.inputs} | set(out.output_names)
    for k in set(out.initializers) - used:
        del out.initializers[k]
    out.verify()
    return out


def _int8_node(w: _Writer, n: Node, rule, dq_name, per_channel, x_scale, bits=8,
               codes=None) -> Node:
    """Node n reading its activations through DQ and its weights as int8 through DQ."""
    k = rule.data_inputs(n, w.g.initializers.__contains__)
    ins = [dq_name.get(v, v) if v else v for v in n.inputs[:k]] + list(n.inputs[k:])
    attrs = dict(n.attrs)
    g = w.g
    if n.op_type == "Conv":
        bias = g.initializers[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        ins[1] = _weight(w, n.name, g.initializers[n.inputs[1]], 0, per_channel, bias, x_scale,
                         bits, codes)
    elif n.op_type == "Gemm":
        a = attrs
        b = g.initializers[n.inputs[1]]
        wt = (b if a.get("transB", 0) else b.T) * np.float32(a.get("alpha", 1.0))
        c = None
        if len(ins) > 2 and ins[2]:
            c = bias_vector(g.initializers[ins[2]], wt.shape[0]) * \
                np.float32(a.get("beta", 1.0))
            ins[2] = w.init(f"{n.name}.bias", np.ascontiguousarray(c, np.float32))
        ins[1] = _weight(w, n.name, wt, 0, per_channel, c, x_scale, bits, codes)
        for key in ("alpha", "beta"):
            attrs.pop(key, None)
        attrs["transB"] = 1
    elif n.op_type == "ConvTranspose":          # [Cin, Cout, kh, kw]: per output channel
        bias = g.initializers[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        ins[1] = _weight(w, n.name, np.swapaxes(g.initializers[n.inputs[1]], 0, 1), 1,
                         per_channel, bias, x_scale, bits, codes)
    elif n.op_type == "MatMul" and k == 1:
        ins[1] = _weight(w, n.name, g.initializers[n.inputs[1]].T, 1, per_channel, bits=bits,
                         codes=codes)
    return n.replace(inputs=tuple(ins), attrs=attrs)


def _weight(w: _Writer, node: str, wt, axis: int, per_channel: bool, bias=None,
            x_scale=None, bits=8, codes=None) -> str:
    """DequantizeLinear of int8 weights quantized per row of wt ([Cout, ...]); stored with the
    output channels along `axis` (1 for MatMul's [K, N])."""
    q, scale = quantize_weights(wt, per_channel, bias, x_scale, bits)
    if codes is not None and codes[0].shape == q.shape and np.array_equal(codes[1], scale):
        q = codes[0]
    if axis == 1:
        q = np.ascontiguousarray(np.swapaxes(q, 0, 1))
    qn = w.init(f"{node}.W_quantized", q)
    sn = w.init(f"{node}.W_scale", scale)
    zn = w.init(f"{node}.W_zero_point", np.zeros(scale.shape, np.int8))
    dq = w.fresh(f"{node}.W_dequantized")
    w.pending.append(Node("DequantizeLinear", w.fresh(f"{node}.W_dequantize"), (qn, sn, zn),
                          (dq,), {"axis": axis} if scale.ndim else {}))
    return dq
