"""Dynamic-mode QAT steps: LSTM, GRU and Linear as qengine's dynamic int8 layers run them.

Weights are quantized per output row (symmetric, narrow range, 8 or 4 bits); activations per
call — every time step's input and every step's h on its own (per tensor over the batch), from
their own min/max, as the dynamic kernels do (docs/numerics.md "Integer GEMM", epilogue (a)).
The eval forward computes those integer sums exactly, the dequantizing epilogue (a) / (c) in
float32 in the engine's order, and the gates with the engine's own compiled sigmoid / tanh
(training uses torch's: they differ by about one float32 ulp), so the converted engine equals
it bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._ext import _rnn
from .._runtime import isa_index
from ..qtypes import FLT_MIN
from ..quantized.weights import pack_int4
from .quantizers import WeightQuant, codes, fake_quant


def _dynamic_qparams(x):
    """(scale, zero point) of the dynamic kernels: the finite range widened to include 0,
    s = float32((max − min) / 255) in float64, z = clamp(−rhe(min / s), 0, 255)."""
    f = x.detach()
    f = f[torch.isfinite(f)] if not torch.isfinite(f).all() else f
    lo = min(0.0, f.min().item()) if f.numel() else 0.0
    hi = max(0.0, f.max().item()) if f.numel() else 0.0
    d = np.float64(hi) - np.float64(lo)
    s = np.float32(1.0) if d == 0 else np.float32(d / 255.0)
    s = max(float(s), FLT_MIN)
    z = float(np.clip(-np.rint(np.float64(lo) / np.float64(np.float32(s))), 0, 255))
    return float(np.float32(s)), z


def dynamic_matmul(x, w, bias, training, add_to=None):
    """y = x·wᵀ (+ bias) with x quantized per call. Training: fake-quantized x (STE) times the
    fake-quantized weights w. Eval: `w` is (codes, scales, group size): exact integer sums, then
    float32(acc)·float32(s_x·s_w) + bias, then add_to + y — the engine's order."""
    s, z = _dynamic_qparams(x)
    if training:
        y = F.linear(fake_quant(x, torch.tensor(s), torch.tensor(z), 0, 255), w)
        if bias is not None:
            y = y + bias
        return y if add_to is None else add_to + y
    q, ws, gs = w                             # codes [N, K], scales [N, G], group size
    k = codes(x, s, z, 0, 255)
    dt = torch.float32 if q.shape[1] * 255 * 127 < 2 ** 24 else torch.float64
    if ws.ndim == 1 or ws.shape[1] == 1:      # epilogue (a)
        acc = F.linear(k.to(dt), q.to(dt))
        y = acc.float() * (ws.reshape(-1) * s)   # float32(s_x·s_w): one float32 product
    else:                                     # epilogue (c): one exact sum per group
        groups = ws.shape[1]
        pad = groups * gs - q.shape[1]
        kg = F.pad(k, (0, pad)).reshape(k.shape[0], groups, gs).to(dt)
        qg = F.pad(q, (0, pad)).reshape(q.shape[0], groups, gs).to(dt)
        p = torch.einsum("mgk,ngk->mng", kg, qg).float() * (ws * s)
        y = p[..., 0]
        for g in range(1, groups):
            y = y + p[..., g]
    if bias is not None:
        y = y + bias
    return y if add_to is None else add_to + y


class DynamicLinear(nn.Module):
    quantized = False          # float in, float out: not on the static int8 grid
    out = None

    def __init__(self, name, module: nn.Linear, weight_options):
        super().__init__()
        self.name, self.module = name, module
        w = module.weight
        self.wq = WeightQuant(channels=w.shape[0], reduction=w.shape[1], **weight_options)

    def weights(self):
        if self.training:
            return self.wq(self.module.weight)
        return (*self.wq.quantize(self.module.weight), self.wq.group_size)

    def forward(self, x, qin):
        b = self.module.bias
        if self.training:
            return dynamic_matmul(x.reshape(-1, x.shape[-1]), self.weights(), b,
                                  True).reshape(*x.shape[:-1], -1)
        with torch.no_grad():
            y = dynamic_matmul(x.reshape(-1, x.shape[-1]), self.weights(),
                               None if b is None else b.detach(), False)
        return y.reshape(*x.shape[:-1], -1)

    def emit(self, b, ins, out):
        with torch.no_grad():
            q, s = self.wq.quantize(self.module.weight)
        q, s = q.numpy().astype(np.int8), s.numpy().astype(np.float32)
        extra = [] if self.module.bias is None else \
            [b.init(f"{self.name}.bias", self.module.bias.detach().numpy().astype(np.float32))]
        wq, ws, attrs = _weight_storage(self.wq, q, s)
        b.node("DynamicQuantLinear", self.name, [ins[0], b.init(f"{self.name}.Wq", wq),
                                                 b.init(f"{self.name}.Ws", ws), *extra],
               [out], per_row=0, **attrs, **({"in_features": q.shape[1]} if attrs else {}))


