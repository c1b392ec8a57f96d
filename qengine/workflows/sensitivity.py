"""Mixed precision: how much each int8 layer costs, and the fewest float layers that meet a target.

    reports = layer_sensitivity(model, {"image": calib})                 # most sensitive: rank 1
    g8, kept, sqnr = auto_keep_float(model, {"image": calib}, target_sqnr_db=35.0)

Both calibrate once (workflows/ptq.py `calibrate` + `build_int8` are the two halves) and then
build many int8 graphs from the same statistics, each with a different `keep_float` set.

Layers. The candidates are the int8 nodes that add error of their own: Conv, Gemm, MatMul,
Add/Mul, Concat, AveragePool/GlobalAveragePool and non-clamp lookup tables (Sigmoid, ...), each
with the Relu/Clip it absorbs. MaxPool, data movement and stand-alone Relu/Clip are *followers*:
given a uint8 input they are exact (or nearly: a requantized clamp), but given a float input
the builder would quantize it just for them and dequantize right after — an error that belongs
to no layer. So whenever a keep_float set is used here it is first closed: followers whose
input is float are kept float too (`close_keep_float`). The names returned by auto_keep_float
are that closed set, so `quantize_static(model, data, replace(config, keep_float=kept))`
rebuilds the same graph.

Sensitivity of a layer = output SQNR of the model with only that layer in int8 (everything else
float) against FP32; lower SQNR means more sensitive. It isolates the layer's own error; the
reports also give each layer's output SQNR inside the fully quantized model, where the errors of
the layers before it have accumulated.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..calibration import collect_stats, make_observer
from ..calibration.collect import reusable
from ..calibration.histogram import Histogram
from ..errors import ConfigError, QuantizationWarning
from ..graph.ir import Graph
from ._measure import (TeeObserver, feed_batches, layer_output_sqnr, run_batches, saturation,
                       sqnr_db)
from .ptq import (StaticQuantConfig, _data_inputs, _Plan, build_int8, float16_weights,
                  observe_shapes, plan_keep_float, prepare_float_graph, rescaled_float_graph,
                  warn_float_rnns)



@dataclass(frozen=True)
class LayerReport:
    """One candidate layer. Ranges are of the layer's output value (after its fused clamp)."""
    name: str
    op_type: str
    output: str                 # float value the layer's int8 output stands for
    sqnr_db: float              # model output SQNR vs FP32 with only this layer in int8
    metric: float | None        # metric (e.g. accuracy) of that model, when labels are given
    observed_min: float         # calibration min / max of the output
    observed_max: float
    range_min: float            # the real range the chosen (scale, zero point) covers
    range_max: float
    scale: float
    zero_point: int
    saturation: float           # fraction of calibration values clipped: beyond the range by
    #                             more than half a step (closer ones just round to qmin / qmax)
    layer_sqnr_db: float        # this layer's output SQNR inside the fully quantized model
    rank: int                   # 1 = most sensitive (lowest sqnr_db)
    nan: int = 0                # NaN values calibration left out of the output's range
    histogram: Histogram = field(repr=False, compare=False, default=None)


class SensitivityReport(list):
    """list[LayerReport] in graph order, plus the whole-model numbers:
    method, float_metric / int8_metric (None without labels), int8_sqnr_db (the model quantized
    with the config's keep_float), nan ({calibrated value: NaN values left out of its range},
    only values that had some, graph order)."""
    method: str = ""
    float_metric: float | None = None
    int8_metric: float | None = None
    int8_sqnr_db: float = math.nan

    def __init__(self, *args):
        super().__init__(*args)
        self.nan: dict[str, int] = {}


def accuracy(outputs: dict, labels) -> float:
    """Top-1 accuracy of the first output (argmax over its last axis)."""
    logits = next(iter(outputs.values()))
    return float(np.mean(logits.argmax(-1) == class_labels(labels)))


