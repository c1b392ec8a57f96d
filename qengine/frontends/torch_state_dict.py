"""PyTorch state_dict → Graph for stacks of nn.Embedding / nn.LSTM / nn.GRU / nn.Linear and
activations, without needing torch (reads .npz or .safetensors, or a dict of arrays).

    graph = from_torch_state_dict("model.safetensors", layers=[
        ("embedding", "emb", {}),
        ("lstm", "rnn", {"batch_first": True}),   # sizes/layers/directions inferred
        ("linear", "fc", {}),
        ("log_softmax", None, {"dim": -1}),
    ])

Layer kinds and options (sizes are inferred from the weights; options given are checked):
* "lstm" / "gru": hidden_size, num_layers, bidirectional, bias, input_size (all inferred),
  batch_first (default False, as in PyTorch), stateful (default False: when True the graph
  gets inputs "<prefix>.h0" (and "<prefix>.c0") shaped (num_layers·directions, batch, hidden)
  and outputs "<prefix>.h_n" (and "<prefix>.c_n"), PyTorch's layout, for streaming).
* "linear": in_features, out_features, bias (inferred). "embedding": num_embeddings,
  embedding_dim (inferred).
* "relu", "tanh", "sigmoid"; "softmax" / "log_softmax" with option dim (default -1).

The graph uses the ONNX-style ops (LSTM/GRU with gates reordered to ONNX order, MatMul + Add,
Gather), so every pass and quantizer that handles imported ONNX models handles these too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, ModelError
from ..graph.ir import Graph, Node, ValueInfo

_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax",
                "log_softmax": "LogSoftmax"}


def load_state_dict(source) -> dict[str, np.ndarray]:
    """A state_dict as {name: ndarray} from a .npz/.safetensors path or a mapping."""
    if isinstance(source, Mapping):
        out = {}
        for k, v in source.items():
            if hasattr(v, "detach"):  # a torch tensor, when the caller has torch
                v = v.detach().cpu().numpy()
            out[str(k)] = np.asarray(v)
        return out
    path = Path(source)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read state_dict {str(path)!r}: {e}") from e
    if path.suffix == ".safetensors":
        from ..engine_file import read_safetensors
        return read_safetensors(path)[0]
    raise ModelError(f"state_dict file {str(path)!r}: expected a .npz or .safetensors file")


# Where each ONNX gate comes from in PyTorch's stacking: nn.LSTM stacks i, f, g, o and ONNX
# i, o, f, c (g is ONNX's c); nn.GRU stacks r, z, n and ONNX z, r, h. PyTorch's GRU computes
# ONNX's linear_before_reset = 1.
_TORCH_GATE_OF_ONNX = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


def onnx_gate_rows(kind, hidden):
    """Row permutation taking a PyTorch gate stack (G·hidden rows) to ONNX gate order."""
    return np.concatenate([np.arange(g * hidden, (g + 1) * hidden)
                           for g in _TORCH_GATE_OF_ONNX[kind]])


def rnn_weights_from_torch(rows, w_ih, w_hh, b_ih=None, b_hh=None):
    """One direction of nn.LSTM / nn.GRU → ONNX (W, R, B) without the direction axis, rows from
    `onnx_gate_rows`. Missing biases (bias=False) become zeros."""
    W, R = np.asarray(w_ih)[rows], np.asarray(w_hh)[rows]
    zeros = np.zeros(len(rows), W.dtype)
    B = np.concatenate([zeros if b is None else np.asarray(b)[rows] for b in (b_ih, b_hh)])
    return W, R, B


class _Builder:
    def __init__(self, sd):
        self.sd = sd
        self.used: set[str] = set()
        self.nodes: list[Node] = []
        self.inits: dict[str, np.ndarray] = {}
        self.inputs: list[ValueInfo] = []
        self.outputs: list[ValueInfo] = []
        self.n = 0

    def fresh(self, base):
        self.n += 1
        return f"{base}:{self.n}"

    def get(self, key, required=True):
        if key not in self.sd:
            if required:
                raise ModelError(f"state_dict has no {key!r} (have e.g. "
                                 f"{sorted(self.sd)[:8]})")
            return None
        self.used.add(key)
        return np.asarray(self.sd[key], np.float32)

    def const(self, name, arr):
        self.inits[name] = np.asarray(arr)
        return name

    def node(self, op, name, inputs, n_out=1, **attrs):
        outs = tuple(self.fresh(name) for _ in range(n_out))
        self.nodes.append(Node(op, self.fresh(name), tuple(inputs), outs, attrs))
        return outs if n_out > 1 else outs[0]


def _check(opts, key, inferred, where):
    if key in opts and opts[key] != inferred:
        raise ConfigError(f"{where}: option {key}={opts[key]!r} but the weights say {inferred!r}")


def _rnn(b: _Builder, kind: str, prefix: str, opts: dict, x: str):
    G = 4 if kind == "lstm" else 3
    where = f"{kind} {prefix!r}"
    known = {"hidden_size", "num_layers", "bidirectional", "bias", "input_size", "batch_first",
             "stateful", "dropout"}
    if set(opts) - known:
        raise ConfigError(f"{where}: unknown options {sorted(set(opts) - known)}")
    if any(k.startswith(f"{prefix}.weight_hr_l") for k in b.sd):
        raise ModelError(f"{where}: LSTM proj_size is not supported")
    w0 = b.get(f"{prefix}.weight_ih_l0")
    H = b.get(f"{prefix}.weight_hh_l0").shape[1]
    L = 0
    while f"{prefix}.weight_ih_l{L}" in b.sd:
        L += 1
    D = 2 if f"{prefix}.weight_ih_l0_reverse" in b.sd else 1
    has_bias = f"{prefix}.bias_ih_l0" in b.sd
    for key, val in (("hidden_size", H), ("num_layers", L), ("bidirectional", D == 2),
                     ("bias", has_bias), ("input_size", w0.shape[1])):
        _check(opts, key, val, where)
    batch_first, stateful = bool(opts.get("batch_first", False)), bool(opts.get("stateful", False))
    rows = onnx_gate_rows(kind, H)
    if batch_first:
        x = b.node("Transpose", f"{prefix}.to_time_major", [x], perm=[1, 0, 2])
    state_names = ["h"] + (["c"] if kind == "lstm" else [])
    if stateful:
        for s in state_names:
            b.inputs.append(ValueInfo(f"{prefix}.{s}0", "float32", (L * D, "batch", H)))
    finals = {s: [] for s in state_names}
    in_size = w0.shape[1]
    for layer in range(L):
        parts = []
        for sfx in ("", "_reverse")[:D]:
            ws = [b.get(f"{prefix}.{n}_l{layer}{sfx}", n.startswith("weight") or has_bias)
                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            want = [(G * H, in_size), (G * H, H), (G * H,), (G * H,)]
            for name, w, shp in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), ws, want):
                if w is not None and w.shape != shp:
                    raise ModelError(f"{where}: {prefix}.{name}_l{layer}{sfx} has shape "
                                     f"{w.shape}, expected {shp}")
            parts.append(rnn_weights_from_torch(rows, *ws))
        W, R, B = (np.stack([p[k] for p in parts]).astype(np.float32) for k in range(3))
        base = f"{prefix}.l{layer}"
        ins = [x, b.const(f"{base}.W", W), b.const(f"{base}.R", R), b.const(f"{base}.B", B)]
        if stateful:
            sl = [b.const(f"{base}.start", np.array([layer * D], np.int64)),
                  b.const(f"{base}.end", np.array([(layer + 1) * D], np.int64)),
                  b.const(f"{base}.axis", np.array([0], np.int64))]
            ins += [""] + [b.node("Slice", f"{base}.{s}0", [f"{prefix}.{s}0", *sl])
                           for s in state_names]
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if kind == "gru":
            attrs["linear_before_reset"] = 1
        outs = b.node(kind.upper(), base, ins, 1 + len(state_names), **attrs)
        for s, o in zip(state_names, outs[1:]):
            finals[s].append(o)
        y = outs[0]  # (T, D, B, H) → (T, B, D·H), PyTorch's concatenation of directions
        if D == 1:
            x = b.node("Squeeze", f"{base}.y", [y, b.const(f"{base}.sq", np.array([1], np.int64))])
        else:
            t = b.node("Transpose", f"{base}.yt", [y], perm=[0, 2, 1, 3])
            x = b.node("Reshape", f"{base}.y", [t, b.const(f"{base}.shape",
                                                        np.array([0, 0, -1], np.int64))])
        in_size = D * H
    if batch_first:
        x = b.node("Transpose", f"{prefix}.to_batch_major", [x], perm=[1, 0, 2])
    if stateful:
        for s in state_names:
            # PyTorch's h_n/c_n stack layers × directions on axis 0, as the ONNX states do
            name = f"{prefix}.{s}_n"
            b.nodes.append(Node("Concat", b.fresh(name), tuple(finals[s]), (name,), {"axis": 0}))
            b.outputs.append(ValueInfo(name, "float32", (L * D, "batch", H)))
    seq_shape = ("batch", "time", w0.shape[1]) if batch_first else ("time", "batch", w0.shape[1])
    return x, seq_shape


def from_torch_state_dict(source, layers: Sequence[tuple[str, str | None, dict[str, Any]]], *,
                          input_name: str = "input", output_name: str = "output") -> Graph:
    """Build a Graph applying `layers` in order to one input (see the module docstring)."""
    sd = load_state_dict(source)
    b = _Builder(sd)
    if not layers:
        raise ConfigError("layers must list at least one layer")
    x, in_info = input_name, None
    for i, layer in enumerate(layers):
        if not (isinstance(layer, (tuple, list)) and len(layer) in (2, 3)):
            raise ConfigError(f"layer {i}: expected (kind, prefix, options), got {layer!r}")
        kind, prefix, opts = (*layer, {})[:3] if len(layer) == 2 else layer
        kind, opts = str(kind).lower(), dict(opts or {})
        where = f"layer {i} ({kind} {prefix!r})"
        if kind in ("lstm", "gru"):
            x, shape = _rnn(b, kind, prefix, opts, x)
            if i == 0:
                in_info = ValueInfo(input_name, "float32", shape)
            elif i == 1 and layers[0][0] == "embedding":
                in_info = ValueInfo(input_name, "int64", shape[:2])
        elif kind == "linear":
            w = b.get(f"{prefix}.weight")
            bias = b.get(f"{prefix}.bias", required=False)
            if w.ndim != 2 or (bias is not None and bias.shape != (w.shape[0],)):
                raise ModelError(f"{where}: weight {w.shape} / bias "
                                 f"{None if bias is None else bias.shape} are not a Linear's")
            for key, val in (("in_features", w.shape[1]), ("out_features", w.shape[0]),
                             ("bias", bias is not None)):
                _check(opts, key, val, where)
            x = b.node("MatMul", f"{prefix}.matmul",
                       [x, b.const(f"{prefix}.weight_t", np.ascontiguousarray(w.T))])
            if bias is not None:
                x = b.node("Add", f"{prefix}.bias", [x, b.const(f"{prefix}.bias", bias)])
            if i == 0:
                in_info = ValueInfo(input_name, "float32", None)
        elif kind == "embedding":
            w = b.get(f"{prefix}.weight")
            if w.ndim != 2:
                raise ModelError(f"{where}: weight must be 2-D, got {w.shape}")
            _check(opts, "num_embeddings", w.shape[0], where)
            _check(opts, "embedding_dim", w.shape[1], where)
            x = b.node("Gather", f"{prefix}.gather", [b.const(f"{prefix}.weight", w), x])
            if i == 0:
                in_info = ValueInfo(input_name, "int64", None)
        elif kind in _ACTIVATIONS:
            attrs = {"axis": int(opts.get("dim", -1))} if "softmax" in kind else {}
            x = b.node(_ACTIVATIONS[kind], kind, [x], **attrs)
            if i == 0:
                in_info = ValueInfo(input_name, "float32", None)
        else:
            raise ConfigError(f"{where}: unknown layer kind; expected one of "
                              f"{['lstm', 'gru', 'linear', 'embedding', *_ACTIVATIONS]}")
    unused = sorted(k for k in sd if k not in b.used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ModelError(f"state_dict entries not used by the layer spec: {unused[:10]} (wrong "
                         f"prefix or missing layer?)")
    # the last value becomes the named output
    last = b.nodes[-1] if b.nodes[-1].outputs[0] == x else next(
        n for n in reversed(b.nodes) if x in n.outputs)
    b.nodes[b.nodes.index(last)] = last.replace(
        outputs=tuple(output_name if o == x else o for o in last.outputs))
    graph = Graph([in_info] + b.inputs, [ValueInfo(output_name)] + b.outputs, b.nodes, b.inits,
                  {"": 17}, "torch_state_dict")
    graph.toposort()
    graph.verify()
    return graph
