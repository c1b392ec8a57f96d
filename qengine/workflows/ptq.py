"""Static post-training quantization: calibrate a float graph, then rewrite it integer-only.

    g8 = quantize_static(model, {"input": samples}, StaticQuantConfig(method="entropy"))

1. The float graph is optimized (constant folding, BatchNormalization folded into Conv/Gemm).
2. Conv / Gemm / MatMul / Add followed by Relu or Clip absorb it as an output clamp.
3. Calibration runs the float graph over the samples and observes every activation that enters
   or leaves an int8 op (`qengine.calibration`: min-max, moving average, entropy, percentile,
   MSE); observers give each value its (scale, zero point): asymmetric uint8 by default,
   symmetric (uint8 with zero point 128, i.e. int8 shifted) as an option.
4. The rewrite walks the nodes in order. Ops with an int8 kernel (qengine/ops/integer
   .py) run on uint8; 4-D values are NHWC inside int8 regions. Everything else — Softmax, LRN,
   ops the kernels do not cover, nodes named in `keep_float` — stays float: QuantizeU8 /
   DequantizeU8 are inserted where values cross between the two, once per value. Data-movement
   ops (MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze) keep their input's qparams.
   Weights become int8 (symmetric per output channel, narrow range, or per tensor); biases stay
   float and are quantized when the Session is built, at s_x·s_w.
5. (optional bias correction, then) residual adds are fused: a QConv whose output only a QAdd
   reads runs with the add in its epilogue, as one QConvAdd node (graph/fusion.py
   `fuse_residual_add`); its output bytes are the unfused pair's. `fuse_residual=False` keeps
   the pair apart (every conv output stays a value of the graph, e.g. to tap it).

`calibrate` and `build_int8` are the two halves, so mixed-precision searches (workflows/
sensitivity.py) and bias correction (workflows/bias_correction.py) reuse one calibration.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..calibration import collect_stats, make_observer
from ..calibration.collect import reusable
from ..errors import ConfigError, QuantizationWarning
from ..graph.fusion import _activation_of, fuse_residual_add
from ..graph.ir import Graph, Node
from ..graph.passes import optimize
from ..model_files import as_graph
from ..quant import choose_qparams
from .dynamic import _bias_vector

METHODS = ("minmax", "moving_average", "entropy", "percentile", "mse")
_ELEMENTWISE_LUT = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSigmoid": "hardsigmoid",
                    "HardSwish": "hardswish", "LeakyRelu": "leakyrelu", "Relu": "relu",
                    "Clip": "clip"}
_PASS_THROUGH = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
#: every ONNX op the static rewrite can run in int8 (each under the conditions `_accepts`
#: checks); docs/supported_ops.md is generated from it
STATIC_INT8_OPS = ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                   "Add", "Mul", "Sum", "Concat", *_ELEMENTWISE_LUT, *_PASS_THROUGH)


@dataclass(frozen=True)
class StaticQuantConfig:
    """Options of static quantization.

    method: calibration method (minmax, moving_average, entropy, percentile, mse).
    per_channel: weights symmetric int8 per output channel (default) or one scale per tensor.
    symmetric_activations: activations on a symmetric grid (int8 semantics, stored as uint8
        with zero point 128) instead of asymmetric uint8.
    bias_correction: fold the mean output error per channel into the biases (Nagel et al.).
    keep_float: node names left in float (mixed precision).
    observer_options: extra options for the observers, e.g. {"percentile": 99.9}.
    batch_size: calibration batch size for models with a dynamic batch dimension.
    fuse_residual: run each QConv whose output only a residual QAdd reads together with that
        add, as one QConvAdd node (the same bytes, one pass less over memory).
    """
    method: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = False
    bias_correction: bool = False
    keep_float: frozenset = field(default_factory=frozenset)
    observer_options: tuple = ()
    batch_size: int | None = None
    fuse_residual: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("per_channel", "symmetric_activations", "bias_correction", "fuse_residual"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        kf = self.keep_float
        if isinstance(kf, str) or not all(isinstance(v, str) for v in kf):
            raise ConfigError(f"keep_float must be a collection of node names, got {kf!r}")
        object.__setattr__(self, "keep_float", frozenset(kf))
        opts = self.observer_options
        opts = tuple(sorted(dict(opts).items())) if opts else ()
        object.__setattr__(self, "observer_options", opts)
        make_observer(self.method, **dict(opts))          # validates the options now
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or
                                            isinstance(self.batch_size, bool) or
                                            self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int, got {self.batch_size!r}")


# ---------------------------------------------------------------------------- the plan
def prepare_float_graph(model, who: str = "quantize_static") -> Graph:
    """The optimized float graph every later step works on. `model`: a Graph, an
    onnx.ModelProto or the path of an ONNX or engine file (`who` names the caller in errors)."""
    model = as_graph(model, who)
    # weights built at run time (ConstantOfShape, Expand...) must become initializers to be
    # quantized, however large: fold without the size cap the default optimize keeps
    # squeeze-and-excitation blocks stay apart: each of their nodes has an int8 form
    return optimize(model, fold_batch_norm=True, fuse_activations=False,
                    fold_max_bytes=1 << 62, fuse_squeeze_excite=False)


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


def _shape(g: Graph, name: str):
    info = g.value_info.get(name) or next((v for v in g.inputs if v.name == name), None)
    return None if info is None else info.shape


def _rank(g: Graph, name: str):
    s = _shape(g, name)
    return None if s is None else len(s)


def _clamp_of(g: Graph, node: Node):
    """(activation, lo, hi) when `node` is a Relu / Clip with constant finite bounds (what the
    float fusion pass accepts, graph/fusion.py), else None."""
    act = _activation_of(g, node) if node.op_type in ("Relu", "Clip") else None
    if act is None:
        return None
    return ("relu", 0.0, 0.0) if act[0] == "Relu" else ("clip", *act[1])


class _Plan:
    """Which nodes run in int8, which clamps they absorb, and which values need observers."""

    def __init__(self, g: Graph, keep_float: frozenset):
        self.g = g
        self.int8: dict[str, str] = {}          # node name -> handler kind
        self.absorbed: dict[str, Node] = {}     # producer name -> the Relu/Clip it absorbs
        self.skip: set[str] = set()             # absorbed activation nodes
        consumers = g.consumers()
        outputs = set(g.output_names)
        for n in g.nodes:
            if n.name in keep_float:
                continue
            kind = _accepts(g, n)
            if kind is None:
                continue
            self.int8[n.name] = kind
            if kind in ("conv", "gemm", "matmul", "binary"):
                users = consumers.get(n.outputs[0], [])
                if len(users) == 1 and n.outputs[0] not in outputs and \
                        users[0].name not in keep_float and _clamp_of(g, users[0]) is not None:
                    self.absorbed[n.name] = users[0]
                    self.skip.add(users[0].name)
        # values whose qparams come from an observer: what int8 nodes read and write
        watch = []
        for n in g.nodes:
            if n.name not in self.int8:
                continue
            for v in n.inputs[:_data_inputs(n)]:
                if v and v not in g.initializers:
                    watch.append(v)
            if self.int8[n.name] != "pass":
                watch.append(self.output_of(n))
        self.watch = list(dict.fromkeys(watch))

    def output_of(self, n: Node) -> str:
        a = self.absorbed.get(n.name)
        return a.outputs[0] if a is not None else n.outputs[0]


def _data_inputs(n: Node) -> int:
    """How many leading inputs are activations (the rest are weights / shapes / bounds)."""
    if n.op_type in ("Add", "Mul", "Sum"):
        return 2
    if n.op_type == "Concat":
        return len(n.inputs)
    return 1


def _consts(g, n, idx):
    return [g.initializers.get(n.inputs[i]) if len(n.inputs) > i and n.inputs[i] else None
            for i in idx]


def is_float_value(g: Graph, v: str) -> bool:
    """False for a value known to be integer or bool (shape arithmetic: Shape → Gather →
    Unsqueeze → Concat in the TorchScript exports); True when float or not known."""
    if v in g.initializers:
        return g.initializers[v].dtype.kind == "f"
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return info is None or np.dtype(info.dtype).kind == "f"


def _accepts(g: Graph, n: Node):
    """The int8 handler kind for node `n`, or None when it must stay float."""
    op, a = n.op_type, n.attrs
    if op not in STATIC_INT8_OPS and op != "ElementwiseChain":   # a chain fused by the passes
        return None
    if not all(is_float_value(g, v) for v in n.inputs[:_data_inputs(n)] if v):
        return None                  # an integer side computation: nothing to quantize
    if op == "Conv":
        (w,) = _consts(g, n, [1])
        if w is None or w.ndim != 4 or a.get("fused_activation"):
            return None
        if len(n.inputs) > 2 and n.inputs[2] and n.inputs[2] not in g.initializers:
            return None
        return "conv"
    if op == "Gemm":
        b, = _consts(g, n, [1])
        if a.get("transA", 0) or b is None or b.ndim != 2 or a.get("fused_activation"):
            return None
        if len(n.inputs) > 2 and n.inputs[2]:
            c = g.initializers.get(n.inputs[2])
            if c is None or _bias_vector(c, b.shape[0] if a.get("transB", 0) else b.shape[1]) \
                    is None:
                return None
        return "gemm"
    if op == "MatMul":
        b, = _consts(g, n, [1])
        if b is None or b.ndim != 2 or n.inputs[0] in g.initializers:
            return None
        return "matmul"
    if op in ("MaxPool", "AveragePool"):
        if len(n.outputs) > 1 and n.outputs[1] or _rank(g, n.inputs[0]) != 4:
            return None
        if a.get("storage_order", 0):
            return None
        return "pool"
    if op == "GlobalAveragePool":
        return "gap" if _rank(g, n.inputs[0]) == 4 else None
    if op in ("Add", "Mul") or (op == "Sum" and len(n.inputs) == 2):
        if any(v in g.initializers or not v for v in n.inputs[:2]):
            return None
        r0, r1 = _rank(g, n.inputs[0]), _rank(g, n.inputs[1])
        return "binary" if r0 is not None and r0 == r1 else None
    if op == "Concat":
        if any(v in g.initializers for v in n.inputs):
            return None
        ranks = {_rank(g, v) for v in n.inputs}
        return "concat" if len(ranks) == 1 and None not in ranks else None
    if op in _ELEMENTWISE_LUT or op == "ElementwiseChain":
        if op == "Clip" and _clamp_of(g, n) is None:
            return None
        return "lut"
    if op in _PASS_THROUGH:
        return "pass"
    return None


# ---------------------------------------------------------------------------- calibration
def calibrate(g: Graph, calibration_data, config: StaticQuantConfig,
              progress: Callable | None = None, names=None) -> dict:
    """{value name: Observer} for the values the int8 graph needs (or `names`)."""
    plan = _Plan(g, config.keep_float)
    return collect_stats(g, calibration_data, plan.watch if names is None else names,
                         method=config.method, progress=progress,
                         observer_options=dict(config.observer_options),
                         batch_size=config.batch_size)


# ---------------------------------------------------------------------------- rewrite
class _Builder:
    def __init__(self, g: Graph, stats: Mapping, config: StaticQuantConfig, plan: _Plan):
        self.g, self.stats, self.cfg, self.plan = g, stats, config, plan
        self.out = g.copy()
        self.out.nodes = []
        self.out.value_info = {}
        self.inits = self.out.initializers
        self.float_ok = set(g.input_names) | set(g.initializers)
        self.q = {}                 # (value, layout) -> name of the uint8 value
        self.qparams = {}           # value -> (scale, zero point)
        self.used_names = {v for n in g.nodes for v in (*n.inputs, *n.outputs)} | \
            set(g.initializers) | set(g.input_names)
        self.layer_outputs = {}     # int8 node name -> float value its output stands for

    # ---- names and qparams ---------------------------------------------------------------
    def fresh(self, base):
        name, i = base, 1
        while name in self.used_names:
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    def init(self, base, value):
        name = self.fresh(base)
        self.inits[name] = value
        return name

    def qp(self, v):
        if v not in self.qparams:
            obs = self.stats.get(v)
            if obs is None:
                raise ConfigError(f"no calibration statistics for value {v!r}")
            sym = self.cfg.symmetric_activations
            try:
                p = obs.qparams(bits=8, symmetric=sym, signed=False)
            except ConfigError as e:            # no finite value seen: name the tensor
                where = ("this model input itself" if v in self.g.input_names else
                         "the model inputs it is computed from")
                raise ConfigError(f"{v!r} got no finite calibration values, so it has no "
                                  f"range to quantize with ({e}); check the calibration data "
                                  f"for NaN/Inf in {where}") from e
            self.qparams[v] = (float(p.scale), int(p.zero_point))
        return self.qparams[v]

    # ---- moving values between float and uint8 ---------------------------------------------
    def emit(self, op, name, inputs, outputs, **attrs):
        self.out.nodes.append(Node(op, name, tuple(inputs), tuple(outputs), attrs))

    def get_float(self, v):
        if v in self.float_ok or not v:
            return v
        layout, src = next(((lay, nm) for (val, lay), nm in self.q.items() if val == v))
        s, z = self.qp(v)
        self.emit("DequantizeU8", self.fresh(f"{v}.dequantize"), [src], [v], scale=s,
                  zero_point=z, from_nhwc=int(layout == "nhwc"))
        self.float_ok.add(v)
        return v

    def get_q(self, v, layout):
        if (v, layout) in self.q:
            return self.q[(v, layout)]
        other = "plain" if layout == "nhwc" else "nhwc"
        if (v, other) in self.q:                          # uint8 layout change
            perm = [0, 2, 3, 1] if layout == "nhwc" else [0, 3, 1, 2]
            name = self.fresh(f"{v}.u8_{layout}")
            self.emit("Transpose", self.fresh(f"{v}.to_{layout}"), [self.q[(v, other)]], [name],
                      perm=perm)
        else:
            s, z = self.qp(v)
            name = self.fresh(f"{v}.u8" + ("_nhwc" if layout == "nhwc" else ""))
            self.emit("QuantizeU8", self.fresh(f"{v}.quantize"), [self.get_float(v)], [name],
                      scale=s, zero_point=z, to_nhwc=int(layout == "nhwc"))
        self.q[(v, layout)] = name
        return name

    def put_q(self, v, layout, qparams=None):
        name = self.fresh(f"{v}.u8" + ("_nhwc" if layout == "nhwc" else ""))
        self.q[(v, layout)] = name
        if qparams is not None:
            self.qparams[v] = qparams
        return name

    def layout_of(self, v):
        """The layout an elementwise op should use for v: where its uint8 version already is."""
        for lay in ("nhwc", "plain"):
            if (v, lay) in self.q:
                return lay
        return "nhwc" if _rank(self.g, v) == 4 else "plain"

    # ---- weights ------------------------------------------------------------------------
    def weights(self, w, base):
        """float [Cout, ...] → (int8 init name, scale init name)."""
        w = np.asarray(w, np.float32)
        flat = w.reshape(w.shape[0], -1)
        if self.cfg.per_channel:
            qp = choose_qparams(flat.min(axis=1), flat.max(axis=1), symmetric=True, axis=0)
            scale = np.asarray(qp.scale, np.float32)
            q = qp.quantize(flat).data
        else:
            qp = choose_qparams(float(flat.min()), float(flat.max()), symmetric=True)
            scale = np.full(w.shape[0], np.float32(qp.scale), np.float32)
            q = qp.quantize(flat).data
        return (self.init(f"{base}.W_int8", q.reshape(w.shape)),
                self.init(f"{base}.W_scale", scale))

    def act_attrs(self, n):
        a = self.plan.absorbed.get(n.name)
        if a is None:
            return {"activation": ""}
        kind, lo, hi = _clamp_of(self.g, a)
        return {"activation": kind, "activation_min": lo, "activation_max": hi}

    # ---- the walk -----------------------------------------------------------------------
    def run(self) -> Graph:
        for n in self.g.nodes:
            if n.name in self.plan.skip:
                continue
            kind = self.plan.int8.get(n.name)
            if kind is None or not getattr(self, f"_{kind}")(n):
                self.emit(n.op_type, n.name, [self.get_float(v) for v in n.inputs], n.outputs,
                          **n.attrs)
                self.float_ok.update(o for o in n.outputs if o)
        for v in self.g.output_names:
            self.get_float(v)
        self.out.toposort()
        unused = set(self.inits) - {v for n in self.out.nodes for v in n.inputs}
        for k in unused:
            del self.inits[k]
        self.out.verify()
        return self.out

    def _xy(self, n, x_in):
        s, z = self.qp(x_in)
        ys, yz = self.qp(self.plan.output_of(n))
        return {"x_scale": s, "x_zero_point": z, "y_scale": ys, "y_zero_point": yz}

    def _conv(self, n):
        g, a = self.g, n.attrs
        w = g.initializers[n.inputs[1]]
        wq, ws = self.weights(w, n.name)
        ins = [self.get_q(n.inputs[0], "nhwc"), wq, ws]
        if len(n.inputs) > 2 and n.inputs[2]:
            ins.append(n.inputs[2])
        out = self.plan.output_of(n)
        self.layer_outputs[n.name] = out
        self.emit("QConv", n.name, ins, [self.put_q(out, "nhwc")],
                  kernel_shape=list(w.shape[2:]), **_window(a),
                  group=a.get("group", 1), **self._xy(n, n.inputs[0]), **self.act_attrs(n))
        return True

    def _linear(self, n, w_nk, bias):
        wq, ws = self.weights(w_nk, n.name)
        ins = [self.get_q(n.inputs[0], "plain"), wq, ws]
        if bias is not None:
            ins.append(self.init(f"{n.name}.bias", np.ascontiguousarray(bias, np.float32)))
        out = self.plan.output_of(n)
        self.layer_outputs[n.name] = out
        self.emit("QGemm", n.name, ins, [self.put_q(out, "plain")],
                  **self._xy(n, n.inputs[0]), **self.act_attrs(n))
        return True

    def _gemm(self, n):
        a, B = n.attrs, self.g.initializers[n.inputs[1]]
        w = (B if a.get("transB", 0) else B.T) * np.float32(a.get("alpha", 1.0))
        bias = None
        if len(n.inputs) > 2 and n.inputs[2]:
            bias = _bias_vector(self.g.initializers[n.inputs[2]], w.shape[0]) * \
                np.float32(a.get("beta", 1.0))
        return self._linear(n, w, bias)

    def _matmul(self, n):
        return self._linear(n, self.g.initializers[n.inputs[1]].T, None)

    def _pool(self, n):
        a = n.attrs
        k = a.get("kernel_shape")
        if k is None or len(k) != 2:
            return False
        common = dict(kernel_shape=list(k), ceil_mode=a.get("ceil_mode", 0), **_window(a))
        if n.op_type == "MaxPool" and not self.quantized(n.inputs[0]):
            return False              # quantizing only for a max would just add error
        x = self.get_q(n.inputs[0], "nhwc")
        if n.op_type == "MaxPool":
            out = self.put_q(n.outputs[0], "nhwc", self.qp(n.inputs[0]))
            self.emit("QMaxPool", n.name, [x], [out], **common)
        else:
            out = self.put_q(n.outputs[0], "nhwc")
            self.emit("QAveragePool", n.name, [x], [out],
                      count_include_pad=a.get("count_include_pad", 0), **common,
                      **self._xy(n, n.inputs[0]))
        return True

    def _gap(self, n):
        x = self.get_q(n.inputs[0], "nhwc")
        self.emit("QGlobalAveragePool", n.name, [x], [self.put_q(n.outputs[0], "nhwc")],
                  **self._xy(n, n.inputs[0]))
        return True

    def _binary(self, n):
        lay = "nhwc" if _rank(self.g, n.inputs[0]) == 4 else "plain"
        a, b = (self.get_q(v, lay) for v in n.inputs[:2])
        (sa, za), (sb, zb) = self.qp(n.inputs[0]), self.qp(n.inputs[1])
        out = self.plan.output_of(n)
        ys, yz = self.qp(out)
        self.emit("QMul" if n.op_type == "Mul" else "QAdd", n.name, [a, b],
                  [self.put_q(out, lay)], a_scale=sa, a_zero_point=za, b_scale=sb,
                  b_zero_point=zb, y_scale=ys, y_zero_point=yz, **self.act_attrs(n))
        return True

    def _concat(self, n):
        rank = _rank(self.g, n.inputs[0])
        axis = n.attrs.get("axis", 1)
        axis = axis + rank if axis < 0 else axis
        lay = "nhwc" if rank == 4 else "plain"
        if lay == "nhwc":
            axis = {0: 0, 1: 3, 2: 1, 3: 2}[axis]
        ins = [self.get_q(v, lay) for v in n.inputs]
        qps = [self.qp(v) for v in n.inputs]
        ys, yz = self.qp(n.outputs[0])
        self.emit("QConcat", n.name, ins, [self.put_q(n.outputs[0], lay)], axis=axis,
                  scales=[q[0] for q in qps], zero_points=[q[1] for q in qps], y_scale=ys,
                  y_zero_point=yz)
        return True

    def _lut(self, n):
        if n.op_type == "ElementwiseChain":
            # a fused activation (qengine/graph/chains.py) after an int8 op: one table lookup;
            # after a float op it stays one compiled float pass (quantizing just for it would
            # add two conversions)
            if not self.quantized(n.inputs[0]):
                return False
            lay = self.layout_of(n.inputs[0])
            x = self.get_q(n.inputs[0], lay)
            prog = {k: n.attrs[k] for k in ("steps", "registers", "constants")}
            self.emit("QLut", n.name, [x], [self.put_q(n.outputs[0], lay)], function="chain",
                      **prog, **self._xy(n, n.inputs[0]))
            return True
        fn = _ELEMENTWISE_LUT[n.op_type]
        attrs = {}
        if fn == "clip":
            _, lo, hi = _clamp_of(self.g, n)
            attrs = {"alpha": lo, "beta": hi}
        elif n.op_type == "LeakyRelu":
            attrs = {"alpha": float(n.attrs.get("alpha", 0.01))}
        elif n.op_type == "HardSigmoid":
            attrs = {"alpha": float(n.attrs.get("alpha", 0.2)),
                     "beta": float(n.attrs.get("beta", 0.5))}
        if fn in ("relu", "clip") and not self.quantized(n.inputs[0]):
            return False              # a clamp on a float value is exact in float
        lay = self.layout_of(n.inputs[0])
        x = self.get_q(n.inputs[0], lay)
        self.emit("QLut", n.name, [x], [self.put_q(n.outputs[0], lay)], function=fn,
                  **attrs, **self._xy(n, n.inputs[0]))
        return True

    def quantized(self, v):
        """True when v exists as uint8 already (an int8 op made it)."""
        return any(k[0] == v for k in self.q)

    def _pass(self, n):
        v = n.inputs[0]
        if v in self.float_ok or not self.quantized(v):
            return False                      # its input is float: stay float
        x = self.get_q(v, "plain")
        rest = list(n.inputs[1:])
        if any(r and r not in self.g.initializers and r not in self.float_ok for r in rest):
            return False
        self.emit(n.op_type, n.name, [x, *rest], [self.put_q(n.outputs[0], "plain",
                                                             self.qp(v))], **n.attrs)
        return True


def _window(a) -> dict:
    """The window attributes an int8 conv/pool node carries over. auto_pad stays symbolic: the
    op resolves SAME pads for each input's size (qengine/ops/integer.py). It is
    written only when set, so engine files without it stay readable by older versions (which
    refuse the attribute rather than run with wrong pads)."""
    auto = a.get("auto_pad", "NOTSET")
    return dict(strides=list(a.get("strides") or [1, 1]), pads=list(a.get("pads") or [0] * 4),
                dilations=list(a.get("dilations") or [1, 1]),
                **({} if auto == "NOTSET" else {"auto_pad": auto}))


#: ops static quantization leaves float for lack of an int8 form, with what to use instead
_NOT_YET = ("LSTM", "GRU")


def warn_float_rnns(g: Graph, keep_float) -> None:
    """One QuantizationWarning naming the LSTM/GRU nodes static mode leaves float, and what
    to use instead. Static int8 recurrent layers would need calibrated gate and state ranges
    (int16 state, per the design notes); the dynamic kernels run them in int8 today."""
    rnns = [n for n in g.nodes if n.op_type in _NOT_YET and n.name not in keep_float]
    if not rnns:
        return
    nbytes = sum(g.initializers[v].nbytes for v in {v for n in rnns for v in n.inputs
                                                     if v in g.initializers})
    names = ", ".join(f"{n.op_type} {n.name!r}" for n in rnns)
    warnings.warn(f"static int8 LSTM/GRU is not supported yet: {names} "
                  f"{'stays' if len(rnns) == 1 else 'stay'} float ({nbytes / 1024:.1f} KiB of "
                  f"float weights); for int8 LSTM/GRU weights use --mode dynamic (Python: "
                  f"quantize_dynamic), or quantize the static result again with --mode dynamic "
                  f"to keep the other layers static (Python: quantize_dynamic(result, "
                  f"DynamicQuantConfig(op_types={{'LSTM', 'GRU'}})))", QuantizationWarning,
                  stacklevel=3)


def build_int8(g: Graph, stats: Mapping, config: StaticQuantConfig, *,
               with_layers: bool = False):
    """Rewrite the optimized float graph `g` into its int8 form using calibration `stats`.
    with_layers=True also returns {QConv/QGemm node: float value its output stands for}."""
    b = _Builder(g, stats, config, _Plan(g, config.keep_float))
    out = b.run()
    return (out, b.layer_outputs) if with_layers else out


def quantize_static(model, calibration_data, config: StaticQuantConfig | None = None, *,
                    progress: Callable | None = None) -> Graph:
    """Calibrate `model` (a Graph, an onnx.ModelProto, or the path of an ONNX or engine file)
    on `calibration_data` ({input name: samples along axis 0} or an iterable of feed dicts) and
    return the int8 graph.

    A generator of batches is streamed (memory stays flat), except with bias_correction, which
    runs the data again after calibrating: the batches are then read into a list first, so
    they must fit in memory together."""
    config = StaticQuantConfig() if config is None else config
    if not isinstance(config, StaticQuantConfig):
        raise ConfigError(f"config must be a StaticQuantConfig, got {type(config).__name__}")
    g = prepare_float_graph(model)
    missing = config.keep_float - {n.name for n in g.nodes}
    if missing:
        raise ConfigError(f"keep_float names nodes that are not in the graph: {sorted(missing)}")
    warn_float_rnns(g, config.keep_float)
    if config.bias_correction:
        calibration_data = reusable(calibration_data)
    calibration_data = observe_shapes(g, calibration_data, config.batch_size)
    stats = calibrate(g, calibration_data, config, progress)
    q, layers = build_int8(g, stats, config, with_layers=True)
    if config.bias_correction:
        from .bias_correction import correct_biases
        q = correct_biases(g, q, layers, calibration_data, config.batch_size)
    if config.fuse_residual:                # last: bias correction taps the QConv outputs
        q = fuse_residual_add(q)
    return q
