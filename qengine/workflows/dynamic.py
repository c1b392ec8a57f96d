"""Dynamic quantization: weights int8 at quantization time, activations per call.

`quantize_dynamic(model, config)` swaps LSTM, GRU, Gemm, MatMul and 1-D / 2-D Conv nodes whose
weights are initializers for DynamicQuantLSTM / DynamicQuantGRU / DynamicQuantLinear /
DynamicQuantConv (qengine/ops/dynamic.py). Weights become int8 per output row
(symmetric, narrow range) plus float32 scales; biases stay float32. A MatMul followed by an Add
of a constant bias (what the exporters emit for nn.Linear on 3-D inputs) becomes one linear with
that bias; with weight_bits=4 the LSTM / GRU / Gemm / MatMul weights are int4 instead
(docs/numerics.md "4-bit weights"; Conv keeps int8 weights). A Relu / Clip / LeakyRelu that is a Conv's only reader runs in the dynamic conv's
output pass. Nodes the int8 kernels cannot run exactly as the float op would (LSTM peepholes or
clip, Gemm with transA, weights computed at run time) stay in float, as do the nodes named in
`keep_float`, and — the keep-float rule — every Conv / Gemm / MatMul whose int8 form the cost
model (qengine/workflows/dynamic_cost.py) predicts to be slower than the float op: those are
named in one QuantizationWarning (`qengine quantize` prints it in its notes) and by
`slower_in_int8(model)`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, QuantizationWarning
from ..graph.fusion import _activation_of
from ..graph.ir import Graph, Node
from ..model_files import as_graph
from ..qdq.rules import bias_vector
from ..quantized.weights import pack_int4, quantize_int4, quantize_per_channel_symmetric

QUANTIZABLE = frozenset({"LSTM", "GRU", "Gemm", "MatMul", "Conv"})


@dataclass(frozen=True)
class DynamicQuantConfig:
    """Options of dynamic quantization.

    per_row: quantize activations per row (per batch row for LSTM/GRU) instead of per tensor
        (per time step for LSTM/GRU); slower by a little, more accurate on rows of different
        ranges, and makes each row's result independent of the other rows of the batch.
    op_types: which op types to quantize (a subset of LSTM, GRU, Gemm, MatMul, Conv).
    keep_float: node names to leave in float (mixed precision).
    cost_model: keep a Conv / Gemm / MatMul in float when the cost model predicts its int8
        form would be slower (reported in a QuantizationWarning); False quantizes them anyway.
    weight_bits: 8 (int8 weights, the default) or 4: LSTM, GRU, Gemm and MatMul weights become
        int4, symmetric narrow range [-7, 7], stored and held two per byte (Conv keeps 8).
    group_size: with weight_bits=4, None (one scale per output row) or 32, 64 or 128 (one
        scale per row and group of that many consecutive input features). When group_size
        does not divide K the last group is shorter: it is zero-padded in the kernels and
        scaled over its own values, so any K works.
    activation_matmul: also quantize the MatMuls between two activations (attention's Q·Kᵀ
        and P·V): both sides per call, A per row and B per column (DynamicQuantMatMul).
        Off by default: at attention's sizes it costs time and accuracy (docs/reach.md).
    rounding: how LSTM / GRU / Gemm / MatMul weights round to their grid: "nearest", or
        "adaround" (learned to reconstruct each gate's or layer's pre-activation on the
        calibration data quantize_dynamic is then given; qengine/workflows/adaround.py):
        worth it for 4-bit weights.
    """
    per_row: bool = False
    op_types: frozenset = QUANTIZABLE
    keep_float: frozenset = field(default_factory=frozenset)
    cost_model: bool = True
    weight_bits: int = 8
    group_size: int | None = None
    rounding: str = "nearest"
    activation_matmul: bool = False

    def __post_init__(self):
        if self.rounding not in ("nearest", "adaround"):
            raise ConfigError(f"rounding must be 'nearest' or 'adaround', got "
                              f"{self.rounding!r}")
        if type(self.weight_bits) is not int or self.weight_bits not in (4, 8):
            raise ConfigError(f"weight_bits must be 8 or 4, got {self.weight_bits!r}")
        if self.group_size is not None:
            if self.weight_bits != 4:
                raise ConfigError(f"group_size={self.group_size!r} needs weight_bits=4 "
                                  f"(8-bit weights have one scale per output row)")
            if type(self.group_size) is not int or self.group_size not in (32, 64, 128):
                raise ConfigError(f"group_size must be None (one scale per output row), 32, 64 "
                                  f"or 128, got {self.group_size!r}")
        for name in ("per_row", "cost_model", "activation_matmul"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("op_types", "keep_float"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a collection of strings, got {value!r}")
            object.__setattr__(self, name, frozenset(value))
        unknown = self.op_types - QUANTIZABLE
        if unknown:
            raise ConfigError(f"op_types {sorted(unknown)} cannot be dynamically quantized; "
                              f"choose from {sorted(QUANTIZABLE)}")


def quantize_dynamic(model, config: DynamicQuantConfig | None = None,
                     calibration_data=None) -> Graph:
    """Return a copy of `model` (a Graph, an onnx.ModelProto, or the path of an ONNX or
    engine file, as `qengine quantize` takes) with its LSTM / GRU / Linear / Conv layers
    dynamically quantized to int8. calibration_data ({input: samples on axis 0} or an
    iterable of feed dicts) is read only by rounding="adaround"."""
    config = DynamicQuantConfig() if config is None else config
    if not isinstance(config, DynamicQuantConfig):
        raise ConfigError(f"config must be a DynamicQuantConfig, got {type(config).__name__}")
    model = as_graph(model, "quantize_dynamic")
    missing = config.keep_float - _node_names(model)
    if missing:
        raise ConfigError(f"keep_float names nodes that are not in the graph: {sorted(missing)}")
    if (config.rounding == "adaround") != (calibration_data is not None):
        raise ConfigError("rounding='adaround' learns from calibration data: pass "
                          "calibration_data, and only with it" if calibration_data is None
                          else "calibration_data is read only by rounding='adaround'")
    slower = dict(slower_in_int8(model, config)) if config.cost_model else {}
    g = model.copy()
    consumers = g.consumers()
    learned = None
    if config.rounding == "adaround":
        learned = _grams(g, calibration_data, config, slower)
    for node in list(g.nodes):
        if node.op_type not in config.op_types or node.name in config.keep_float or \
                node.name in slower:
            continue
        rewrite = _REWRITES[node.op_type](g, node, config, consumers, learned)
        if rewrite is not None:
            old, new = rewrite
            g.replace_nodes(old, new)
    for node in list(g.nodes):       # If branches and Loop bodies hold layers too: the same way
        if node.subgraphs():
            if config.rounding == "adaround":
                warnings.warn(f"{node.op_type} {node.name!r}: the layers inside its branches "
                              f"round to nearest (AdaRound's calibration data is the enclosing "
                              f"graph's)", QuantizationWarning, stacklevel=2)
            g.replace_nodes([node], [node.replace(attrs={**node.attrs, **{
                k: quantize_dynamic(b, replace(config, rounding="nearest",
                                               keep_float=config.keep_float & _node_names(b)))
                for k, b in node.subgraphs()}})])
    unused = set(g.initializers) - {i for n in g.nodes for i in n.inputs}
    for name in unused:                       # float weights that were replaced
        del g.initializers[name]
    g.verify()
    if slower:
        ops = {n.name: n.op_type for n in model.nodes}
        listed = "; ".join(f"{ops[k]} {k!r}: {c.describe()}" for k, c in slower.items())
        warnings.warn(f"quantize_dynamic kept {len(slower)} node(s) in float because their "
                      f"int8 form would be slower (cost model, qengine/workflows/"
                      f"dynamic_cost.py): {listed}. DynamicQuantConfig(cost_model=False) "
                      f"quantizes them anyway.", QuantizationWarning, stacklevel=2)
    return g


def _node_names(g: Graph) -> set[str]:
    """The names of g's nodes and of the nodes of its subgraphs (If branches, Loop bodies)."""
    return {n.name for n in g.nodes} | {m for n in g.nodes for _, b in n.subgraphs()
                                        for m in _node_names(b)}


