"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", section 4.1).

Two layers y = W2 · f(W1 x + b1) + b2 with f positively homogeneous (ReLU, or nothing) compute
the same function after output channel c of layer 1 is divided by s_c > 0 and input channel c
of layer 2 multiplied by it: f(z / s) = f(z) / s. With r1_c = max|W1[c]| and r2_c = max|W2[:, c]|,
s_c = sqrt(r1_c / r2_c) gives both channels the same range sqrt(r1_c r2_c), which is what
per-tensor (and helps per-channel) int8 weights and the activation between the layers need:
no channel left with a few levels while another uses the whole grid. A layer in two pairs
(the middle of a chain) is pulled both ways, so the pairs are swept until the factors settle.

Pairs are Conv -> [Relu, MaxPool, AveragePool] -> Conv (the second may be depthwise: its input
channel c is its output channel c), Gemm/MatMul with constant weights -> [Relu] -> Gemm/MatMul,
where the values between them have no other reader and are not graph outputs, and neither
layer shares its weights or bias with another node. Clip / ReLU6 is not positively
homogeneous (min(z/s, 6) != min(z, 6)/s): scaling its bound per channel would need a
per-channel Min the int8 graph has no form for, so those pairs are skipped and reported.
High-bias absorption (the paper's 4.2, `absorb_high_biases`): where every value of channel c
of z = W1 x + b1 stays at or above some c_c >= 0, ReLU(z − c) + c = ReLU(z), so b1 −= c and
b2 += W2 · c compute the same function while the activation between the layers (what int8
must cover) shrinks by c. The paper takes c from BatchNorm (β − 3γ, not exact); here c is the
per-channel minimum of z over the calibration data, so the rewrite is exact on that data and
on any input whose pre-activations stay within what calibration saw. Only pairs joined by a
ReLU (and MaxPool) whose second layer is a Gemm or an unpadded Conv: under zero padding the
border outputs of layer 2 would see −c where z had 0, so padded convolutions are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Graph, Node

#: ops that may stand between the two layers: they commute with a positive per-channel scale
#: (a max or an average of scaled values is the scaled max or average)
HOMOGENEOUS = frozenset({"Relu", "MaxPool", "AveragePool"})
LAYERS = ("Conv", "Gemm", "MatMul")
MAX_SWEEPS = 100
TOLERANCE = 1e-6


@dataclass
class EqualizeReport:
    pairs: list = field(default_factory=list)      # (first node, second node)
    skipped: list = field(default_factory=list)    # (first node, second node, why)
    sweeps: int = 0


def _axes(g: Graph, n: Node):
    """(output-channel axis, input-channel axis, weight name) of a layer with constant weights,
    or None."""
    if n.op_type == "Conv" and len(n.inputs) > 1 and n.inputs[1] in g.initializers:
        w = g.initializers[n.inputs[1]]
        group = int(n.attrs.get("group", 1))
        if group == 1:
            return 0, 1, n.inputs[1]
        if w.shape[1] == 1 and group == w.shape[0]:       # depthwise, multiplier 1
            return 0, 0, n.inputs[1]
        return None
    if n.op_type == "Gemm" and n.inputs[1] in g.initializers and not n.attrs.get("transA", 0):
        return (0, 1, n.inputs[1]) if n.attrs.get("transB", 0) else (1, 0, n.inputs[1])
    if n.op_type == "MatMul" and n.inputs[1] in g.initializers and \
            g.initializers[n.inputs[1]].ndim == 2:
        return 1, 0, n.inputs[1]
    return None


def _bias(g: Graph, n: Node, channels: int):
    """The name of n's per-output-channel bias initializer, '' when it has none, None when its
    bias cannot be scaled per channel (computed, or broadcast from fewer elements)."""
    if n.op_type == "MatMul" or len(n.inputs) < 3 or not n.inputs[2]:
        return ""
    b = g.initializers.get(n.inputs[2])
    return n.inputs[2] if b is not None and b.shape == (channels,) else None


def _pairs(g: Graph, report: EqualizeReport):
    readers = g.consumers()
    shared = {v for v, r in readers.items() if v in g.initializers and len(r) > 1}
    outputs = set(g.output_names)

    def only_reader(v):
        r = readers.get(v, [])
        return r[0] if len(r) == 1 and v not in outputs else None

    pairs = []
    for n1 in g.nodes:
        a1 = _axes(g, n1)
        if a1 is None:
            continue
        between, last, mid = [], n1, only_reader(n1.outputs[0])
        while mid is not None and mid.op_type not in LAYERS and len(between) < 4:
            between.append(mid)
            last, mid = mid, only_reader(mid.outputs[0])
        if mid is None or mid.inputs[0] != last.outputs[0]:
            continue
        a2 = _axes(g, mid)
        if a2 is None or (n1.op_type == "Conv") != (mid.op_type == "Conv"):
            continue
        bad = [b.op_type for b in between if b.op_type not in HOMOGENEOUS or
               any(u for u in b.inputs[1:])]
        if bad:
            report.skipped.append((n1.name, mid.name, f"{bad[0]} between them does not "
                                   f"commute with a per-channel scale"))
            continue
        channels = g.initializers[a1[2]].shape[a1[0]]
        bias = _bias(g, n1, channels)
        if bias is None or g.initializers[a2[2]].shape[a2[1]] != channels:
            report.skipped.append((n1.name, mid.name, "bias or channel counts do not match"))
            continue
        if {a1[2], a2[2], bias} & shared:
            report.skipped.append((n1.name, mid.name, "weights shared with another node"))
            continue
        pairs.append((n1, mid, a1, a2, bias, tuple(b.op_type for b in between)))
    return pairs


def _channel_max(w, axis):
    return np.max(np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1), axis=1)


