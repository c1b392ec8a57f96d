"""SmoothQuant (Xiao et al. 2023): move activation outliers into the weights that read them.

A value x read by MatMul/Gemm layers with constant weights (y = x · W, W [K, N]) whose last-axis
channels have very different ranges quantizes badly per tensor: a few outlier channels take
the whole uint8 grid. With s_j = max|x_j|^α / max|W_j,:|^(1−α) (α = 0.5 by default),
x' = x / s and W' = diag(s) W give the same products, with x' flatter and W' a little less so —
per-channel weights absorb that easily. The division is folded into what makes x, so nothing
runs at inference time:
  * a LayerNormalization over the last axis with constant scale and bias: both divided by s;
  * a MatMul/Gemm with constant weights (and bias): its output columns divided by s;
and every reader of x must be such a layer (they share one s, computed from all their
weights). Values that cannot be folded are left as they are and reported. The per-channel
ranges of x come from a pass over the calibration data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..calibration.collect import collect_stats
from ..errors import ConfigError
from ..graph.equalize import scale_axis
from ..graph.ir import Graph, Node

MIN_SCALE = 1e-5


@dataclass
class SmoothReport:
    smoothed: list = field(default_factory=list)   # (value, readers, max s / min s)
    skipped: list = field(default_factory=list)    # (value, why)


def _w_rows(g: Graph, n: Node):
    """(weight name, transposed?) when n is x · W with W stored [K, N] (False) or [N, K] (True),
    or None."""
    if len(n.inputs) < 2 or n.inputs[1] not in g.initializers or \
            g.initializers[n.inputs[1]].ndim != 2:
        return None
    if n.op_type == "MatMul":
        return n.inputs[1], False
    if n.op_type == "Gemm" and not n.attrs.get("transA", 0):
        return n.inputs[1], bool(n.attrs.get("transB", 0))
    return None


def _k_view(w, transposed):
    """W as [K, N]."""
    return w.T if transposed else w


def _fold_target(g: Graph, producer: Node | None, k: int):
    """How to divide x's channels by s at its producer: a list of (initializer, axis) to scale,
    or a reason it cannot be done."""
    if producer is None:
        return "it is a graph input"
    if producer.op_type == "LayerNormalization":
        ins = [v for v in producer.inputs[1:3] if v]
        axis = producer.attrs.get("axis", -1)
        info = g.value_info.get(producer.inputs[0])
        rank = len(info.shape) if info is not None and info.shape is not None else None
        if axis != -1 and (rank is None or axis != rank - 1):
            return "its LayerNormalization does not normalize the last axis"
        if not all(v in g.initializers and g.initializers[v].shape == (k,) for v in ins):
            return "its LayerNormalization's scale/bias are not constant vectors"
        return [(v, 0) for v in ins]
    wr = _w_rows(g, producer)
    if wr is not None:
        w, t = wr
        out = [(w, 0 if t else 1)]
        if producer.op_type == "Gemm" and len(producer.inputs) > 2 and producer.inputs[2]:
            b = g.initializers.get(producer.inputs[2])
            if b is None or b.shape != (k,):
                return "its Gemm bias is not a constant vector"
            out.append((producer.inputs[2], 0))
        return out
    return f"it is made by {producer.op_type}, which has no per-channel scale to fold into"


def smooth(g: Graph, calibration_data, alpha: float = 0.5, batch_size=None):
    """(the smoothed graph, SmoothReport). Function-preserving up to float rounding."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ConfigError(f"smooth_quant alpha must be in (0, 1), got {alpha!r}")
    readers, producers = g.consumers(), g.producers()
    report = SmoothReport()
    plans = {}
    for v, rs in readers.items():
        if v in g.initializers or not any(_w_rows(g, r) and r.inputs[0] == v for r in rs):
            continue
        if not all(_w_rows(g, r) and r.inputs[0] == v for r in rs) or v in g.output_names:
            report.skipped.append((v, "it has readers other than MatMul/Gemm inputs"))
            continue
        shared = {r.inputs[1] for r in rs}
        w0 = _w_rows(g, rs[0])
        k = _k_view(g.initializers[w0[0]], w0[1]).shape[0]
        target = _fold_target(g, producers.get(v), k)
        if isinstance(target, str):
            report.skipped.append((v, target))
            continue
        uses = sum(len(readers.get(name, [])) for name, _ in target)
        if uses != len(target) or any(len(readers[w]) > 1 for w in shared):
            report.skipped.append((v, "its weights are shared with other nodes"))
            continue
        plans[v] = (rs, target)
    if not plans:
        return g, report
    stats = collect_stats(g, calibration_data, sorted(plans), "minmax_per_channel",
                          observer_options={"axis": -1}, batch_size=batch_size)
    out = g.copy()
    inits = out.initializers
    for v, (rs, target) in plans.items():
        lo, hi = stats[v].range()
        xmax = np.maximum(np.abs(lo), np.abs(hi))
        wmax = np.max([np.abs(_k_view(g.initializers[r.inputs[1]], _w_rows(g, r)[1])).max(1)
                       for r in rs], axis=0)
        ok = (xmax > 0) & (wmax > 0)
        s = np.where(ok, np.power(np.where(ok, xmax, 1.0), alpha) /
                     np.power(np.where(ok, wmax, 1.0), 1.0 - alpha), 1.0)
        s = np.maximum(s, MIN_SCALE)
        for name, axis in target:            # the producer: channel j divided by s_j
            inits[name] = scale_axis(np.asarray(inits[name], np.float64), axis,
                                     1.0 / s).astype(inits[name].dtype)
        for r in rs:                         # the readers: row j of W (as [K, N]) times s_j
            name, t = _w_rows(g, r)
            inits[name] = scale_axis(np.asarray(inits[name], np.float64), 1 if t else 0,
                                     s).astype(inits[name].dtype)
        report.smoothed.append((v, [r.name for r in rs], float(s.max() / s.min())))
    return out, report