def _weight_storage(wq: WeightQuant, q, s):
    """(Wq, Ws, attributes) of a dynamic node: int8 codes and per-row scales, or for 4-bit
    weights the engine's int4 storage (two per byte) and [.., N, groups] scales."""
    if wq.bits == 8:
        return q, np.ascontiguousarray(s.reshape(s.shape[:-1])), {}
    return (pack_int4(q), np.ascontiguousarray(s),
            {"weight_bits": 4, "group_size": wq.group_size or 0})


def _engine_sigmoid(t):
    """The engine's compiled sigmoid (the gate kernels: bit-identical on every ISA)."""
    return torch.from_numpy(_rnn.sigmoid(t.numpy(), isa_index(None)).reshape(t.shape))


def _engine_tanh(t):
    return torch.from_numpy(_rnn.tanh(t.numpy(), isa_index(None)).reshape(t.shape))


#: torch's gate blocks in ONNX order: LSTM torch (i, f, g, o) → ONNX (i, o, f, c);
#: GRU torch (r, z, n) → ONNX (z, r, h)
_ONNX_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


class RNN(nn.Module):
    """nn.LSTM / nn.GRU (any layers, bidirectional, batch_first) as DynamicQuantLSTM/GRU
    nodes, one per layer."""
    quantized = False          # float in, float out: not on the static int8 grid
    out = None

    def __init__(self, name, module, weight_options):
        super().__init__()
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM with proj_size has no engine layer")
        if not module.bias:
            raise ValueError("RNN without bias: not supported")
        self.name, self.module = name, module
        self.kind = "lstm" if isinstance(module, nn.LSTM) else "gru"
        self.gates = 4 if self.kind == "lstm" else 3
        self.dirs = 2 if module.bidirectional else 1
        self.wq = nn.ModuleDict()
        for pname, p in module.named_parameters():
            if pname.startswith("weight"):
                self.wq[pname] = WeightQuant(channels=p.shape[0], reduction=p.shape[1],
                                             **weight_options)

    def _params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        m = self.module
        return (f"weight_ih{sfx}", f"weight_hh{sfx}", getattr(m, f"bias_ih{sfx}"),
                getattr(m, f"bias_hh{sfx}"))

    def _weight(self, pname):
        p = getattr(self.module, pname)
        if self.training:
            return self.wq[pname](p)
        return (*self.wq[pname].quantize(p), self.wq[pname].group_size)

    def forward(self, x, *state, qin=None):
        m, train = self.module, self.training
        if m.batch_first:
            x = x.transpose(0, 1)
        T, B, _ = x.shape
        H = m.hidden_size
        h0 = state[0] if state else None
        c0 = state[1] if len(state) > 1 else None
        hn, cn = [], []
        sig, tanh = (torch.sigmoid, torch.tanh) if train else (_engine_sigmoid, _engine_tanh)
        ctx = torch.enable_grad() if train else torch.no_grad()
        with ctx:
            for layer in range(m.num_layers):
                outs = []
                for d in range(self.dirs):
                    wi, wh, bi, bh = self._params(layer, d)
                    Wi, Wh = self._weight(wi), self._weight(wh)
                    idx = layer * self.dirs + d
                    h = x.new_zeros(B, H) if h0 is None else h0[idx]
                    c = x.new_zeros(B, H) if c0 is None else c0[idx]
                    ys = [None] * T
                    steps = range(T - 1, -1, -1) if d else range(T)
                    if self.kind == "lstm":
                        gx_bias = bi + bh
                        for t in steps:
                            g = dynamic_matmul(x[t], Wi, gx_bias, train)
                            g = dynamic_matmul(h, Wh, None, train, add_to=g)
                            i, f, gg, o = g.chunk(4, 1)
                            c = sig(f) * c + sig(i) * tanh(gg)
                            h = sig(o) * tanh(c)
                            ys[t] = h
                        cn.append(c)
                    else:
                        for t in steps:
                            g = dynamic_matmul(x[t], Wi, bi, train)
                            s = dynamic_matmul(h, Wh, bh, train)
                            r = sig(g[:, :H] + s[:, :H])
                            z = sig(g[:, H:2 * H] + s[:, H:2 * H])
                            n = tanh(g[:, 2 * H:] + r * s[:, 2 * H:])
                            h = (1.0 - z) * n + z * h
                            ys[t] = h
                    hn.append(h)
                    outs.append(torch.stack(ys))
                x = torch.cat(outs, 2) if self.dirs == 2 else outs[0]
                if train and m.dropout and layer < m.num_layers - 1:
                    x = F.dropout(x, m.dropout, True)
        y = x.transpose(0, 1) if m.batch_first else x
        if self.kind == "lstm":
            return y, torch.stack(hn), torch.stack(cn)
        return y, torch.stack(hn)

    def _onnx_weights(self, layer):
        """(Wq [D, G·H, I], Ws, Rq [D, G·H, H], Rs, B [D, 2·G·H]) in ONNX gate order."""
        H = self.module.hidden_size
        order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in _ONNX_ORDER[self.kind]])
        parts = [[] for _ in range(5)]
        for d in range(self.dirs):
            wi, wh, bi, bh = self._params(layer, d)
            for k, pname in ((0, wi), (2, wh)):
                q, s = self.wq[pname].quantize(getattr(self.module, pname))
                parts[k].append(q.numpy().astype(np.int8)[order])
                parts[k + 1].append(s.numpy().astype(np.float32)[order])
            parts[4].append(np.concatenate([bi.detach().numpy()[order],
                                            bh.detach().numpy()[order]]).astype(np.float32))
        return [np.stack(p) for p in parts]

    def emit(self, b, ins, outs):
        m = self.module
        x = ins[0]
        if m.batch_first:
            xt = b.fresh(f"{x}.time_major")
            b.node("Transpose", f"{self.name}.to_time_major", [x], [xt], perm=[1, 0, 2])
            x = xt
        op = "DynamicQuantLSTM" if self.kind == "lstm" else "DynamicQuantGRU"
        direction = "bidirectional" if self.dirs == 2 else "forward"
        hs, cs = [], []
        for layer in range(m.num_layers):
            Wq, Ws, Rq, Rs, B = self._onnx_weights(layer)
            wq = self.wq["weight_ih_l0"]
            Wq, Ws, w4 = _weight_storage(wq, Wq, Ws)
            Rq, Rs, _ = _weight_storage(wq, Rq, Rs)
            if w4:
                w4["input_size"] = getattr(m, f"weight_ih_l{layer}").shape[1]
            base = f"{self.name}.l{layer}"
            y, yh = b.fresh(f"{base}.Y"), b.fresh(f"{base}.Y_h")
            node_outs = [y, yh]
            if self.kind == "lstm":
                node_outs.append(b.fresh(f"{base}.Y_c"))
                cs.append(node_outs[2])
            attrs = dict(direction=direction, hidden_size=m.hidden_size, per_row=0, **w4)
            # this layer's rows [layer·D, (layer + 1)·D) of the initial h0 (and c0)
            states = [b.slice0(v, layer * self.dirs, (layer + 1) * self.dirs, f"{base}.{k}0")
                      for v, k in zip(ins[1:], "hc")]
            if self.kind == "gru":
                attrs["linear_before_reset"] = 1
            b.node(op, base, [x, b.init(f"{base}.Wq", Wq), b.init(f"{base}.Ws", Ws),
                              b.init(f"{base}.Rq", Rq), b.init(f"{base}.Rs", Rs),
                              b.init(f"{base}.B", B), *(["", *states] if states else [])],
                   node_outs, **attrs)
            hs.append(yh)
            # Y [T, D, B, H] → [T, B, D·H]: the next layer's input / the output
            yt, x = b.fresh(f"{base}.Y_tb"), b.fresh(f"{base}.out")
            b.node("Transpose", f"{base}.merge_directions", [y], [yt], perm=[0, 2, 1, 3])
            b.node("Reshape", f"{base}.flatten_directions",
                   [yt, b.init("shape", np.asarray([0, 0, -1], np.int64))], [x])
        if m.batch_first:
            b.node("Transpose", f"{self.name}.to_batch_first", [x], [outs[0]], perm=[1, 0, 2])
        else:
            b.node("Identity", f"{self.name}.output", [x], [outs[0]])
        for states, name in ((hs, outs[1]), (cs, outs[2] if len(outs) > 2 else None)):
            if name is None:
                continue
            if len(states) == 1:
                b.node("Identity", f"{name}.state", states, [name])
            else:
                b.node("Concat", f"{name}.state", states, [name], axis=0)