def slower_in_int8(model, config: DynamicQuantConfig | None = None) -> list:
    """[(node name, NodeCost)] for the Conv / Gemm / MatMul nodes quantize_dynamic would swap
    but keeps in float because the cost model predicts the int8 op to be slower. Sizes come from
    shape inference on the float graph where they are static, else the comparison is per output
    pixel / row (qengine.workflows.dynamic_cost)."""
    from ..graph.passes import infer_shapes
    from . import dynamic_cost
    config = DynamicQuantConfig() if config is None else config
    g = as_graph(model, "slower_in_int8")
    try:
        info = {**{v.name: v for v in g.inputs}, **infer_shapes(g).value_info}
    except Exception:                          # shapes are an optimisation here, not needed
        info = {v.name: v for v in g.inputs}

    def shape(name):
        v = info.get(name)
        return None if v is None or v.shape is None else tuple(v.shape)

    out = []
    for n in g.nodes:
        if n.op_type not in config.op_types or n.name in config.keep_float:
            continue
        w = _const(g, n.inputs[1]) if len(n.inputs) > 1 else None
        if w is None:
            continue
        if n.op_type == "Conv" and w.ndim in (3, 4):
            a = n.attrs
            cost = dynamic_cost.conv_cost(w.shape, a.get("group", 1), a.get("strides"),
                                          a.get("pads"), shape(n.inputs[0]), shape(n.outputs[0]))
        elif n.op_type in ("Gemm", "MatMul") and w.ndim == 2:
            nk = w.shape if n.op_type == "Gemm" and n.attrs.get("transB", 0) else w.shape[::-1]
            xs = shape(n.inputs[0])
            m = int(np.prod(xs[:-1])) if xs and all(isinstance(d, int) for d in xs) else None
            cost = dynamic_cost.linear_cost(nk[0], nk[1], m)
        else:
            continue
        if cost.keep_float:
            out.append((n.name, cost))
    return out


