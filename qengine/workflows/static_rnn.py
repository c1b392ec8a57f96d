"""Static quantization of LSTM / GRU nodes (StaticQuantConfig(rnn=...)): the observers that
calibrate them, and their rewrite into the integer ops of qengine/ops/static_rnn.py."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration.rnn import RNNObserver, replay
from ..graph.ir import Graph, Node
from ..quantized.weights import quantize_per_channel_symmetric
from .dynamic import _add_init, _const, rnn_operands

RNN_OPS = ("LSTM", "GRU")


def rnn_observers(g: Graph, keep_float=frozenset()) -> dict:
    """{node name: RNNObserver} for the LSTM / GRU nodes the integer layers can run."""
    out = {}
    for n in g.nodes:
        if n.op_type not in RNN_OPS or n.name in keep_float:
            continue
        ops = rnn_operands(g, n)
        if ops is None:
            continue
        ins, W, R = ops
        a = n.attrs
        out[n.name] = RNNObserver("lstm" if n.op_type == "LSTM" else "gru", W, R,
                                  _const(g, ins[3]), direction=a.get("direction", "forward"),
                                  layout=a.get("layout", 0),
                                  linear_before_reset=a.get("linear_before_reset", 0))
    return out


def node_hooks(observers: dict) -> dict:
    """TapSession hooks feeding each observer the inputs its node runs on."""
    def hook(obs):
        def run(X, W=None, R=None, B=None, lens=None, h0=None, c0=None):
            obs.observe(X, lens, h0, c0)
        return run
    return {name: hook(obs) for name, obs in observers.items()}


def lower_rnns(q: Graph, observers: dict, scheme: str) -> Graph:
    """q with each observed LSTM / GRU node replaced by StaticQuantLSTM / GRU (`scheme` "int16"
    or "int8"): weights int8 per row, the calibrated qparams as attributes."""
    q = q.copy()
    dropped = set()
    for n in list(q.nodes):
        obs = observers.get(n.name)
        if obs is None or n.op_type not in RNN_OPS:
            continue
        ops = rnn_operands(q, n)
        if ops is None:
            continue
        ins, W, R = ops
        dropped.update(ins[1:3])
        p = obs.params(scheme)
        qs = [quantize_per_channel_symmetric(m) for m in W.astype(np.float32)]
        rs = [quantize_per_channel_symmetric(m) for m in R.astype(np.float32)]
        kind = "lstm" if n.op_type == "LSTM" else "gru"
        new_in = [ins[0],
                  _add_init(q, f"{n.name}.Wq", np.stack([w for w, _ in qs])),
                  _add_init(q, f"{n.name}.Ws", np.stack([s for _, s in qs])),
                  _add_init(q, f"{n.name}.Rq", np.stack([w for w, _ in rs])),
                  _add_init(q, f"{n.name}.Rs", np.stack([s for _, s in rs])),
                  ins[3], ins[4], ins[5]] + ([ins[6]] if kind == "lstm" else [])
        while new_in and not new_in[-1]:
            new_in.pop()
        a = n.attrs
        attrs = {"direction": a.get("direction", "forward"), "layout": a.get("layout", 0),
                 "scheme": p.scheme, "x_scale": float(p.s_x), "x_zero_point": p.z_x,
                 "h_scale": float(p.s_h), "h_zero_point": p.z_h, "cell_exponent": p.e_c}
        if a.get("hidden_size") is not None:
            attrs["hidden_size"] = a["hidden_size"]
        if kind == "gru":
            attrs["linear_before_reset"] = a.get("linear_before_reset", 0)
        op = "StaticQuantLSTM" if kind == "lstm" else "StaticQuantGRU"
        q.replace_nodes([n], [Node(op, n.name, tuple(new_in), n.outputs, attrs)])
    used = {i for m in q.nodes for i in m.inputs} | set(q.output_names)
    for name in dropped - used:             # the float W and R the int8 ones replaced
        q.initializers.pop(name, None)
    q.verify()
    return q


# ---------------------------------------------------------------------------- the report
@dataclass
class RNNLayerReport:
    """One LSTM / GRU node on the analysed data: SQNR (dB) of every step's h (Y) and of the
    final cell state (LSTM) against the float64 layer (calibration.rnn.replay), per scheme; the
    fraction of cell values outside the calibrated int16 cell grid; the calibrated parameters."""
    name: str
    op: str
    h_sqnr: dict                        # scheme ("dynamic", "int16", "int8") -> dB
    c_sqnr: dict                        # LSTM only
    cell_saturated: float
    params: dict                        # scheme -> Params.tuple()
    collapsed: bool                     # see COLLAPSE_DB


#: the 8-bit scheme "collapses" on a layer when its h SQNR is below COLLAPSE_DB (noise above a
#: tenth of the signal) while int16 does at least COLLAPSE_GAP_DB better
COLLAPSE_DB, COLLAPSE_GAP_DB = 20.0, 6.0


def _sqnr(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    noise = float(np.sum((y - ref) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def rnn_report(model, calibration_data, eval_data=None, *, keep_float=frozenset(),
               warn=True) -> list:
    """Per LSTM / GRU node: FP32 (the float64 ONNX equations) against dynamic int8 and the
    integer layers "int16" and "int8" calibrated on `calibration_data`, evaluated on the
    recurrent layer's own inputs over `eval_data` (default: the calibration data). Warns
    (QuantizationWarning) for each layer where the 8-bit scheme collapses — h SQNR below
    COLLAPSE_DB with int16 at least COLLAPSE_GAP_DB better — as 8-bit activations did for
    DeepSpeech in TFLite."""
    import warnings
    from ..calibration.collect import collect_stats
    from ..errors import QuantizationWarning
    from ..quantized.rnn import DynamicRNN
    from ..quantized.static_rnn import StaticRNN
    from ..calibration.collect import reusable
    from .ptq import prepare_float_graph
    g = prepare_float_graph(model, "rnn_report")
    observers = rnn_observers(g, keep_float)
    if not observers:
        return []
    if eval_data is None:
        calibration_data = reusable(calibration_data)     # read twice: a generator would not be
    collect_stats(g, calibration_data, [], node_hooks=node_hooks(observers))
    calls = {name: [] for name in observers}

    def keep(name):
        def run(X, W=None, R=None, B=None, lens=None, h0=None, c0=None):
            calls[name].append((np.array(X), None if lens is None else np.array(lens),
                                None if h0 is None else np.array(h0),
                                None if c0 is None else np.array(c0)))
        return run
    collect_stats(g, calibration_data if eval_data is None else eval_data, [],
                  node_hooks={name: keep(name) for name in observers})
    nodes = {n.name: n for n in g.nodes}
    out = []
    for name, obs in observers.items():
        n, a = nodes[name], nodes[name].attrs
        kind, layout = obs.kind, a.get("layout", 0)
        kw = dict(direction=obs.direction, linear_before_reset=obs.lbr)
        params = {s: obs.params(s) for s in ("int16", "int8")}
        layers = {"dynamic": DynamicRNN.from_float(kind, obs.W, obs.R, obs.B, **kw),
                  **{s: StaticRNN.from_float(kind, obs.W, obs.R, obs.B, p, **kw)
                     for s, p in params.items()}}
        ys = {k: [] for k in layers}
        cs = {k: [] for k in layers}
        ref_y, ref_c, sat, total = [], [], 0, 0
        lim = 2.0 ** params["int16"].e_c
        for X, lens, h0, c0 in calls[name]:
            if layout == 1:
                X = np.swapaxes(X, 0, 1)
                h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
                c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
            steps, _, c_n = replay(kind, X, obs.W, obs.R, obs.B, lens, h0, c0, **kw)
            ref_y += [h.ravel() for h, _ in steps]
            if kind == "lstm":
                ref_c.append(c_n.ravel())
                sat += sum(int(np.sum(np.abs(c) >= lim)) for _, c in steps)
                total += sum(c.size for _, c in steps)
            T, nb = X.shape[:2]
            nl = np.full(nb, T) if lens is None else np.asarray(lens)
            order = [(d, t) for d in range(obs.W.shape[0])
                     for t in (range(T - 1, -1, -1) if obs.direction == "reverse" or d == 1
                               else range(T))]
            for k, layer in layers.items():
                Y, _, Yc = layer(X.astype(np.float32), lens, h0, c0)
                ys[k] += [Y[t, d, t < nl].ravel() for d, t in order]   # replay's order
                if Yc is not None:
                    cs[k].append(Yc.ravel())
        cat = np.concatenate
        h_sqnr = {k: _sqnr(cat(ys[k]), cat(ref_y)) for k in layers}
        c_sqnr = {k: _sqnr(cat(cs[k]), cat(ref_c)) for k in layers} if kind == "lstm" else {}
        collapsed = (h_sqnr["int8"] < COLLAPSE_DB and
                     h_sqnr["int16"] >= h_sqnr["int8"] + COLLAPSE_GAP_DB)
        r = RNNLayerReport(name, n.op_type, h_sqnr, c_sqnr, sat / total if total else 0.0,
                           {s: p.tuple() for s, p in params.items()}, collapsed)
        out.append(r)
        if warn and collapsed:
            warnings.warn(f"{n.op_type} {name!r}: the 8-bit scheme collapses — h SQNR "
                          f"{h_sqnr['int8']:.1f} dB with int8 activations against "
                          f"{h_sqnr['int16']:.1f} dB with int16; keep StaticQuantConfig("
                          f"rnn='int16') (the default) for this model", QuantizationWarning,
                          stacklevel=2)
    return out
