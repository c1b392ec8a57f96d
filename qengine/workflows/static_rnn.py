"""Static quantization of LSTM / GRU nodes (StaticQuantConfig(rnn=...)): the observers that
calibrate them, and their rewrite into the integer ops of qengine/ops/static_rnn.py."""
from __future__ import annotations

import numpy as np

from ..calibration.rnn import RNNObserver
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