def _rank(g: Graph, v: str):
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return None if info is None or info.shape is None else len(info.shape)


def _const(g: Graph, name: str):
    return g.initializers.get(name) if name else None


def _add_init(g: Graph, base: str, value: np.ndarray) -> str:
    name = g.unique_name(base)
    g.initializers[name] = value
    return name


def rnn_operands(g, node):
    """(inputs padded to 8, W, R) of an ONNX LSTM / GRU node the quantized layers can run —
    constant W, R (and B), default activations, no clip, input_forget or nonzero peepholes —
    or None (the node stays float)."""
    a = node.attrs
    if a.get("clip") is not None or a.get("input_forget", 0) or a.get("activations") is not None:
        return None
    ins = list(node.inputs) + [""] * (8 - len(node.inputs))
    W, R = _const(g, ins[1]), _const(g, ins[2])
    if W is None or R is None or W.ndim != 3 or R.ndim != 3:
        return None
    if ins[3] and _const(g, ins[3]) is None:
        return None
    if node.op_type == "LSTM" and ins[7]:
        P = _const(g, ins[7])
        if P is None or np.any(P):
            return None                                   # peepholes: keep float
    return ins, W, R


def _quantizer(config):
    if config.weight_bits == 4:
        return lambda m: quantize_int4(m, config.group_size)
    return quantize_per_channel_symmetric


def _rounded(learned, key, m, q, s, config):
    """q, or with AdaRound the codes learned for weights m [N, K] on the same scales s."""
    if learned is None:
        return q
    from .adaround import learn_codes
    codes = learn_codes(m, s, *learned.get(key), config.weight_bits, config.group_size)
    return q if codes is None else codes


