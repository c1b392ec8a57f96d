"""Quantization modes behind ``qengine quantize``: a registry mode name → handler.

A handler takes (Graph, QuantizeRequest) and returns a QuantizeResult (the quantized Graph, the
float graph to report against, notes). Adding a mode is one function and one
`@register_mode(name)`; the CLI's --mode choices are read from here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, NaNWarning, QuantizationWarning
from ..graph.ir import Graph
from ..workflows.dynamic import QUANTIZABLE, DynamicQuantConfig, quantize_dynamic
from ..qdq.rules import LUT_FUNCTIONS, RULES
from ..workflows.ptq import is_float_value
from .sizes import initializer_bytes, node_initializers, node_weight_bytes


@dataclass(frozen=True)
class QuantizeRequest:
    """What the user asked for; each mode uses the fields that apply to it."""
    per_row: bool = False
    weight_bits: int = 8                # 8, or 4 (both modes)
    group_size: int | None = None       # dynamic, 4-bit: one scale per group along K
    keep_float: frozenset = field(default_factory=frozenset)
    calib: Path | None = None           # calibration data (.npz), static mode
    method: str = "minmax"              # static: calibration method
    per_channel: bool = True            # static: weights per output channel
    symmetric_activations: bool = False
    bias_correction: bool = False
    equalize: bool = False              # static: cross-layer equalization first
    rounding: str = "nearest"           # static: "adaround" learns the weight rounding
    smooth_quant: float | None = None   # static: SmoothQuant's alpha
    float_weights: str = "float32"      # static: storage of the weights left float
    target_sqnr: float | None = None    # static: auto keep-float until this output SQNR (dB)
    max_agreement_drop: float | None = None  # ... or until argmax agreement with FP32 is
    #                                          at least 1 - this
    rnn: str = "int16"                  # static: what LSTM / GRU become (StaticQuantConfig.rnn)
    activation_matmul: str = "float"    # "int8": MatMuls between activations too (both modes)
    progress: Callable | None = field(default=None, compare=False)


@dataclass(frozen=True)
class QuantizeResult:
    """The quantized graph, the float graph its nodes are reported against (static mode folds
    BatchNorm first, so that is the optimized graph), and one-line notes for the user."""
    graph: Graph
    float_graph: Graph
    notes: tuple = ()
    report_ops: frozenset = QUANTIZABLE
    islands: tuple = ()                 # static: FloatIsland per float region, with its cost
    island_batch: int = 0               # samples in the batch the islands were timed on


MODES: dict[str, Callable[[Graph, QuantizeRequest], QuantizeResult]] = {}


def register_mode(name: str):
    def deco(fn):
        MODES[name] = fn
        return fn
    return deco


@register_mode("dynamic")
def _dynamic(graph: Graph, req: QuantizeRequest) -> QuantizeResult:
    adaround = req.rounding == "adaround"
    static_only = [flag for flag, used in (("--calib", req.calib is not None and not adaround),
                                           ("--target-sqnr", req.target_sqnr is not None),
                                           ("--max-agreement-drop",
                                            req.max_agreement_drop is not None),
                                           ("--bias-correction", req.bias_correction),
                                           ("--equalize", req.equalize),
                                           ("--smooth-quant", req.smooth_quant is not None),
                                           ("--float-weights", req.float_weights != "float32"),
                                           ("--per-tensor", not req.per_channel),
                                           ("--symmetric-activations",
                                            req.symmetric_activations),
                                           ("--method", req.method != "minmax"),
                                           ("--rnn", req.rnn != "int16")) if used]
    if static_only:
        raise ConfigError(f"{', '.join(static_only)}: static mode only, and the mode is "
                          f"dynamic (the default): add --mode static to calibrate, or leave "
                          f"{'it' if len(static_only) == 1 else 'them'} out (dynamic mode "
                          f"quantizes activations at run time and needs no calibration)")
    data = None
    if adaround:
        from .calibdata import load_calibration
        if req.calib is None:
            raise ConfigError("--rounding adaround learns the weights' rounding from data: "
                              "give --calib DATA.npz")
        data = load_calibration(req.calib, graph)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", QuantizationWarning)
        q = quantize_dynamic(graph, DynamicQuantConfig(per_row=req.per_row,
                                                       keep_float=req.keep_float,
                                                       weight_bits=req.weight_bits,
                                                       group_size=req.group_size,
                                                       rounding=req.rounding,
                                                       activation_matmul=(
                                                           req.activation_matmul == "int8")),
                             data)
    notes = []
    for w in seen:          # the keep-float rule's report goes into the summary
        if issubclass(w.category, QuantizationWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return QuantizeResult(q, graph, tuple(notes), QUANTIZABLE)


#: profiled runs of the quantized graph that time its float islands (median per node)
ISLAND_RUNS = 3

#: float op types the static report lists: the ones a lowering rule makes integer compute
#: nodes of (not data movement nor table lookups), and LSTM/GRU
STATIC_REPORTED = frozenset({op for op, r in RULES.items() if not r.same_qparams or
                             op == "MaxPool"} - set(LUT_FUNCTIONS) - {"ElementwiseChain"} |
                            {"LSTM", "GRU"})


@register_mode("static")
def _static(graph: Graph, req: QuantizeRequest) -> QuantizeResult:
    from ..workflows.ptq import (StaticQuantConfig, observe_shapes, prepare_float_graph,
                                    quantize_static)
    from .calibdata import load_calibration
    if req.per_row:
        raise ConfigError("--per-row is for dynamic mode; static mode fixes activation "
                          "qparams at calibration")
    if req.group_size is not None:
        raise ConfigError("--group-size is for dynamic mode (LSTM / GRU / Linear); static "
                          "4-bit weights have one scale per output channel")
    if req.calib is None:
        raise ConfigError("static mode needs --calib DATA.npz (calibration inputs)")
    data = load_calibration(req.calib, graph)
    cfg = StaticQuantConfig(method=req.method, per_channel=req.per_channel,
                            weight_bits=req.weight_bits,
                            symmetric_activations=req.symmetric_activations,
                            bias_correction=req.bias_correction, equalize=req.equalize,
                            rounding=req.rounding, smooth_quant=req.smooth_quant,
                            float_weights=req.float_weights,
                            keep_float=req.keep_float,
                            rnn=req.rnn, activation_matmul=req.activation_matmul)
    float_graph = prepare_float_graph(graph)
    observe_shapes(float_graph, data, cfg.batch_size)   # dtypes: the report skips integer ops
    notes = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", NaNWarning)
        warnings.simplefilter("always", QuantizationWarning)
        auto = req.target_sqnr is not None or req.max_agreement_drop is not None
        if not auto:
            q, chosen = quantize_static(graph, data, cfg, progress=req.progress,
                                        return_report=True)
            counts = {}
            for c in chosen:
                counts[c.method] = counts.get(c.method, 0) + 1
            if chosen:
                notes.append("auto calibration chose: " + ", ".join(
                    f"{k} for {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) +
                    " (of " + f"{len(chosen)} activations; per tensor: quantize_static(..., "
                    "return_report=True))")
        else:
            from ..workflows.sensitivity import auto_keep_float
            # an all-float "quantized" model is an error here: nothing is written, rc 2
            q, kept, achieved, mixed = auto_keep_float(
                graph, data, req.target_sqnr, cfg, max_metric_drop=req.max_agreement_drop,
                progress=req.progress, on_unreachable="error", return_report=True)
    for w in seen:      # NaN and what stays float go into the summary, the rest as usual
        if issubclass(w.category, (NaNWarning, QuantizationWarning)):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if auto:
        agree = "" if mixed.metric is None else \
            f", argmax agreement with FP32 {100 * mixed.metric:.2f} %"
        notes.append(f"auto keep-float: output SQNR {achieved:.2f} dB{agree} on the "
                     f"calibration data, {mixed.target} met")
        notes.append("kept float: " + (", ".join(sorted(kept)) if kept else "(none)"))
        if kept:
            notes.append("layers kept float compute in float32 with weights stored in: " +
                         ", ".join(f"{c.name} {c.precision}" for c in mixed.layers
                                   if c.precision != "int8"))
        notes.append("engine MB / ms per batch, FP32 -> all-int8 -> chosen: " + " -> ".join(
            f"{mixed.engine_bytes[k] / 1e6:.3f} / {mixed.latency_ms[k]:.2f}"
            for k in ("float32", "int8", "chosen")))
    from ..workflows._measure import feed_batches
    from ..workflows.islands import float_islands
    with warnings.catch_warnings():         # calibration has said what cutting the data says
        warnings.simplefilter("ignore")
        feeds = feed_batches(q, data, cfg.batch_size)[0]
    islands = tuple(float_islands(q, feeds, ISLAND_RUNS))
    return QuantizeResult(q, float_graph, tuple(notes), STATIC_REPORTED, islands,
                          len(next(iter(feeds.values()))))


def quantize_graph(graph: Graph, mode: str, req: QuantizeRequest) -> QuantizeResult:
    if mode not in MODES:
        raise ConfigError(f"unknown quantization mode {mode!r}; choose from {sorted(MODES)}")
    return MODES[mode](graph, req)


def quantization_report(before: Graph, after: Graph, op_types=QUANTIZABLE) -> list[dict]:
    """One row per node of a quantizable op type in `before`: its name, op type before and
    after, and the bytes of weights it reads before and after. A node fused away by the
    quantizer (the Add of a MatMul bias) is counted with the node it was fused into; nodes an
    int8 node lists in `fused_nodes` (a QConv and its residual QAdd in one QConvAdd) map to it,
    its weights counted on the first."""
    after_by_name = _by_name(after)
    consumers = before.consumers()
    rows = []
    for node in before.nodes:
        if node.op_type not in op_types or not is_float_value(before, node.outputs[0]):
            continue                    # (shape arithmetic on int64 is not a float layer)
        new = after_by_name.get(node.name)
        old_bytes = node_weight_bytes(before, node)
        fused = [c for o in node.outputs for c in consumers.get(o, ())
                 if c.name not in after_by_name]
        old_bytes += sum(node_weight_bytes(before, c) for c in fused)
        quantized = new is not None and new.op_type != node.op_type
        rows.append({"node": node.name, "op": node.op_type,
                     "new_op": new.op_type if new is not None else None,
                     "quantized": quantized,
                     "fused": [c.name for c in fused] if quantized else [],
                     "bytes_before": old_bytes,
                     "bytes_after": node_weight_bytes(after, new)
                     if new is not None and _weights_here(node, new) else 0})
    return rows


def _by_name(g: Graph) -> dict:
    """{node name: node}, plus the names each node's `fused_nodes` lists (kept as they were
    in the float graph by a fusion of int8 nodes) mapped to the node that runs them."""
    out = {n.name: n for n in g.nodes}
    for n in g.nodes:
        for name in n.attrs.get("fused_nodes") or ():
            out.setdefault(name, n)
    return out


def _weights_here(node, new) -> bool:
    """Whether the report row of `node` shows the weights of `new`, the node running it: once,
    on the first node a fusion lists (the conv of a QConvAdd, not its add)."""
    fused = new.attrs.get("fused_nodes") or ()
    return new.name == node.name or not fused or fused[0] == node.name


def reported_weight_bytes(before: Graph, after: Graph, rows) -> tuple[int, int]:
    """(bytes before, bytes after) of the weights the report's nodes read, each initializer
    counted once: per-row bytes would count a weight shared by two nodes twice."""
    by_name_before = {n.name: n for n in before.nodes}
    by_name_after = _by_name(after)
    old, new = set(), set()
    for r in rows:
        for name in (r["node"], *r["fused"]):
            if name in by_name_before:
                old |= node_initializers(before, by_name_before[name])
        if r["new_op"] is not None and r["node"] in by_name_after:
            new |= node_initializers(after, by_name_after[r["node"]])
    return initializer_bytes(before, old), initializer_bytes(after, new)