def class_labels(labels) -> np.ndarray:
    """`labels` as one integer class index per sample, or a ConfigError naming what they are
    instead: one-hot rows, or floats that are not whole numbers (compared with an argmax they
    would give a silent 0% accuracy). Whole-number floats are taken as indices."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] > 1:
        raise ConfigError(f"labels have shape {list(lab.shape)}: one-hot or per-class rows? "
                          f"accuracy needs one class index per sample; pass "
                          f"labels.argmax(axis=1)")
    if lab.ndim > 2:
        raise ConfigError(f"labels have shape {list(lab.shape)}; accuracy needs one class "
                          f"index per sample (a 1-D array)")
    lab = lab.reshape(-1)
    if lab.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(lab) | (lab != np.round(lab)))
        if bad.size:
            raise ConfigError(f"labels are not integer class indices ({lab[bad[0]]:.4g} at "
                              f"index {bad[0]}, {bad.size} such of {lab.size}); accuracy "
                              f"compares them with the argmax of the model's first output: "
                              f"give one integer class per sample")
        return lab.astype(np.int64)
    if lab.dtype.kind not in "iub":
        raise ConfigError(f"labels of dtype {lab.dtype} are not class indices; give one "
                          f"integer class per sample")
    return lab


def close_keep_float(g: Graph, keep_float) -> frozenset:
    """keep_float plus every follower (MaxPool, data movement, stand-alone Relu/Clip) whose
    input would be float: quantizing just for such an op adds error and saves nothing."""
    kept = set(keep_float)
    plan = _Plan(g, frozenset(kept))
    is_q = set()
    for n in g.nodes:
        if n.name in plan.skip:                 # absorbed clamp: its producer is int8
            is_q.update(n.outputs)
            continue
        if n.name not in plan.int8 or n.name in kept:
            continue
        if _is_follower(n, plan.int8[n.name]):
            data = [v for v in n.inputs[:_data_inputs(n, g.initializers.__contains__)] if v]
            if not all(v in is_q for v in data):
                kept.add(n.name)
                continue
        is_q.update(o for o in n.outputs if o)
    return frozenset(kept)


def _is_follower(n, rule) -> bool:
    """Ops worth int8 only when their input already is (MaxPool, data movement, Relu/Clip)."""
    return rule.needs_int8_input and n.op_type != "ElementwiseChain"


class _Study:
    """One calibration of one model; builds and scores int8 variants of it."""

    def __init__(self, model, calibration_data, config, eval_data, labels, metric, progress,
                 who):
        self.config = StaticQuantConfig() if config is None else config
        if not isinstance(self.config, StaticQuantConfig):
            raise ConfigError(f"config must be a StaticQuantConfig, got "
                              f"{type(self.config).__name__}")
        if self.config.rounding != "nearest":
            raise ConfigError(f"{who}: rounding={self.config.rounding!r} is not combined with "
                              f"per-layer studies yet; use rounding='nearest' here")
        if self.config.method == "auto":
            raise ConfigError(f"{who}: method='auto' scores whole int8 models itself and is not "
                              f"combined with per-layer studies yet; use a single method here "
                              f"(e.g. 'minmax' or 'mse')")
        g, calibration_data = rescaled_float_graph(prepare_float_graph(model, who),
                                                   calibration_data, self.config)
        missing = self.config.keep_float - {n.name for n in g.nodes}
        if missing:
            raise ConfigError(f"keep_float names nodes that are not in the graph: "
                              f"{sorted(missing)}")
        # every candidate graph is built (bias correction) and scored on the same data: a
        # one-shot generator is read into memory once here
        calibration_data = observe_shapes(g, reusable(calibration_data), self.config.batch_size)
        self.g, self.calib = g, calibration_data
        self.full = _Plan(g, plan_keep_float(g, replace(self.config, keep_float=frozenset())))
        nodes = {n.name: n for n in g.nodes}
        self.nodes = nodes
        self.layers = [n for n in self.full.int8 if n not in self.full.skip and
                       not _is_follower(nodes[n], self.full.int8[n])]
        opts = dict(self.config.observer_options)
        observers = {v: TeeObserver(make_observer(self.config.method, **opts))
                     for v in self.full.watch}
        self.stats = collect_stats(g, calibration_data, self.full.watch,
                                   method=self.config.method, progress=progress,
                                   observer_options=opts, batch_size=self.config.batch_size,
                                   observers=observers)
        data = calibration_data if eval_data is None else eval_data
        self.batches = feed_batches(g, data, self.config.batch_size)
        self.ref = run_batches(g, self.batches)
        if labels is not None and metric is None:
            labels = class_labels(labels)           # the default metric needs class indices
        self.labels = labels
        if labels is not None:
            n_out = len(next(iter(self.ref.values())))
            if len(np.asarray(labels).reshape(-1)) != n_out:
                raise ConfigError(f"{len(np.asarray(labels).reshape(-1))} labels for "
                                  f"{n_out} evaluated samples")
        self.metric = (metric or accuracy) if labels is not None else None

    def build(self, keep_float, fp16=None) -> Graph:
        """The int8 graph with keep_float (closed) left float; the float Conv/Gemm/MatMul
        among `fp16` store float16 weights (default: all of them if the config says so)."""
        cfg = replace(self.config, keep_float=close_keep_float(self.g, keep_float))
        q, layers = build_int8(self.g, self.stats, cfg, with_layers=True)
        if cfg.bias_correction and layers:
            from .bias_correction import correct_biases
            q = correct_biases(self.g, q, layers, self.calib, cfg.batch_size)
        if fp16 is None:
            return float16_weights(q) if cfg.float_weights == "float16" else q
        return float16_weights(q, close_keep_float(self.g, fp16)) if fp16 else q

    def score(self, q: Graph):
        """(output SQNR vs FP32 in dB, metric or None)."""
        y = run_batches(q, self.batches)
        m = None if self.metric is None else float(self.metric(y, self.labels))
        return sqnr_db(y, self.ref), m

    def single_layer_scores(self):
        """{layer: (sqnr, metric)} with only that layer in int8."""
        return {name: self.score(self.build(set(self.layers) - {name}))
                for name in self.layers}


def _ranks(scores: dict) -> dict:
    order = sorted(scores, key=lambda k: scores[k][0])      # stable: graph order breaks ties
    return {name: i + 1 for i, name in enumerate(order)}


def layer_sensitivity(model, calibration_data, config: StaticQuantConfig | None = None, *,
                      eval_data=None, labels=None, metric: Callable | None = None,
                      progress: Callable | None = None) -> SensitivityReport:
    """Per-layer quantization sensitivity and statistics (see the module docstring).

    model: Graph or ONNX path; calibration_data / eval_data: {input: samples on axis 0} or an
    iterable of feed dicts (eval_data defaults to the calibration data; a generator is read
    into a list once, since every candidate graph runs over the same batches); labels: one per
    evaluated sample, for `metric(outputs dict, labels) -> float` (default: top-1 accuracy of
    the first output); progress(done, total) during calibration."""
    st = _Study(model, calibration_data, config, eval_data, labels, metric, progress,
                "layer_sensitivity")
    cfg = st.config
    scores = st.single_layer_scores()
    ranks = _ranks(scores)
    full = st.build(cfg.keep_float)
    outputs = {name: st.full.output_of(st.nodes[name]) for name in st.layers}
    in_full = layer_output_sqnr(st.g, full, outputs, st.batches)
    report = SensitivityReport()
    for name in st.layers:
        obs = st.stats[outputs[name]]
        qp = obs.qparams(bits=8, symmetric=cfg.symmetric_activations, signed=False)
        s, z = float(qp.scale), int(qp.zero_point)
        lo, hi = s * (0 - z), s * (255 - z)
        h = obs.histogram
        report.append(LayerReport(
            name=name, op_type=st.nodes[name].op_type, output=outputs[name],
            sqnr_db=scores[name][0], metric=scores[name][1], observed_min=float(h.min),
            observed_max=float(h.max), range_min=lo, range_max=hi, scale=s, zero_point=z,
            saturation=saturation(h, lo - s / 2, hi + s / 2),
            layer_sqnr_db=in_full.get(name, math.nan),
            rank=ranks[name], nan=obs.nan, histogram=h))
    report.method = cfg.method
    report.nan = {v: st.stats[v].nan for v in (*st.g.input_names, *st.g.producers())
                  if v in st.stats and st.stats[v].nan}
    report.int8_sqnr_db, report.int8_metric = st.score(full)
    if st.metric is not None:
        report.float_metric = float(st.metric(st.ref, labels))
    return report


@dataclass(frozen=True)
class LayerChoice:
    """What auto_keep_float chose for one candidate layer."""
    name: str
    op_type: str
    precision: str              # "int8", "float16" (weights stored float16, computed in
    #                             float32) or "float32"
    sqnr_db: float              # model output SQNR with only this layer in int8, and the
    metric: float | None        # metric then (nan / None: all-int8 met the budget, no search)


@dataclass
class MixedPrecisionReport:
    """auto_keep_float(..., return_report=True): the budget, what was chosen per layer, and the
    model's size and latency for FP32, all-int8 and the choice (engine-file bytes; median ms of
    Session.run on the first evaluation batch, on this machine with the default threads)."""
    target: str
    sqnr_db: float
    metric: float | None
    float_metric: float | None
    int8_sqnr_db: float
    int8_metric: float | None
    layers: list
    engine_bytes: dict          # {"float32": ..., "int8": ..., "chosen": ...}
    latency_ms: dict            # same keys

    def __str__(self):
        met = "" if self.metric is None else (
            f", metric {self.metric:.4g} (FP32 {self.float_metric:.4g}, "
            f"all-int8 {self.int8_metric:.4g})")
        head = [f"{self.target}: output SQNR {self.sqnr_db:.2f} dB (all-int8 "
                f"{self.int8_sqnr_db:.2f} dB){met}"]
        for k in ("float32", "int8", "chosen"):
            head.append(f"  {k:8s} {self.engine_bytes[k] / 1e6:8.3f} MB "
                        f"{self.latency_ms[k]:8.2f} ms")
        head += [f"  {c.precision:8s} {c.op_type:10s} {c.name}" for c in self.layers
                 if c.precision != "int8"]
        return "\n".join(head)


PRECISIONS = ("int8", "float16", "float32")


def agreement(outputs: dict, reference: dict) -> float:
    """Share of positions where the first output's argmax over its last axis equals the
    reference's (e.g. FP32's): the default task metric of auto_keep_float."""
    k = next(iter(reference))
    return float(np.mean(outputs[k].argmax(-1) == reference[k].argmax(-1)))


def auto_keep_float(model, calibration_data, target_sqnr_db: float | None = None,
                    config: StaticQuantConfig | None = None, *, eval_data=None,
                    max_metric_drop: float | None = None, metric: Callable | None = None,
                    labels=None, precisions=None, progress: Callable | None = None,
                    on_unreachable: str = "warn", return_report: bool = False):
    """The int8 graph with the fewest float layers that meets a budget, given either as
    `target_sqnr_db` (output SQNR vs FP32 on eval_data, default the calibration data) or as
    `max_metric_drop`: metric(outputs, labels) of the int8 model at most that far below the
    FP32 model's (labels default to the FP32 outputs themselves and metric to `agreement`,
    the share of argmaxes equal to FP32's; pass a CTC decoder's string agreement, a top-1
    accuracy with real labels, ...).

    Greedy: layers ordered by their single-layer score (metric, then SQNR; most sensitive
    first) leave int8 one at a time, re-measuring the whole model after each, until the budget
    is met or every layer is float; then each layer that left int8 before the last one is
    given back to int8, most multiply-adds first, if the budget still holds without it. The
    result meets the budget on eval_data exactly: with a coarse metric on few samples that
    edge may not hold on other data, so give eval_data enough samples.

    `precisions` are the per-layer choices (default int8 and float32, plus float16 when
    config.float_weights is "float16"): with float16 allowed, a layer leaving int8 keeps its
    weights in float16 (half the bytes, computed in float32), and only if the budget is missed
    with every such layer float16 are they moved to float32, most sensitive first. A result
    with every layer float is no quantization at all: then (the budget is met only that way,
    or not even then) a QuantizationWarning says so — or, with on_unreachable="error" (what
    `qengine quantize` uses), a ConfigError is raised instead.

    Returns (graph, keep_float names — the closed set that reproduces the graph with
    quantize_static (with float_weights="float16" when every float layer chose float16) —,
    achieved SQNR in dB); return_report=True appends a MixedPrecisionReport."""
    if (target_sqnr_db is None) == (max_metric_drop is None):
        raise ConfigError("auto_keep_float needs one budget: target_sqnr_db (dB) or "
                          "max_metric_drop")
    for what, v in (("target_sqnr_db", target_sqnr_db), ("max_metric_drop", max_metric_drop)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                              not math.isfinite(v)):
            raise ConfigError(f"{what} must be a finite number, got {v!r}")
    if max_metric_drop is None and (metric is not None or labels is not None):
        raise ConfigError("metric and labels set the budget of max_metric_drop; with "
                          "target_sqnr_db the budget is the output SQNR")
    if on_unreachable not in ("warn", "error"):
        raise ConfigError(f"on_unreachable must be 'warn' or 'error', got {on_unreachable!r}")
    st = _Study(model, calibration_data, config, eval_data, labels,
                metric if labels is not None else None, progress, "auto_keep_float")
    if precisions is None:
        precisions = PRECISIONS if st.config.float_weights == "float16" else \
            ("int8", "float32")
    precisions = tuple(precisions)
    if "int8" not in precisions or not set(precisions) - {"int8"} or \
            not set(precisions) <= set(PRECISIONS):
        raise ConfigError(f"precisions must name int8 and float16 and/or float32, got "
                          f"{precisions!r}")
    if max_metric_drop is not None:
        if labels is None:              # agreement with the FP32 model
            st.labels, st.metric = st.ref, metric or agreement
        float_metric = float(st.metric(st.ref, st.labels))
        budget = f"metric drop {max_metric_drop:g} (FP32 metric {float_metric:.4g})"

        def met(score):
            return float_metric - score[1] <= max_metric_drop
    else:
        float_metric = None
        budget = f"SQNR target {target_sqnr_db:g} dB"

        def met(score):
            return score[0] >= target_sqnr_db
    warn_float_rnns(st.g, st.config.keep_float, "the keep-float search works on the other "
                    "layers and leaves recurrent ones float")
    fp16_ok = "float16" in precisions
    kept = set(st.config.keep_float)
    fp32 = set() if fp16_ok else set(st.layers) | kept

    def attempt():
        q = st.build(kept, fp16=kept - fp32)
        return q, st.score(q)
    q, got = int8 = attempt()
    scores = {}
    if not met(got):
        scores = st.single_layer_scores()
        order = sorted(scores, key=lambda k: (scores[k][1] or 0.0, scores[k][0]))
        added = []
        for name in order:
            if name in kept:
                continue
            kept.add(name)
            added.append(name)
            q, got = attempt()
            if met(got):
                break
        if met(got):
            # the greedy adds in a fixed order; a layer added early may not be needed once
            # later ones are float: give each back to int8 if the budget still holds without
            # it, the layers with the most multiply-adds first (where int8 saves the most time)
            for name in sorted(added[:-1], key=lambda k: -_macs(st.g, st.nodes[k])):
                kept.discard(name)
                q2, got2 = attempt()
                if met(got2):
                    q, got = q2, got2
                else:
                    kept.add(name)
        if not met(got) and fp16_ok and "float32" in precisions:
            for name in [n for n in order if n in kept] + sorted(kept - set(order)):
                fp32.add(name)
                q, got = attempt()
                if met(got):
                    break
    achieved = got[0]
    if not met(got) or not set(st.layers) - kept:
        msg = _unreachable(budget, achieved, scores, st.layers, met(got),
                           max_metric_drop is not None)
        if on_unreachable == "error":
            raise ConfigError(msg)
        warnings.warn(msg, QuantizationWarning, stacklevel=2)
    closed = close_keep_float(st.g, kept)
    if not return_report:
        return q, closed, achieved
    in_q = {n.name: n for n in q.nodes}
    precision = {name: "int8" if name not in closed else _float_precision(q, in_q.get(name))
                 for name in st.layers}
    report = MixedPrecisionReport(
        target=budget, sqnr_db=achieved, metric=got[1], float_metric=float_metric,
        int8_sqnr_db=int8[1][0], int8_metric=int8[1][1],
        layers=[LayerChoice(n, st.nodes[n].op_type, precision[n],
                            *scores.get(n, (math.nan, None))) for n in st.layers],
        engine_bytes={}, latency_ms={})
    from ..engine_file import dumps
    for k, g in (("float32", st.g), ("int8", int8[0]), ("chosen", q)):
        report.engine_bytes[k] = len(dumps(g))
        report.latency_ms[k] = _latency_ms(g, st.batches[0])
    return q, closed, achieved, report


def _macs(g: Graph, node) -> int:
    """Multiply-adds of a Conv / Gemm / MatMul with constant weights per evaluated sample (from
    the shapes calibration recorded), 0 for other layers."""
    w = g.initializers.get(node.inputs[1]) if len(node.inputs) > 1 else None
    info = g.value_info.get(node.outputs[0])
    if w is None or node.op_type not in ("Conv", "Gemm", "MatMul") or info is None or \
            not info.shape or not all(isinstance(d, int) for d in info.shape[1:]):
        return 0
    per_output = w.size // w.shape[0] if node.op_type == "Conv" else \
        w.shape[1] if node.op_type == "Gemm" and node.attrs.get("transB", 0) else w.shape[0]
    return int(np.prod(info.shape[1:])) * int(per_output)


def _float_precision(q: Graph, node) -> str:
    """"float16" when the float node of q reads float16 weights, else "float32"."""
    w = q.initializers.get(node.inputs[1]) if node is not None and len(node.inputs) > 1 \
        else None
    return "float16" if w is not None and w.dtype == np.float16 else "float32"


def _latency_ms(g: Graph, feeds, runs: int = 7) -> float:
    from ..session import Session
    from ..tools.bench import time_runs
    return 1000.0 * float(np.median(time_runs(Session(g, nan="allow"), feeds, runs, 1)))


def _unreachable(budget, achieved, scores, layers, met, by_metric=False) -> str:
    """What auto_keep_float says when only an all-float model meets the budget (or none)."""
    if not layers:
        return (f"{budget}: the model has no layer static quantization can make int8, so "
                f"nothing is quantized")
    head = (f"{budget} is only met with every layer float, i.e. nothing quantized"
            if met else f"{budget} is not met even with every layer float "
            f"({achieved:.2f} dB)")
    if not scores:                      # every layer was in the config's keep_float already
        return f"{head}; keep_float names every layer"
    if by_metric:
        best = max(scores, key=lambda k: scores[k][1])
        return (f"{head}; the best single int8 layer keeps a metric of {scores[best][1]:.4g} "
                f"({best}): a smaller max_metric_drop than FP32's metric minus that leaves no "
                f"layer int8")
    best = max(scores, key=lambda k: scores[k][0])
    return (f"{head}; the best single int8 layer reaches at most {scores[best][0]:.2f} dB "
            f"({best}): choose a target at or below that")
