"""Static post-training quantization: calibrate a float graph, then rewrite it integer-only.

    g8 = quantize_static(model, {"input": samples}, StaticQuantConfig(method="entropy"))

1. The float graph is optimized (constant folding, BatchNormalization folded into Conv/Gemm).
2. Conv / Gemm / MatMul / Add followed by Relu or Clip absorb it as an output clamp.
3. Calibration runs the float graph over the samples and observes every activation that enters
   or leaves an int8 op (`qengine.calibration`: min-max, moving average, entropy, percentile,
   MSE); observers give each value its (scale, zero point): asymmetric uint8 by default,
   symmetric (uint8 with zero point 128, i.e. int8 shifted) as an option.
4. The plan (qengine/qdq/insert.py) picks the nodes whose lowering rule (qengine/qdq/rules.py)
   accepts them, minus `keep_float`; `build_qdq` writes the QDQ graph — qengine's quantized IR,
   the form ONNX Runtime, OpenVINO and TensorRT exchange: QuantizeLinear/DequantizeLinear at
   the chosen qparams around those nodes, weights int8 through DequantizeLinear (symmetric, per
   output channel or per tensor), biases float (quantized at s_x·s_w when the Session is
   built). Data-movement ops (MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze) keep
   their input's qparams.
   The one lowering pass (qengine/qdq/lower.py) turns each node unit into its integer op on
   uint8 (NHWC for 4-D values inside int8 regions); everything else — Softmax, LRN, ops the
   kernels do not cover, keep_float nodes — stays float, with QuantizeU8 / DequantizeU8 where
   values cross, once per value.
5. (optional bias correction, then) residual adds are fused: a QConv whose output only a QAdd
   reads runs with the add in its epilogue, as one QConvAdd node (graph/fusion.py
   `fuse_residual_add`); its output bytes are the unfused pair's. `fuse_residual=False` keeps
   the pair apart (every conv output stays a value of the graph, e.g. to tap it).

`calibrate` and `build_int8` (= `build_qdq` + lowering) are the two halves, so mixed-precision searches (workflows/
sensitivity.py) and bias correction (workflows/bias_correction.py) reuse one calibration.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..calibration import collect_stats, make_observer
from ..calibration.collect import reusable
from ..errors import ConfigError, QuantizationWarning
from ..graph.fusion import fuse_residual_add
from ..graph.ir import Graph, Node
from ..graph.passes import optimize
from ..model_files import as_graph
from ..qdq.insert import Plan, insert_qdq, is_float_value  # noqa: F401 (is_float_value: API)
from ..qdq.lower import lower_with_layers
from ..qdq.rules import RULES, rule_for

METHODS = ("minmax", "moving_average", "entropy", "percentile", "mse", "auto")
#: every ONNX op static quantization can run in int8 (each under the conditions its lowering
#: rule checks, qengine/qdq/rules.py); docs/supported_ops.md is generated from it
STATIC_INT8_OPS = tuple(op for op in RULES if op != "ElementwiseChain")


RNN_MODES = ("int16", "int8", "dynamic", "float")


@dataclass(frozen=True)
class StaticQuantConfig:
    """Options of static quantization.

    method: calibration method (minmax, moving_average, entropy, percentile, mse), or "auto":
        per activation, the candidate range (min-max, percentiles, MSE, entropy, KL) that
        brings the int8 model's output closest to the float one's on the first calibration
        rows (qengine/calibration/auto.py; quantize_static(..., return_report=True) says what
        it chose). It builds an int8 graph per candidate tried: seconds on small CNNs,
        minutes on large models.
    per_channel: weights symmetric int8 per output channel (default) or one scale per tensor.
    weight_bits: 8, or 4 (codes in [−7, 7], written as ONNX INT4 by export_onnx; Conv / Gemm /
        MatMul hold them two per byte and run the 4-bit kernels, depthwise convs the int8 ones:
        the same integers either way).
    symmetric_activations: activations on a symmetric grid (int8 semantics, stored as uint8
        with zero point 128) instead of asymmetric uint8.
    bias_correction: fold the mean output error per channel into the biases (Nagel et al.).
    equalize: cross-layer equalization first (qengine.equalize, Nagel et al. 2019): consecutive
        Conv/Gemm pairs through ReLU/pools rescaled so each channel's weight range is shared
        between them; function-preserving, it rescues models whose channels have very
        unequal ranges. Pairs through Clip/ReLU6 are left as they are. Then high-bias
        absorption: a channel whose pre-ReLU values never fell below c > 0 on the calibration
        data hands c to the next layer's bias (Gemm or unpadded Conv), shrinking the
        activation int8 covers; exact on inputs like the calibration data.
    smooth_quant: None, or SmoothQuant's α in (0, 1) (0.5 is the paper's): activation
        outliers read by MatMul/Gemm moved into their weights, folded into the LayerNorm or
        layer that makes them (qengine/workflows/smoothquant.py).
    rounding: how weights round to their grid: "nearest", or "adaround" (learned per layer to
        reconstruct each Conv/Gemm/MatMul output on the calibration data; Nagel et al. 2020,
        qengine/workflows/adaround.py), which matters most for 4-bit weights.
    keep_float: node names left in float (mixed precision).
    float_weights: how the weights of Conv/Gemm/MatMul left float are stored: "float32", or
        "float16" (half the bytes in the engine file; widened to float32 when a Session packs
        them, so they cost fp16 rounding — about 1e-3 relative — and no speed).
    observer_options: extra options for the observers, e.g. {"percentile": 99.9}.
    batch_size: calibration batch size for models with a dynamic batch dimension.
    fuse_residual: run each QConv whose output only a residual QAdd reads together with that
        add, as one QConvAdd node (the same bytes, one pass less over memory).
    activation_matmul: a MatMul between two activations (attention's Q·Kᵀ and P·V): "float"
        (the default: a float island between a DequantizeLinear and a QuantizeLinear) or
        "int8" (QMatMul: both sides uint8 per tensor, the products summed exactly; exported
        as QLinearMatMul or a QDQ unit) for integer-only graphs. At attention's sizes int8
        is slower here and no more accurate (docs/reach.md), hence the default.
    rnn: what LSTM / GRU nodes become: "int16" (integer, 16-bit activations, int16 cell;
        the default), "int8" (integer, 8-bit activations, int16 cell), "dynamic" (the dynamic
        int8 kernels inside the static graph) or "float" (left as they are);
        docs/numerics.md "Integer LSTM and GRU".
    """
    method: str = "minmax"
    per_channel: bool = True
    weight_bits: int = 8
    symmetric_activations: bool = False
    bias_correction: bool = False
    equalize: bool = False
    rounding: str = "nearest"
    smooth_quant: float | None = None
    float_weights: str = "float32"
    keep_float: frozenset = field(default_factory=frozenset)
    observer_options: tuple = ()
    batch_size: int | None = None
    fuse_residual: bool = True
    rnn: str = "int16"
    activation_matmul: str = "float"

    def __post_init__(self):
        if self.activation_matmul not in ("float", "int8"):
            raise ConfigError(f"activation_matmul must be 'float' or 'int8', got "
                              f"{self.activation_matmul!r}")
        if self.rnn not in RNN_MODES:
            raise ConfigError(f"rnn must be one of {', '.join(RNN_MODES)}, got {self.rnn!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.smooth_quant is not None and (isinstance(self.smooth_quant, bool) or not
                                              isinstance(self.smooth_quant, (int, float)) or
                                              not 0.0 < self.smooth_quant < 1.0):
            raise ConfigError(f"smooth_quant must be None or a float in (0, 1), got "
                              f"{self.smooth_quant!r}")
        if self.float_weights not in ("float32", "float16"):
            raise ConfigError(f"float_weights must be 'float32' or 'float16', got "
                              f"{self.float_weights!r}")
        if self.rounding not in ("nearest", "adaround"):
            raise ConfigError(f"rounding must be 'nearest' or 'adaround', got {self.rounding!r}")
        if self.weight_bits not in (4, 8) or isinstance(self.weight_bits, bool):
            raise ConfigError(f"weight_bits must be 8 or 4, got {self.weight_bits!r}")
        for name in ("per_channel", "symmetric_activations", "bias_correction", "equalize",
                     "fuse_residual"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        kf = self.keep_float
        if isinstance(kf, str) or not all(isinstance(v, str) for v in kf):
            raise ConfigError(f"keep_float must be a collection of node names, got {kf!r}")
        object.__setattr__(self, "keep_float", frozenset(kf))
        opts = self.observer_options
        opts = tuple(sorted(dict(opts).items())) if opts else ()
        object.__setattr__(self, "observer_options", opts)
        # validates the options now (auto collects histograms and chooses among methods later)
        make_observer(_observed_method(self.method), **dict(opts))
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or
                                            isinstance(self.batch_size, bool) or
                                            self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int, got {self.batch_size!r}")


def _observed_method(method: str) -> str:
    """The observers calibration runs for `method` (auto chooses from histograms)."""
    return "histogram" if method == "auto" else method


# ---------------------------------------------------------------------------- the plan
def prepare_float_graph(model, who: str = "quantize_static") -> Graph:
    """The optimized float graph every later step works on. `model`: a Graph, an
    onnx.ModelProto or the path of an ONNX or engine file (`who` names the caller in errors)."""
    model = as_graph(model, who)
    # weights built at run time (ConstantOfShape, Expand...) must become initializers to be
    # quantized, however large: fold without the size cap the default optimize keeps
    # squeeze-and-excitation blocks stay apart: each of their nodes has an int8 form
    opts = dict(fold_batch_norm=True, fuse_activations=False, fold_max_bytes=1 << 62,
                fuse_squeeze_excite=False)
    g = optimize(model, **opts, fuse_elementwise=False)
    # 1-D convs and pools as 2-D ones (after BatchNorm folding, before elementwise fusion):
    # the int8 kernels are 2-D
    from ..graph.conv1d import as_2d
    return optimize(as_2d(g), **opts)


def observe_shapes(g: Graph, calibration_data, batch_size=None):
    """Record in `g.value_info` the shape of every activation seen on the first calibration
    batch, where static shape inference left it unknown or symbolic (it cannot always see
    through symbolic batch dims). The int8 rewrite needs every activation's rank (for layouts);
    spatial sizes are never baked in (SAME padding is resolved per input at run time).
    Returns the calibration data to use from now on: a one-shot iterator of feed dicts comes
    back with its first batch put in front again."""
    from ..calibration.collect import _split
    from ..calibration.tap import TapSession
    from ..graph.ir import DTYPES, ValueInfo
    tap = TapSession(g, None)
    if isinstance(calibration_data, Mapping):
        with warnings.catch_warnings():     # calibration cuts the data again and warns then
            warnings.simplefilter("ignore")
            feeds = next(iter(_split(tap, calibration_data, batch_size)[0]))
    else:
        it = iter(calibration_data)
        try:
            feeds = next(it)
        except StopIteration:
            raise ConfigError("calibration_data produced no batches") from None
        if it is calibration_data:                       # a generator: keep memory flat
            calibration_data = itertools.chain([feeds], it)
        if not isinstance(feeds, Mapping):
            raise ConfigError(f"calibration batches must be dicts {{input name: array}}, got "
                              f"{type(feeds).__name__}")
    seen = {}
    tap.run_tapped(feeds, lambda name, v: seen.__setitem__(name, (np.shape(v),
                                                                  np.asarray(v).dtype.name)))
    for name, (shape, dtype) in seen.items():
        info = g.value_info.get(name)
        known = info is not None and info.shape is not None and \
            all(isinstance(d, int) for d in info.shape)
        if not known and dtype in DTYPES:
            g.value_info[name] = ValueInfo(name, dtype, tuple(int(d) for d in shape))
    return calibration_data


def _data_inputs(n: Node, is_const=None) -> int:
    """How many leading inputs of n are activations (the rest are weights / shapes / bounds)."""
    rule = rule_for(n, is_const)
    return 1 if rule is None else rule.data_inputs(n, is_const)


#: the plan of which nodes run in int8 (qengine/qdq/insert.py)
_Plan = Plan


def rescaled_float_graph(g: Graph, calibration_data, config: StaticQuantConfig):
    """(g after the function-preserving rescalings `config` asks for — equalization, then
    SmoothQuant —, the calibration data in a form that can be read again when SmoothQuant
    read it)."""
    if config.equalize:
        from ..graph.equalize import equalize
        g = equalize(g)[0]
        calibration_data = reusable(calibration_data)
        g = absorb_biases(g, calibration_data, config.batch_size)[0]
    if config.smooth_quant is not None:
        from .smoothquant import smooth
        calibration_data = reusable(calibration_data)
        g = smooth(g, calibration_data, config.smooth_quant, config.batch_size)[0]
    return g, calibration_data


def absorb_biases(g: Graph, calibration_data, batch_size=None):
    """High-bias absorption (graph/equalize.py) with each channel's minimum taken over the
    calibration data: (graph, [(layer 1, layer 2, channels moved)])."""
    from ..graph.equalize import absorb_high_biases, absorbable_pairs
    values = sorted({n1.outputs[0] for n1, *_ in absorbable_pairs(g)})
    if not values:
        return g, []
    stats = collect_stats(g, calibration_data, values, "minmax_per_channel",
                          observer_options={"axis": 1}, batch_size=batch_size)
    return absorb_high_biases(g, {v: stats[v].range()[0] for v in values})


def activation_matmuls(g: Graph) -> frozenset:
    """Names of the MatMuls between two activations (neither input a constant)."""
    return frozenset(n.name for n in g.nodes if n.op_type == "MatMul" and len(n.inputs) == 2
                     and not any(v in g.initializers for v in n.inputs))


def plan_keep_float(g: Graph, config: StaticQuantConfig) -> frozenset:
    """The nodes the plan leaves float: keep_float, and the activation MatMuls unless
    activation_matmul="int8"."""
    if config.activation_matmul == "int8":
        return config.keep_float
    return config.keep_float | activation_matmuls(g)


def calibrate(g: Graph, calibration_data, config: StaticQuantConfig,
              progress: Callable | None = None, names=None, node_hooks=None) -> dict:
    """{value name: Observer} for the values the int8 graph needs (or `names`); node_hooks:
    see collect_stats (the recurrent layers' observers)."""
    plan = _Plan(g, plan_keep_float(g, config))
    return collect_stats(g, calibration_data, plan.watch if names is None else names,
                         method=_observed_method(config.method), progress=progress,
                         observer_options=dict(config.observer_options),
                         batch_size=config.batch_size, node_hooks=node_hooks)


# ---------------------------------------------------------------------------- rewrite
#: ops static quantization leaves float for lack of an int8 form, with what to use instead
_NOT_YET = ("LSTM", "GRU")


def warn_float_rnns(g: Graph, skip, why: str = "StaticQuantConfig(rnn='float')") -> None:
    """One QuantizationWarning naming the LSTM/GRU nodes (other than `skip`) static mode leaves
    float, why, and what to use instead."""
    rnns = [n for n in g.nodes if n.op_type in _NOT_YET and n.name not in skip]
    if not rnns:
        return
    nbytes = sum(g.initializers[v].nbytes for v in {v for n in rnns for v in n.inputs
                                                     if v in g.initializers})
    names = ", ".join(f"{n.op_type} {n.name!r}" for n in rnns)
    warnings.warn(f"static quantization leaves {names} float ({nbytes / 1024:.1f} KiB of float "
                  f"weights): {why}; integer LSTM/GRU: StaticQuantConfig(rnn='int16' or 'int8') "
                  f"(CLI --rnn); int8 weights with dynamic activations: --mode dynamic or --rnn "
                  f"dynamic (Python: quantize_dynamic, or StaticQuantConfig(rnn='dynamic'))",
                  QuantizationWarning, stacklevel=3)


def activation_qparams(g: Graph, stats: Mapping, config: StaticQuantConfig):
    """v → (scale, uint8 zero point) from v's calibration observer."""
    cache = {}

    def qparams(v):
        if v not in cache:
            obs = stats.get(v)
            if obs is None:
                raise ConfigError(f"no calibration statistics for value {v!r}")
            try:
                p = obs.qparams(bits=8, symmetric=config.symmetric_activations, signed=False)
            except ConfigError as e:            # no finite value seen: name the tensor
                where = ("this model input itself" if v in g.input_names else
                         "the model inputs it is computed from")
                raise ConfigError(f"{v!r} got no finite calibration values, so it has no "
                                  f"range to quantize with ({e}); check the calibration data "
                                  f"for NaN/Inf in {where}") from e
            cache[v] = (float(p.scale), int(p.zero_point))
        return cache[v]
    return qparams


def build_qdq(g: Graph, stats: Mapping, config: StaticQuantConfig,
              weight_codes=None) -> Graph:
    """The QDQ graph of the optimized float graph `g` with calibration `stats`: qengine's
    quantized IR, before lowering (export it with qengine.export_onnx, lower it with
    qengine.qdq.lower)."""
    return insert_qdq(g, Plan(g, plan_keep_float(g, config)),
                      activation_qparams(g, stats, config), config.per_channel,
                      config.weight_bits, weight_codes)


def build_int8(g: Graph, stats: Mapping, config: StaticQuantConfig, *,
               with_layers: bool = False, weight_codes=None):
    """The int8 graph of the optimized float graph `g` with calibration `stats`: its QDQ
    graph (build_qdq), lowered. with_layers=True also returns {QConv/QGemm node: float value
    its output stands for}."""
    q, _, layers = lower_with_layers(build_qdq(g, stats, config, weight_codes),
                                     plan_keep_float(g, config))
    return (q, layers) if with_layers else q


def quantize_static(model, calibration_data, config: StaticQuantConfig | None = None, *,
                    progress: Callable | None = None, return_report: bool = False):
    """Calibrate `model` (a Graph, an onnx.ModelProto, or the path of an ONNX or engine file)
    on `calibration_data` ({input name: samples along axis 0} or an iterable of feed dicts) and
    return the int8 graph.

    A generator of batches is streamed (memory stays flat), except with bias_correction, which
    runs the data again after calibrating: the batches are then read into a list first, so
    they must fit in memory together. So do method="auto", smooth_quant and
    rounding="adaround", which go over the data more than once too.

    return_report=True returns (graph, report): report is method="auto"'s list of AutoChoice
    (qengine.calibration.auto; format_report prints it), [] for the other methods."""
    config = StaticQuantConfig() if config is None else config
    if not isinstance(config, StaticQuantConfig):
        raise ConfigError(f"config must be a StaticQuantConfig, got {type(config).__name__}")
    g, calibration_data = rescaled_float_graph(prepare_float_graph(model), calibration_data,
                                               config)
    missing = config.keep_float - {n.name for n in g.nodes}
    if missing:
        raise ConfigError(f"keep_float names nodes that are not in the graph: {sorted(missing)}")
    flow = [n.name for n in g.nodes if n.subgraphs()]
    if flow:        # their values are only seen inside a nested executor: not observed
        warnings.warn(f"quantize_static leaves the subgraphs of {len(flow)} If / Loop / Scan "
                      f"node(s) in float ({', '.join(map(repr, flow[:3]))}): calibration does "
                      f"not go inside control flow; quantize_dynamic does",
                      QuantizationWarning, stacklevel=2)
    from .static_rnn import lower_rnns, node_hooks, rnn_observers
    rnn_obs = rnn_observers(g, config.keep_float) if config.rnn in ("int16", "int8") else {}
    if config.rnn == "float":
        warn_float_rnns(g, config.keep_float)
    elif config.rnn != "dynamic":
        warn_float_rnns(g, config.keep_float | set(rnn_obs),
                        "clip, non-default activations, input_forget, peepholes or weights "
                        "computed at run time have no integer form")
    if config.bias_correction or config.method == "auto" or config.rounding == "adaround":
        calibration_data = reusable(calibration_data)
    calibration_data = observe_shapes(g, calibration_data, config.batch_size)
    stats = calibrate(g, calibration_data, config, progress, node_hooks=node_hooks(rnn_obs))
    report = []
    if config.method == "auto":
        stats, report = _auto_ranges(g, stats, calibration_data, config)
    codes = None
    if config.rounding == "adaround":
        from ._measure import feed_batches
        from .adaround import adaround_codes
        codes = adaround_codes(g, feed_batches(g, calibration_data, config.batch_size),
                               set(Plan(g, plan_keep_float(g, config)).int8),
                               config.per_channel, config.weight_bits)
    q, layers = build_int8(g, stats, config, with_layers=True, weight_codes=codes)
    if config.bias_correction:
        from .bias_correction import correct_biases
        q = correct_biases(g, q, layers, calibration_data, config.batch_size)
    if config.fuse_residual:                # last: bias correction taps the QConv outputs
        q = fuse_residual_add(q)
    if config.float_weights == "float16":
        q = float16_weights(q)
    if rnn_obs:
        q = lower_rnns(q, rnn_obs, config.rnn)
    elif config.rnn == "dynamic" and any(n.op_type in _NOT_YET for n in q.nodes):
        from .dynamic import DynamicQuantConfig, quantize_dynamic
        keep = config.keep_float & {n.name for n in q.nodes}
        q = quantize_dynamic(q, DynamicQuantConfig(op_types=frozenset(_NOT_YET),
                                                   keep_float=keep))
    return (q, report) if return_report else q


#: float ops whose constant weights (input 1) may be stored in float16
_FP16_WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def float16_weights(g: Graph, nodes=None) -> Graph:
    """g with the float32 weights of its float Conv/Gemm/MatMul (those named in `nodes`, or
    all) stored as float16 (the ops widen them to float32 when they pack). Weights beyond
    float16's range stay float32, so do weights float16 would store with less than 60 dB SQNR
    (tiny ones, in its subnormals: normal float16 values give 70+ dB), and so do weights
    another kind of node also reads."""
    readers = g.consumers()
    fp16_max = float(np.finfo(np.float16).max)
    out = g.copy()
    for n in g.nodes:
        if n.op_type not in _FP16_WEIGHT_OPS or len(n.inputs) < 2 or \
                (nodes is not None and n.name not in nodes):
            continue
        w = out.initializers.get(n.inputs[1])
        if w is None or w.dtype != np.float32 or not all(
                r.op_type in _FP16_WEIGHT_OPS for r in readers[n.inputs[1]]) or \
                not np.all(np.abs(w) <= fp16_max) or _db_fp16(w) < 60.0:
            continue
        out.initializers[n.inputs[1]] = w.astype(np.float16)
    return out


def _db_fp16(w: np.ndarray) -> float:
    w64 = w.astype(np.float64)
    noise = float(np.sum((w.astype(np.float16).astype(np.float64) - w64) ** 2))
    return math.inf if noise == 0.0 else 10.0 * math.log10(float(np.sum(w64 * w64)) / noise)


def _auto_ranges(g: Graph, stats: Mapping, calibration_data, config: StaticQuantConfig):
    """method="auto": the histograms' candidate ranges judged at the readers' outputs."""
    from ..calibration.auto import choose_ranges
    from ._measure import feed_batches
    hists = {v: o for v, o in stats.items() if o.method == "histogram"}
    chosen, report = choose_ranges(
        g, hists, feed_batches(g, calibration_data, config.batch_size),
        lambda ranges: build_int8(g, {**stats, **ranges}, config),
        symmetric=config.symmetric_activations)
    return {**stats, **chosen}, report