def _grams(g, data, config, slower):
    """The Gram matrices AdaRound needs, from the float model g on `data`."""
    from ._measure import feed_batches
    from .adaround import dynamic_grams
    rnns, linears = {}, {}
    for n in g.nodes:
        if n.op_type not in config.op_types or n.name in config.keep_float or n.name in slower:
            continue
        if n.op_type in ("LSTM", "GRU") and rnn_operands(g, n) is not None:
            rnns[n.name] = (n.op_type.lower(), n.attrs)
        elif n.op_type in ("Gemm", "MatMul") and _const(g, n.inputs[1]) is not None:
            linears[n.name] = n.inputs[0]
    return dynamic_grams(g, feed_batches(g, data), rnns, linears)


def _rnn(g, node, config, consumers, kind, learned=None):
    a = node.attrs
    ops = rnn_operands(g, node)
    if ops is None:
        return None
    ins, W, R = ops
    w4 = config.weight_bits == 4
    quant = _quantizer(config)
    qs, rs = [], []
    for d, m in enumerate(W.astype(np.float32)):
        q, s = quant(m)
        qs.append((_rounded(learned, (node.name, "W", d), m, q, s, config), s))
    lbr0 = kind == "gru" and not a.get("linear_before_reset", 0)   # R reads r * h: nearest
    for d, m in enumerate(R.astype(np.float32)):
        q, s = quant(m)
        rs.append((q if lbr0 else _rounded(learned, (node.name, "R", d), m, q, s, config), s))
    store = pack_int4 if w4 else (lambda q: q)
    base = node.name
    new_in = [ins[0],
              _add_init(g, f"{base}.Wq", store(np.stack([q for q, _ in qs]))),
              _add_init(g, f"{base}.Ws", np.stack([s for _, s in qs])),
              _add_init(g, f"{base}.Rq", store(np.stack([q for q, _ in rs]))),
              _add_init(g, f"{base}.Rs", np.stack([s for _, s in rs])),
              ins[3], ins[4], ins[5]] + ([ins[6]] if kind == "lstm" else [])
    while new_in and not new_in[-1]:
        new_in.pop()
    attrs = {"direction": a.get("direction", "forward"), "layout": a.get("layout", 0),
             "per_row": int(config.per_row)}
    if a.get("hidden_size") is not None:
        attrs["hidden_size"] = a["hidden_size"]
    if kind == "gru":
        attrs["linear_before_reset"] = a.get("linear_before_reset", 0)
    if w4:
        attrs.update(weight_bits=4, group_size=config.group_size or 0, input_size=W.shape[2])
    op = "DynamicQuantLSTM" if kind == "lstm" else "DynamicQuantGRU"
    return [node], [Node(op, node.name, tuple(new_in), node.outputs, attrs)]


def _linear_node(g, node, config, x, w_nk, bias, outputs, old, learned):
    attrs = {"per_row": int(config.per_row)}
    w = np.ascontiguousarray(w_nk, np.float32)
    wq, ws = _quantizer(config)(w)
    wq = _rounded(learned, (node.name, "x"), w, wq, ws, config)
    if config.weight_bits == 4:
        attrs.update(weight_bits=4, group_size=config.group_size or 0, in_features=wq.shape[1])
        wq = pack_int4(wq)
    ins = [x, _add_init(g, f"{node.name}.Wq", wq), _add_init(g, f"{node.name}.Ws", ws)]
    if bias is not None:
        ins.append(_add_init(g, f"{node.name}.bias", np.ascontiguousarray(bias, np.float32)))
    return old, [Node("DynamicQuantLinear", node.name, tuple(ins), outputs, attrs)]


