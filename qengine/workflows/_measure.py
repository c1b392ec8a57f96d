"""Measuring quantization error: run graphs over data in batches, SQNR, saturation, and the
error of each int8 layer's output inside a quantized graph. Used by workflows/sensitivity.py.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..calibration.base import Observer
from ..calibration.collect import _split
from ..calibration.histogram import Histogram
from ..calibration.tap import TapSession
from ..graph.ir import Graph
from ..session import Session



def _nhwc_output(op_type) -> bool:
    from ..ops import get_op_class, is_registered
    return is_registered(op_type) and get_op_class(op_type).NHWC_OUTPUT


def feed_batches(g: Graph, data, batch_size=None) -> list:
    """The data as a list of feed dicts, cut like calibration cuts it (a fixed batch dim of the
    model wins). A list, because every candidate graph is run over the same batches."""
    if isinstance(data, Mapping):
        return list(_split(TapSession(g, []), data, batch_size)[0])
    return list(data)


def run_batches(g: Graph, batches) -> dict:
    """{output name: outputs of all batches concatenated along axis 0}. NaN in the data is let
    in (a measurement reports it as a NaN score; calibration has warned about it already)."""
    sess = Session(g, nan="allow")
    parts = [sess.run(feeds) for feeds in batches]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sqnr_db(y, ref) -> float:
    """10·log10(Σref² / Σ(y − ref)²) over all float outputs; inf when they are identical."""
    sig = noise = 0.0
    for k, r in ref.items():
        r = np.asarray(r, np.float64)
        if r.dtype.kind != "f":
            continue
        sig += float(np.sum(r * r))
        noise += float(np.sum((np.asarray(y[k], np.float64) - r) ** 2))
    return _db(sig, noise)


def _db(sig, noise):
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


class TeeObserver(Observer):
    """The calibration method's observer plus a histogram of the same values, so one pass gives
    both the chosen range and the distribution (saturation rates, plots)."""

    def __init__(self, primary: Observer, bins: int = 2048):
        self.primary = primary
        self.histogram = Histogram(bins)
        self.method = primary.method

    @property
    def nan(self) -> int:
        return self.primary.nan

    def observe(self, x) -> None:
        self.primary.observe(x)
        self.histogram.add(x)

    def range(self, *, bits=8, symmetric=False):
        return self.primary.range(bits=bits, symmetric=symmetric)


def saturation(h: Histogram, lo: float, hi: float) -> float:
    """Fraction of the observed values (±Inf included) outside [lo, hi], the real range the
    uint8 grid covers; values inside a bin that straddles a bound count pro rata (assumed
    uniform within the bin, so this is exact up to one bin at each bound)."""
    total = h.count + h.pinf + h.ninf
    if total == 0:
        return 0.0
    out = float(h.pinf + h.ninf)
    if h.count:
        edges = h.edges()
        # A bin's values lie within [min, max] too: a ReLU6 output piles up exactly at 6.0, the
        # left edge of its bin, and must not count as partly above a bound of 6.0000001.
        left = np.maximum(edges[:-1], h.min)
        right = np.minimum(edges[1:], h.max)
        width = right - left
        point = width <= 0
        safe = np.where(point, 1.0, width)
        below = np.where(point, left < lo, np.clip((lo - left) / safe, 0.0, 1.0))
        above = np.where(point, right > hi, np.clip((right - hi) / safe, 0.0, 1.0))
        out += float(np.sum(h.counts * np.minimum(below + above, 1.0)))
    return out / total


def _as_nchw(q_value: np.ndarray, ref_shape, op_type: str) -> np.ndarray:
    if q_value.ndim != 4:
        return q_value
    nhwc = (ref_shape[0], ref_shape[2], ref_shape[3], ref_shape[1])
    if q_value.shape == nhwc and (_nhwc_output(op_type) or q_value.shape != tuple(ref_shape)):
        return np.transpose(q_value, (0, 3, 1, 2))
    return q_value


def layer_output_sqnr(g_float: Graph, g_int8: Graph, layers: Mapping[str, str],
                      batches) -> dict:
    """{int8 node name: SQNR (dB) of its dequantized output vs the float value it stands for}.

    layers: {node name in g_int8: float value name in g_float}. The int8 graph is run on the
    same batches; its uint8 outputs are dequantized with the node's y_scale / y_zero_point and
    moved back to NCHW before the comparison. Errors accumulate through the graph, so this is
    each layer's error as the next layer sees it in the fully quantized model."""
    nodes = {n.name: n for n in g_int8.nodes if n.name in layers and "y_scale" in n.attrs}
    if not nodes:
        return {}
    tap_f = TapSession(g_float, sorted({layers[k] for k in nodes}))
    tap_q = TapSession(g_int8, [n.outputs[0] for n in nodes.values()])
    by_output = {n.outputs[0]: n for n in nodes.values()}
    sums = {k: [0.0, 0.0] for k in nodes}
    for feeds in batches:
        ref = {}
        tap_f.run_tapped(feeds, lambda name, v: ref.__setitem__(name, np.array(v, np.float64)))

        def on_q(name, v):
            n = by_output[name]
            r = ref[layers[n.name]]
            real = (_as_nchw(v, r.shape, n.op_type).astype(np.float64) -
                    n.attrs["y_zero_point"]) * np.float32(n.attrs["y_scale"])
            s = sums[n.name]
            s[0] += float(np.sum(r * r))
            s[1] += float(np.sum((real - r) ** 2))
        tap_q.run_tapped(feeds, on_q)
    return {k: _db(*v) for k, v in sums.items()}
