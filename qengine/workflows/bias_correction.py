"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", §4.2, empirical form).

Quantizing weights and activations shifts each layer's output mean: E[y_int8] ≠ E[y_fp32] per
output channel. Running the float and the int8 graph over the calibration data and averaging
y_fp32 − y_int8 per channel gives that shift; adding it to the layer's float bias (quantized at
s_x·s_w when the Session is built) removes it. Layers are corrected one after the other in
graph order, each measured with the corrections before it already in place — correcting all at
once from one pass over-corrects the later layers, whose inputs the earlier corrections change.
The outputs compared are the layers' outputs after any fused clamp (ReLU/Clip): what the next
layer consumes.
"""
from __future__ import annotations

import numpy as np

from ..calibration.tap import TapSession
from ..graph.ir import Graph
from ._measure import feed_batches



def _channel_sums(arr, channel_axis):
    arr = np.asarray(arr, np.float64)
    axes = tuple(i for i in range(arr.ndim) if i != channel_axis % arr.ndim)
    return arr.sum(axis=axes), arr.size // arr.shape[channel_axis]


def correct_biases(g_float: Graph, g_int8: Graph, layer_outputs: dict, calibration_data,
                   batch_size=None) -> Graph:
    """A copy of `g_int8` whose QConv/QGemm biases absorb their mean output error.

    layer_outputs: {int8 node name: name of the float value its output stands for}.
    """
    from ..ops import get_op_class, is_registered
    names = [n.name for n in g_int8.nodes if n.name in layer_outputs and
             is_registered(n.op_type) and get_op_class(n.op_type).BIAS_INPUT is not None]
    if not names:
        return g_int8
    batches = feed_batches(g_float, calibration_data, batch_size)
    f_sums, counts = {}, {}

    def on_float(name, value):
        s, c = _channel_sums(value, 1 if value.ndim == 4 else -1)
        f_sums[name] = f_sums.get(name, 0) + s
        counts[name] = counts.get(name, 0) + c

    tap = TapSession(g_float, sorted(set(layer_outputs[n] for n in names)))
    for feeds in batches:
        tap.run_tapped(feeds, on_float)
    g = g_int8
    for name in names:
        node = next(n for n in g.nodes if n.name == name)
        a, q_sum = node.attrs, [0]

        def on_int8(_, value, a=a, q_sum=q_sum):
            real = (value.astype(np.float32) - np.float32(a["y_zero_point"])) * \
                np.float32(a["y_scale"])
            q_sum[0] = q_sum[0] + _channel_sums(real, -1)[0]     # NHWC / [.., N]: channels last

        tap8 = TapSession(g, [node.outputs[0]])
        for feeds in batches:
            tap8.run_tapped(feeds, on_int8)
        key = layer_outputs[name]
        shift = ((f_sums[key] - q_sum[0]) / counts[key]).astype(np.float32)
        g = _with_bias(g, node, shift)
    return g


def _with_bias(g: Graph, node, shift) -> Graph:
    out = g.copy()
    from ..ops import get_op_class
    bi = get_op_class(node.op_type).BIAS_INPUT
    old = out.initializers.get(node.inputs[bi]) if len(node.inputs) > bi else None
    bias = shift if old is None else old.astype(np.float32) + shift
    name = out.unique_name(f"{node.name}.bias_corrected")
    out.initializers[name] = bias.astype(np.float32)
    if old is not None and not any(node.inputs[bi] in n.inputs for n in out.nodes
                                   if n is not node):
        del out.initializers[node.inputs[bi]]
    new = node.replace(inputs=tuple(node.inputs[:bi]) + (name,))
    out.nodes = [new if n is node else n for n in out.nodes]
    return out