def _gemm(g, node, config, consumers, learned=None):
    a = node.attrs
    B = _const(g, node.inputs[1])
    if a.get("transA", 0) or B is None or B.ndim != 2 or a.get("fused_activation", ""):
        return None                     # (DynamicQuantLinear has no fused activation)
    w = (B if a.get("transB", 0) else B.T) * np.float32(a.get("alpha", 1.0))
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = _const(g, node.inputs[2])
        bias = bias_vector(c, w.shape[0])
        if bias is None:
            return None                 # C computed at run time or a full matrix: keep float
        bias = bias * np.float32(a.get("beta", 1.0))
    x, outputs, old = node.inputs[0], node.outputs, [node]
    # the Reshapes fuse_matmul_bias put around an nn.Linear on [..., K]: DynamicQuantLinear
    # takes [..., K] itself, so the three nodes become one
    flat = next((n for n in g.nodes if x in n.outputs and n.op_type == "Reshape"), None)
    users = consumers.get(node.outputs[0], [])
    if flat is not None and len(users) == 1 and users[0].op_type == "Reshape" and \
            len(consumers.get(x, [])) == 1 and not {x, node.outputs[0]} & set(g.output_names):
        s_in, s_out = g.static_shape(flat.inputs[0]), g.static_shape(users[0].outputs[0])
        if s_in and s_out and s_in[:-1] == s_out[:-1] and (s_in[-1], s_out[-1]) == \
                w.shape[::-1]:
            x, outputs, old = flat.inputs[0], users[0].outputs, [flat, node, users[0]]
    return _linear_node(g, node, config, x, w, bias, outputs, old, learned)


def _matmul(g, node, config, consumers, learned=None):
    B = _const(g, node.inputs[1])
    if B is None and _const(g, node.inputs[0]) is None and config.activation_matmul:
        ranks = [_rank(g, v) for v in node.inputs]
        if all(r is not None and r >= 2 for r in ranks):
            return [node], [Node("DynamicQuantMatMul", node.name, node.inputs, node.outputs)]
        return None
    if B is None or B.ndim != 2 or _const(g, node.inputs[0]) is not None:
        return None
    out = node.outputs[0]
    users = consumers.get(out, [])
    if len(users) == 1 and users[0].op_type == "Add" and out not in g.output_names \
            and users[0].name not in config.keep_float:
        add = users[0]
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        bias = bias_vector(_const(g, other), B.shape[1])
        if bias is not None:
            return _linear_node(g, node, config, node.inputs[0], B.T, bias, add.outputs,
                                [node, add], learned)
    return _linear_node(g, node, config, node.inputs[0], B.T, None, node.outputs, [node],
                        learned)


def _conv(g, node, config, consumers, learned=None):
    a = node.attrs
    W = _const(g, node.inputs[1])
    if W is None or W.ndim not in (3, 4) or W.dtype.kind != "f":
        return None                       # weights computed at run time, or 3-D convs: float
    if len(node.inputs) > 2 and node.inputs[2] and _const(g, node.inputs[2]) is None:
        return None
    wq, ws = quantize_per_channel_symmetric(W.reshape(W.shape[0], -1).astype(np.float32))
    ins = [node.inputs[0], _add_init(g, f"{node.name}.Wq", wq.reshape(W.shape)),
           _add_init(g, f"{node.name}.Ws", ws)]
    if len(node.inputs) > 2 and node.inputs[2]:
        ins.append(node.inputs[2])
    attrs = {"group": a.get("group", 1), "kernel_shape": list(W.shape[2:])}
    for k in ("strides", "pads", "dilations"):
        if a.get(k):
            attrs[k] = list(a[k])
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        attrs["auto_pad"] = a["auto_pad"]
    old, outputs = [node], node.outputs
    act = (a.get("fused_activation", ""), list(a.get("fused_activation_params", [])))
    if not act[0]:
        # a Relu / Clip / LeakyRelu that is the conv's only reader runs in the conv's output pass
        users = consumers.get(node.outputs[0], [])
        if len(users) == 1 and node.outputs[0] not in g.output_names and \
                users[0].name not in config.keep_float:
            found = _activation_of(g, users[0]) if users[0].inputs[0] == node.outputs[0] else None
            if found is not None:
                act, old, outputs = found, [node, users[0]], users[0].outputs
    if act[0]:
        attrs["fused_activation"], attrs["fused_activation_params"] = act[0], list(act[1])
    return old, [Node("DynamicQuantConv", node.name, tuple(ins), outputs, attrs)]


_REWRITES = {
    "Conv": _conv,
    "LSTM": lambda g, n, c, u, r=None: _rnn(g, n, c, u, "lstm", r),
    "GRU": lambda g, n, c, u, r=None: _rnn(g, n, c, u, "gru", r),
    "Gemm": _gemm,
    "MatMul": _matmul,
}