def scale_axis(w, axis, s):
    """w with its slices along `axis` multiplied by the vector s."""
    shape = [1] * w.ndim
    shape[axis] = -1
    return w * s.reshape(shape)


def equalize(graph: Graph) -> tuple[Graph, EqualizeReport]:
    """(the equalized graph, what was paired and skipped). The graph should have BatchNorm
    folded (optimize does it) so that each conv carries its channel scales; the input graph's
    arrays are not modified."""
    report = EqualizeReport()
    pairs = _pairs(graph, report)
    if not pairs:
        return graph, report
    out = graph.copy()
    work = {}                                   # float64 copies of the arrays being changed
    for n1, n2, (_, _, w1), (_, _, w2), b, _ in pairs:
        for name in (w1, w2, b):
            if name and name not in work:
                work[name] = np.asarray(graph.initializers[name], np.float64)
    for sweep in range(1, MAX_SWEEPS + 1):
        change = 0.0
        for n1, n2, (o1, _, w1), (_, i2, w2), b, _ in pairs:
            r1, r2 = _channel_max(work[w1], o1), _channel_max(work[w2], i2)
            ok = (r1 > 0) & (r2 > 0)          # a dead channel stays as it is
            s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
            work[w1] = scale_axis(work[w1], o1, 1.0 / s)
            if b:
                work[b] = work[b] / s
            work[w2] = scale_axis(work[w2], i2, s)
            change = max(change, float(np.max(np.abs(np.log(s)))))
        report.sweeps = sweep
        if change < TOLERANCE:
            break
    for name, arr in work.items():
        out.initializers[name] = arr.astype(graph.initializers[name].dtype)
    report.pairs = [(n1.name, n2.name) for n1, n2, *_ in pairs]
    return out, report


def _unpadded(n: Node) -> bool:
    return n.op_type != "Conv" or (
        n.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and
        not any(n.attrs.get("pads", ())))


def _plain_gemm(n: Node) -> bool:
    return n.op_type != "Gemm" or (float(n.attrs.get("alpha", 1.0)) == 1.0 and
                                   float(n.attrs.get("beta", 1.0)) == 1.0)


def absorbable_pairs(graph: Graph) -> list:
    """[(layer 1, layer 2, layer 2's (out axis, in axis, weight), bias 1, bias 2)] where layer
    1's output bias can move into layer 2 (see the module docstring): joined by a Relu (and
    MaxPools), layer 2 a Gemm or an unpadded Conv, both with unshared constant per-channel
    biases and Gemms without alpha / beta."""
    readers = graph.consumers()
    out = []
    for n1, n2, _, a2, b1, ops in _pairs(graph, EqualizeReport()):
        if not b1 or "Relu" not in ops or set(ops) - {"Relu", "MaxPool"} or \
                not _unpadded(n2) or not (_plain_gemm(n1) and _plain_gemm(n2)):
            continue
        b2 = _bias(graph, n2, graph.initializers[a2[2]].shape[a2[0]])
        if b2 and len(readers[b2]) == 1:
            out.append((n1, n2, a2, b1, b2))
    return out


def absorb_high_biases(graph: Graph, channel_min) -> tuple[Graph, list]:
    """(the graph with each absorbable pair's c = max(0, channel_min[layer 1 output]) moved
    from layer 1's bias into layer 2's, [(layer 1, layer 2, channels moved)]).
    channel_min: {value: per-channel minimum over the data} for the outputs of
    absorbable_pairs' first layers (channels on axis 1)."""
    out, done = graph.copy(), []
    for n1, n2, (o2, i2, w2), b1, b2 in absorbable_pairs(graph):
        c = np.maximum(np.asarray(channel_min[n1.outputs[0]], np.float64), 0.0)
        if not np.any(c > 0):
            continue
        w = np.moveaxis(np.asarray(graph.initializers[w2], np.float64), (o2, i2), (0, 1)) \
            if o2 != i2 else None
        if w is None:                               # depthwise: in channel c is out channel c
            w_c = np.asarray(graph.initializers[w2], np.float64)
            shift = w_c.reshape(w_c.shape[0], -1).sum(1) * c
        else:
            shift = w.reshape(w.shape[0], w.shape[1], -1).sum(2) @ c
        for name, delta in ((b1, -c), (b2, shift)):
            out.initializers[name] = (np.asarray(out.initializers[name], np.float64) +
                                      delta).astype(graph.initializers[name].dtype)
        done.append((n1.name, n2.name, int(np.count_nonzero(c))))
    return out, done
