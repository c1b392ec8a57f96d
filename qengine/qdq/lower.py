"""Lowering: a QDQ graph → qengine's integer graph, one node unit at a time.

A node unit is an op whose activation inputs arrive through DequantizeLinear (DQ) and whose
output leaves through QuantizeLinear (Q) — optionally through a Relu/Clip first, which becomes
the integer op's output clamp. Each unit whose op has a rule (qengine/qdq/rules.py) that accepts
it becomes that integer op, reading and writing uint8 tensors at the Q/DQ qparams; everything
else stays float, and the Q/DQ around it become QuantizeU8/DequantizeU8 (or stay the ONNX ops
where the kernels have no such type, e.g. int16) exactly where values cross. Each float unit is
reported with its reason (`lower(g, report=True)`), never silently.

Quantized tensors (a Q's output) are held as uint8 inside the integer graph: int8 activations
are the same grid shifted by 128 (x_u8 = x_s8 + 128 with zero point z + 128, exact), so one set
of u8×s8 kernels runs both of ONNX Runtime's activation types. 4-D tensors are NHWC inside
integer regions (the kernels' layout) and NCHW outside, as the graph's users see them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import QuantizationWarning
from ..graph.ir import Graph, Node
from .names import Names
from .rules import bias_vector, clamp_of, rule_for

_U8_SHIFT = {"uint8": 0, "int8": 128}       # zero point in the kernels' uint8 grid
#: largest |bias| / (s_x·s_w) a float bias may have: half of int32, the other half for the sum
#: of products (K·255·127 < 2^30 up to K = 33000)
BIAS_LIMIT = 2.0 ** 30


@dataclass(frozen=True)
class FloatUnit:
    """A node the lowering left in float, and why."""
    node: str
    op_type: str
    reason: str


@dataclass(frozen=True)
class _QV:
    """A quantized activation tensor: the output of a QuantizeLinear with constant qparams."""
    name: str
    src: str | None              # the float value it quantizes (None: a graph input)
    node: Node | None            # the Q node
    scale: np.ndarray
    zero_point: np.ndarray | None
    dtype: str
    axis: int
    #: a constant integer Clip between the Q and its DQs (PyTorch's reduce_range observers
    #: export Q → Clip(0, 127) → DQ): the tensor's range on its own grid, and that node
    qmin: int | None = None
    qmax: int | None = None
    clip: Node | None = None

    @property
    def unsupported(self) -> str | None:
        """Why the integer kernels cannot take this tensor, or None."""
        if self.dtype not in _U8_SHIFT:
            return (f"{self.dtype} activations ({self.name!r}): no {self.dtype} kernels yet, "
                    f"the unit runs in float")
        if self.per_channel:
            z = self.zero_point
            if self.axis != 1 or self.scale.ndim != 1 or \
                    (z is not None and z.size > 1 and np.any(z != z.reshape(-1)[0])):
                return (f"per-axis activation qparams ({self.name!r}) other than per channel "
                        f"with one zero point: the kernels cannot take them")
            if self.qmin is not None or self.qmax is not None:
                return f"a narrowed per-channel tensor ({self.name!r})"
        return None

    @property
    def per_channel(self) -> bool:
        """Scales per channel (NNCF quantizes depthwise convs' inputs so): only convs can write
        such a tensor and only depthwise convs read it (docs/qdq.md)."""
        return self.scale.size != 1

    def key(self):
        z = None if self.zero_point is None else (self.zero_point.dtype.name,
                                                  self.zero_point.tobytes())
        return (self.src, self.scale.tobytes(), z, self.dtype, self.axis, self.qmin, self.qmax)


@dataclass(frozen=True)
class _Weight:
    """A constant through DequantizeLinear: integer values with their qparams."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int
    block_size: int

    def dequantized(self) -> np.ndarray:
        """ONNX DequantizeLinear of the constant, in float32."""
        from ..ops.qdq import broadcast_param
        axis = self.axis % max(self.q.ndim, 1) if self.q.ndim else 0
        s = broadcast_param(self.scale, self.q.shape, axis, self.block_size, "scale")
        d = self.q.astype(np.float32)
        if self.zero_point is not None:
            d = d - broadcast_param(self.zero_point, self.q.shape, axis, self.block_size,
                                    "zero point").astype(np.float32)
        return np.asarray(d * s.astype(np.float32), np.float32)    # 0-d stays an array


class Unit:
    """What a rule sees of a node: constants, ranks, and (when lowering) its quantized tensors.
    With `low=None` it views a float graph (static PTQ deciding where Q/DQ go)."""

    def __init__(self, g: Graph, node: Node, low: "_Lowering | None" = None):
        self.g, self.node, self.low = g, node, low
        self.qins: list = []
        self.qout = None
        self.clamp: Node | None = None

    def has_input(self, i) -> bool:
        return len(self.node.inputs) > i and bool(self.node.inputs[i])

    def const(self, i):
        """Input i's constant value in float (dequantized when it comes through DQ), or None."""
        if not self.has_input(i):
            return None
        v = self.node.inputs[i]
        if self.low is not None and v in self.low.consts:
            return self.low.consts[v].dequantized()
        return self.g.initializers.get(v)

    def const_name(self, v) -> bool:
        return v in self.g.initializers or (self.low is not None and v in self.low.consts)

    def is_quantized(self, v) -> bool:
        return self.low is not None and v in self.low.dq

    def rank(self, v):
        info = self.g.value_info.get(v) or next((i for i in self.g.inputs if i.name == v), None)
        if info is not None and info.shape is not None:
            return len(info.shape)
        if v in self.g.initializers:
            return self.g.initializers[v].ndim
        if self.low is not None and v in self.low.dq:       # a DQ output: its Q's input's rank
            src = self.low.qvs[self.low.dq[v]].src
            return None if src is None else self.rank(src)
        return None

    def qin(self, i):
        return self.qins[i]


def _const(g, name):
    return g.initializers.get(name) if name else None


class _Lowering:
    def __init__(self, g: Graph, keep_float=frozenset()):
        self.g = g
        self.keep_float = frozenset(keep_float)
        self.out = g.copy()
        self.out.nodes = []
        self.out.value_info = {}
        self.inits = self.out.initializers
        self.consumers = g.consumers()
        self.graph_outputs = set(g.output_names)
        self.fresh = Names(g).fresh
        self.float_ok = set(g.input_names) | set(g.initializers)
        self.q = {}                 # (quantized tensor, layout) -> uint8 value name
        self.stem = {}              # quantized tensor -> float name its uint8 values are named by
        self.skip = set()           # absorbed Relu/Clip nodes
        self.report: list[FloatUnit] = []
        self.layer_outputs = {}     # QConv/QGemm name -> float value (DQ output) it stands for
        self.qvs: dict[str, _QV] = {}
        self.alias: dict[str, str] = {}       # Q output -> the first Q output with its qparams
        self.dq: dict[str, str] = {}         # DQ output -> quantized tensor (canonical)
        self.dq_nodes: dict[str, Node] = {}
        self.consts: dict[str, _Weight] = {}     # DQ output of a constant -> it
        self._scan()

    # ---- reading the QDQ structure ------------------------------------------------------------
    def _scan(self):
        g = self.g
        canon = {}
        alias = self.alias
        for n in g.nodes:
            if n.op_type == "QuantizeLinear":
                s, z = _const(g, n.inputs[1]), _const(g, n.inputs[2] if len(n.inputs) > 2 else "")
                if s is None or (len(n.inputs) > 2 and n.inputs[2] and z is None) or \
                        n.attrs.get("block_size", 0):
                    continue                      # run-time or blocked qparams: a float op
                dtype = z.dtype.name if z is not None else \
                    {3: "int8", 4: "uint16", 5: "int16"}.get(n.attrs.get("output_dtype", 0),
                                                              "uint8")
                qv = _QV(n.outputs[0], n.inputs[0], n, np.asarray(s, np.float32).reshape(-1)
                         if s.size != 1 else np.asarray(s, np.float32).reshape(()),
                         z, dtype, n.attrs.get("axis", 1))
                # two Q nodes on one value with the same qparams are one tensor
                first = canon.setdefault(qv.key(), qv.name)
                alias[qv.name] = first
                self.qvs[qv.name] = qv
            elif n.op_type == "Clip" and n.inputs and n.inputs[0] in self.qvs:
                qv = self._clipped(self.qvs[n.inputs[0]], n)
                if qv is not None:
                    alias[qv.name] = canon.setdefault(qv.key(), qv.name)
                    self.qvs[qv.name] = qv
            elif n.op_type == "DequantizeLinear":
                x = n.inputs[0]
                s, z = _const(g, n.inputs[1]), _const(g, n.inputs[2] if len(n.inputs) > 2 else "")
                if s is None or (len(n.inputs) > 2 and n.inputs[2] and z is None):
                    continue
                if x in g.initializers:
                    self.consts[n.outputs[0]] = _Weight(g.initializers[x], np.asarray(s), z,
                                                         n.attrs.get("axis", 1),
                                                         n.attrs.get("block_size", 0))
                elif x in self.qvs and self._same_qparams(self.qvs[x], s, z, n):
                    self.dq[n.outputs[0]] = alias[x]
                    self.dq_nodes[n.outputs[0]] = n
                    self.stem.setdefault(alias[x], n.outputs[0])
        for v in self.dq.values():
            self.stem.setdefault(v, v)

    def _clipped(self, qv, clip):
        """The quantized tensor a constant integer Clip of Q output qv makes, else None."""
        bounds = []
        for i, default in ((1, None), (2, None)):
            v = clip.inputs[i] if len(clip.inputs) > i else ""
            c = _const(self.g, v)
            if v and (c is None or c.size != 1 or c.dtype.kind not in "iu"):
                return None
            bounds.append(default if not v else int(c.reshape(-1)[0]))
        lo, hi = qv.qmin, qv.qmax
        if bounds[0] is not None:
            lo = bounds[0] if lo is None else max(lo, bounds[0])
        if bounds[1] is not None:
            hi = bounds[1] if hi is None else min(hi, bounds[1])
        return _QV(clip.outputs[0], qv.src, qv.node, qv.scale, qv.zero_point, qv.dtype, qv.axis,
                   lo, hi, clip)

    def range_u8(self, qv):
        """(lo, hi) of quantized tensor qv on the kernels' uint8 grid."""
        info = self.qvs[qv]
        shift = _U8_SHIFT[info.dtype]
        lo = 0 if info.qmin is None else max(0, info.qmin + shift)
        hi = 255 if info.qmax is None else min(255, info.qmax + shift)
        return lo, hi

    def narrowed(self, qv):
        return self.range_u8(qv) != (0, 255)

    @staticmethod
    def _same_qparams(qv, s, z, n):
        zq = qv.zero_point
        return (np.array_equal(np.asarray(s, np.float32).reshape(-1), qv.scale.reshape(-1)) and
                (zq is None and z is None or (zq is not None and z is not None and
                                              zq.dtype == z.dtype and np.array_equal(zq, z)))
                and (qv.scale.size == 1 or n.attrs.get("axis", 1) == qv.axis))

    # ---- names, initializers, qparams ---------------------------------------------------------

    def init(self, base, value):
        name = self.fresh(base)
        self.inits[name] = value
        return name

    def emit(self, op, name, inputs, outputs, **attrs):
        self.out.nodes.append(Node(op, name, tuple(inputs), tuple(outputs), attrs))

    def qp(self, qv):
        """(scale, zero point on the kernels' uint8 grid) of a quantized tensor."""
        info = self.qvs[qv]
        z = 0 if info.zero_point is None else int(info.zero_point.reshape(-1)[0])
        return float(info.scale.reshape(-1)[0]), z + _U8_SHIFT[info.dtype]

    def xy(self, u):
        (s, z), (ys, yz) = self.qp(u.qin(0)), self.qp(u.qout)
        return {"x_scale": s, "x_zero_point": z, "y_scale": ys, "y_zero_point": yz}

    def clamp_attrs(self, u):
        """The output clamp: an absorbed Relu/Clip, and a narrowed output range (the bounds are
        on the output grid, so the kernels' clamp lands on them exactly)."""
        kind, lo, hi = ("", -np.inf, np.inf) if u.clamp is None else clamp_of(self.g, u.clamp)
        if kind == "relu":
            kind, lo, hi = "clip", 0.0, np.inf
        if self.narrowed(u.qout):
            (s, z), (qlo, qhi) = self.qp(u.qout), self.range_u8(u.qout)
            kind, lo, hi = "clip", max(lo, s * (qlo - z)), min(hi, s * (qhi - z))
        if kind == "":
            return {"activation": ""}
        if kind == "clip" and hi == np.inf:
            return {"activation": "relu"} if lo == 0.0 else \
                {"activation": "clip", "activation_min": lo,
                 "activation_max": float(np.finfo(np.float32).max)}
        return {"activation": kind, "activation_min": lo, "activation_max": hi}

    def layout_of(self, qv, rank):
        """The layout an elementwise op should use: where the uint8 tensor already is."""
        for lay in ("nhwc", "plain"):
            if (qv, lay) in self.q:
                return lay
        return "nhwc" if rank == 4 else "plain"

    # ---- weights and biases -------------------------------------------------------------------
    def weights(self, u, i, out_axis, alpha=1.0):
        """(int8 [Cout, ...] initializer, float32 [Cout] scale initializer) of input i, or the
        reason the kernels cannot take it."""
        w = self.consts.get(u.node.inputs[i])
        if w is None:
            return "its weights are float (no DequantizeLinear of an int8 constant)"
        if w.q.dtype != np.int8:
            return f"its weights are {w.q.dtype}: the kernels take int8 weights"
        if w.zero_point is not None and np.any(w.zero_point != 0):
            return "its weights have a nonzero zero point: the kernels take symmetric weights"
        if w.block_size:
            return "its weights have blocked scales: the kernels take one scale per channel"
        cout = w.q.shape[out_axis]
        s = np.asarray(w.scale, np.float32)
        if s.size == 1:
            scale = np.full(cout, s.reshape(-1)[0], np.float32)
        elif s.ndim == 1 and s.size == cout and w.axis % w.q.ndim == out_axis:
            scale = s
        else:
            return (f"its weight scales run along axis {w.axis}, not the output channels "
                    f"(axis {out_axis})")
        if alpha != 1.0:
            scale = (scale * np.float32(alpha)).astype(np.float32)
        q = np.ascontiguousarray(np.moveaxis(w.q, out_axis, 0))
        return (self.init(f"{u.node.name}.W_int8", q), self.init(f"{u.node.name}.W_scale", scale))

    def bias(self, u, i, qx, scale_name, beta=1.0):
        """The bias input of an integer conv/gemm: int32 when it comes through DQ at exactly
        s_x·s_w (then it is used as is), else float (quantized at s_x·s_w by the layer)."""
        v = u.node.inputs[i]
        ws = self.inits[scale_name]
        w = self.consts.get(v)
        if w is not None:
            if w.q.dtype == np.int32 and beta == 1.0 and \
                    (w.zero_point is None or not np.any(w.zero_point)):
                want = (np.float32(self.qp(qx)[0]) * ws).astype(np.float32)
                s = np.broadcast_to(np.asarray(w.scale, np.float32).reshape(-1), want.shape)
                b = bias_vector(w.q, ws.shape[0]) if w.q.ndim <= 1 else None
                if b is not None and np.array_equal(s, want):
                    return self.init(f"{u.node.name}.B_int32", w.q.reshape(-1).astype(np.int32))
            b = w.dequantized()
        else:
            b = self.g.initializers[v]
        b = bias_vector(b, ws.shape[0]) * np.float32(beta)
        bscale = np.float64(np.float32(self.qp(qx)[0]) * ws)
        if np.any(np.abs(b.astype(np.float64)) / bscale > BIAS_LIMIT):
            # the layer would saturate it silently: the unit stays float instead
            return (f"its bias does not fit int32 at s_x·s_w (s_x = {self.qp(qx)[0]:.3g}): "
                    f"the activations' scale is too small for these weights")
        return self.init(f"{u.node.name}.bias", np.ascontiguousarray(b, np.float32))

    # ---- moving values between float and uint8 -------------------------------------------------
    def get_float(self, v):
        if not v or v in self.float_ok:
            return v
        if v in self.consts:
            self.inits[v] = self.consts[v].dequantized()
        elif v in self.dq:
            qv = self.dq[v]
            info = self.qvs[qv]
            if info.unsupported is None:
                lay, src = next(((lay, nm) for (t, lay), nm in self.q.items() if t == qv),
                                (None, None))
                if src is None or (info.per_channel and lay != "plain"):
                    lay, src = "plain", self.get_q(qv, "plain")
                s, z = self.qp(qv)
                if info.per_channel:                 # per channel: the ONNX op on the bytes
                    self.emit("DequantizeLinear", self.fresh(f"{v}.dequantize"),
                              [src, *self.channel_qparams(qv)], [v], axis=1)
                else:
                    self.emit("DequantizeU8", self.fresh(f"{v}.dequantize"), [src], [v],
                              scale=s, zero_point=z, from_nhwc=int(lay == "nhwc"))
            else:                                    # the ONNX ops, run in float
                d = self.dq_nodes[v]
                self.emit(d.op_type, d.name, [self.get_raw(d.inputs[0]), *d.inputs[1:]],
                          d.outputs, **d.attrs)
        elif v in self.qvs:
            return self.get_raw(v)
        else:
            raise AssertionError(f"value {v!r} has no float producer")  # a lowering bug
        self.float_ok.add(v)
        return v

    def get_raw(self, qv):
        """A Q output as the ONNX integer tensor itself (a float op reads it directly)."""
        if qv in self.float_ok:
            return qv
        info = self.qvs[qv]
        if any(t == self.alias[qv] for t, _ in self.q):   # made by an integer op: via float
            d = self.dq_of(self.alias[qv])
            self.emit("QuantizeLinear", self.fresh(f"{qv}.requantize"),
                      [self.get_float(d), *info.node.inputs[1:]], [qv], **info.node.attrs)
        else:
            n = info.node
            if info.clip is not None:           # the Q, then its integer Clip
                self.get_raw(info.clip.inputs[0])
                c = info.clip
                self.emit(c.op_type, c.name, c.inputs, c.outputs, **c.attrs)
            else:
                self.emit(n.op_type, n.name, [self.get_float(n.inputs[0]), *n.inputs[1:]],
                          n.outputs, **n.attrs)
        self.float_ok.add(qv)
        return qv

    def dq_of(self, qv):
        """A float name for quantized tensor qv's values (its DQ output, or a new one)."""
        d = next((d for d, t in self.dq.items() if t == qv), None)
        if d is None:
            d = self.fresh(f"{qv}.dequantized")
            self.dq[d] = qv
        return d

    def get_q(self, qv, layout):
        if (qv, layout) in self.q:
            return self.q[(qv, layout)]
        stem = self.stem.get(qv, qv)
        other = "plain" if layout == "nhwc" else "nhwc"
        if (qv, other) in self.q:                          # uint8 layout change
            perm = [0, 2, 3, 1] if layout == "nhwc" else [0, 3, 1, 2]
            name = self.fresh(f"{stem}.u8_{layout}")
            self.emit("Transpose", self.fresh(f"{stem}.to_{layout}"), [self.q[(qv, other)]],
                      [name], perm=perm)
        else:
            info = self.qvs[qv]
            src = info.src if info.src is not None else self.dq_of(qv)
            s, z = self.qp(qv)
            name = self.fresh(f"{stem}.u8" + ("_nhwc" if layout == "nhwc" else ""))
            x = self.get_float(src)
            if self.narrowed(qv):       # clip(round(r) + z, lo, hi) = round(clip(r, ..)) + z
                lo, hi = self.range_u8(qv)
                bounds = [self.init(f"{stem}.min", np.asarray(np.float32(s * (lo - z)))),
                          self.init(f"{stem}.max", np.asarray(np.float32(s * (hi - z))))]
                clipped = self.fresh(f"{stem}.clipped")
                self.emit("Clip", self.fresh(f"{stem}.clip"), [x, *bounds], [clipped])
                x = clipped
            if info.per_channel:                # per channel: the ONNX op, then the layout
                plain = name if layout == "plain" else self.fresh(f"{stem}.u8")
                self.emit("QuantizeLinear", self.fresh(f"{stem}.quantize"),
                          [x, *self.channel_qparams(qv)], [plain], axis=1)
                if layout == "nhwc":
                    self.q[(qv, "plain")] = plain
                    self.emit("Transpose", self.fresh(f"{stem}.to_nhwc"), [plain], [name],
                              perm=[0, 2, 3, 1])
            else:
                self.emit("QuantizeU8", self.fresh(f"{stem}.quantize"), [x],
                          [name], scale=s, zero_point=z, to_nhwc=int(layout == "nhwc"))
        self.q[(qv, layout)] = name
        return name

    def channel_qparams(self, qv):
        """(scale, uint8 zero point) initializers of per-channel tensor qv on the u8 grid."""
        info = self.qvs[qv]
        z = self.qp(qv)[1]
        return (self.init(f"{qv}.scales", np.asarray(info.scale, np.float32)),
                self.init(f"{qv}.zero_points", np.full(info.scale.size, z, np.uint8)))

    def channel_fold(self, u, w, depthwise):
        """A conv reading or writing per-channel activations: the per-channel scales go into
        the per-channel multiplier, which the epilogue has anyway — M[c] = s_x[c]·s_w[c] /
        s_y[c], written as W_scale'[c] with a nominal x (or y) scale of 1 — and the bias is
        given in int32 at the true s_x[c]·s_w[c]. Returns (x_scale, y_scale, W_scale name, bias
        name, clamp attrs) or the reason it cannot."""
        n = u.node
        ws = self.inits[w[1]].astype(np.float64)
        cout = ws.shape[0]
        xi, yi = self.qvs[u.qin(0)], self.qvs[u.qout]
        if xi.per_channel and not depthwise:
            return ("its input has per-channel scales, which only a depthwise conv can fold "
                    "(a regular conv sums over channels)")
        sx = np.broadcast_to(np.asarray(xi.scale, np.float64).reshape(-1), (cout,))
        sy = np.broadcast_to(np.asarray(yi.scale, np.float64).reshape(-1), (cout,))
        x_nom = 1.0 if xi.per_channel else float(sx[0])
        y_nom = 1.0 if yi.per_channel else float(sy[0])
        # M = float32(x_nom·W_scale'/y_nom) in float64 lands on float32(s_x·s_w/s_y) (or next
        # to it: within one output step)
        ws_new = (sx * ws / sy * y_nom / x_nom).astype(np.float32)
        acc_scale = (sx * ws).astype(np.float32)
        bias = None
        if u.has_input(2):
            v = n.inputs[2]
            c = self.consts.get(v)
            if c is not None and c.q.dtype == np.int32 and not (c.zero_point is not None and
                                                                np.any(c.zero_point)) and \
                    np.array_equal(np.broadcast_to(np.asarray(c.scale, np.float32).reshape(-1),
                                                   (cout,)), acc_scale):
                bq = c.q.reshape(-1).astype(np.int64)
            else:
                b = c.dequantized() if c is not None else self.g.initializers[v]
                bq = np.rint(np.asarray(b, np.float64).reshape(-1) / acc_scale.astype(np.float64))
            if np.any(np.abs(bq) > BIAS_LIMIT):
                return "its bias does not fit int32 at s_x·s_w"
            bias = self.init(f"{n.name}.B_int32", bq.astype(np.int32))
        clamp = self.clamp_attrs(u) if not yi.per_channel else self._channel_clamp(u, sy)
        if isinstance(clamp, str):
            return clamp
        return x_nom, y_nom, self.init(f"{n.name}.W_scale_folded", ws_new), bias, clamp

    def _channel_clamp(self, u, sy):
        """A clamp on a per-channel output: one uint8 range for every channel, or a reason."""
        kind, lo, hi = ("", -np.inf, np.inf) if u.clamp is None else clamp_of(self.g, u.clamp)
        z = self.qp(u.qout)[1]
        if kind == "relu":
            lo = 0.0
        with np.errstate(divide="ignore", over="ignore"):
            qlo = np.rint(lo / sy) + z if np.isfinite(lo) else np.full(sy.shape, -np.inf)
            qhi = np.rint(hi / sy) + z if np.isfinite(hi) else np.full(sy.shape, np.inf)
        if np.all(qhi >= 255) and (np.all(qlo <= 0) or (lo == 0.0)):
            return {"activation": "relu"} if lo == 0.0 and z > 0 else {"activation": ""}
        return "a clamp inside the uint8 range of a per-channel output (one range per channel)"

    def put_q(self, qv, layout):
        name = self.fresh(f"{self.stem.get(qv, qv)}.u8" + ("_nhwc" if layout == "nhwc" else ""))
        self.q[(qv, layout)] = name
        return name

    # ---- units ----------------------------------------------------------------------------------
    def _output(self, n, rule):
        """(quantized output tensor, absorbed clamp node) of node n's unit, or a reason."""
        y = n.outputs[0]
        if any(o and self.consumers.get(o) or o in self.graph_outputs for o in n.outputs[1:]):
            return "a second output is read"
        cands = []
        users = self.consumers.get(y, [])
        if rule.absorbs_clamp and len(users) == 1 and y not in self.graph_outputs and \
                clamp_of(self.g, users[0]) is not None:
            cands.append((users[0].outputs[0], users[0]))
        cands.append((y, None))
        reason = None
        for final, clamp in cands:
            users = self.consumers.get(final, [])
            qs = {self.alias[self._through_clip(u.outputs[0])] for u in users
                  if u.op_type == "QuantizeLinear" and u.outputs[0] in self.qvs}
            floats = [u for u in users if u.op_type != "QuantizeLinear" or
                      u.outputs[0] not in self.qvs]
            if final in self.graph_outputs:
                reason = "its output is a graph output (read in float)"
            elif not users or floats and not qs:
                reason = "its output is not quantized (no QuantizeLinear after it)"
            elif floats:
                reason = f"its output is also read in float (by {floats[0].name!r})"
            elif len(qs) > 1:
                reason = "its output is quantized twice with different qparams"
            else:
                qv = qs.pop()
                bad = self.qvs[qv].unsupported
                if bad is None:
                    return qv, clamp
                reason = bad
        return reason

    def _through_clip(self, qv):
        """A Q output read only by the integer Clip that narrows it: that Clip's tensor."""
        users = self.consumers.get(qv, [])
        if len(users) == 1 and users[0].op_type == "Clip" and users[0].outputs[0] in self.qvs:
            return users[0].outputs[0]
        return qv

    def lower_node(self, n):
        if n.name in self.keep_float:
            return "kept float (keep_float)"
        u = Unit(self.g, n, self)
        rule = rule_for(n, u.const_name)
        if rule is None:
            return f"no int8 rule for {n.op_type}"
        for v in n.inputs[:rule.data_inputs(n, u.const_name)]:
            qv = self.dq.get(v)
            if qv is None:
                return f"input {v!r} is not quantized (no DequantizeLinear)"
            bad = self.qvs[qv].unsupported
            if bad is not None:
                return bad
            u.qins.append(qv)
        reason = rule.refuse(u)
        if reason is not None:
            return reason
        if any(self.qvs[q].per_channel for q in u.qins) and not rule.channel_scales:
            return "its input has per-channel scales (only a depthwise conv can fold them)"
        out = self._output(n, rule)
        if isinstance(out, str) and rule.float_output and not any(
                o and (o in self.graph_outputs or self.consumers.get(o)) for o in n.outputs[1:]):
            reason = rule.emit_float_output(u, self)     # quantized in, float out
            if reason is None:
                self.float_ok.add(n.outputs[0])
                return None
        if isinstance(out, str):
            return out
        u.qout, u.clamp = out
        if self.qvs[u.qout].per_channel and not rule.channel_scales:
            return "its output has per-channel scales (only a conv's epilogue can write them)"
        requant = rule.same_qparams and self.qp(u.qout) != self.qp(u.qins[0])
        if requant:                 # move the bytes at the input's qparams, then requantize
            out, u.qout = u.qout, u.qins[0] + ".moved"
            self.qvs[u.qout] = self.qvs[u.qins[0]]
            self.stem[u.qout] = self.stem.get(out, out)
        reason = rule.emit(u, self)
        if requant and reason is None:
            (lay, name), = [(lay, nm) for (t, lay), nm in self.q.items() if t == u.qout]
            (si, zi), (so, zo) = self.qp(u.qout), self.qp(out)
            new = self.fresh(f"{name}.requantized")
            self.emit("QLut", self.fresh(f"{name}.requantize"), [name], [new], function="clip",
                      alpha=-3.0e38, beta=3.0e38, x_scale=si, x_zero_point=zi, y_scale=so,
                      y_zero_point=zo)
            self.q[(out, lay)] = new
            u.qout = out
        if reason is None and self.narrowed(u.qout) and not rule.absorbs_clamp and not (
                rule.same_qparams and not requant and
                self.range_u8(u.qins[0])[0] >= self.range_u8(u.qout)[0]
                and self.range_u8(u.qins[0])[1] <= self.range_u8(u.qout)[1]):
            self._clamp_output(u.qout)
        if reason is None:
            if u.clamp is not None:
                self.skip.add(u.clamp.name)
            if n.op_type in ("Conv", "Gemm", "MatMul"):
                self.layer_outputs[n.name] = self.dq_of(u.qout)
        return reason

    def _clamp_output(self, qv):
        """Clamp a just-made uint8 tensor to qv's narrowed range: a table lookup, for ops
        without an output clamp of their own."""
        (lay, name), = [(lay, nm) for (t, lay), nm in self.q.items() if t == qv]
        s, z = self.qp(qv)
        lo, hi = self.range_u8(qv)
        out = self.fresh(f"{name}.clamped")
        self.emit("QLut", self.fresh(f"{name}.clamp"), [name], [out], function="clip",
                  alpha=s * (lo - z), beta=s * (hi - z), x_scale=s, x_zero_point=z, y_scale=s,
                  y_zero_point=z)
        self.q[(qv, lay)] = out

    def touches_qdq(self, n):
        return any(v in self.dq or v in self.consts for v in n.inputs) or any(
            u.op_type == "QuantizeLinear" for o in n.outputs for u in self.consumers.get(o, []))

    def run(self) -> Graph:
        for n in self.g.nodes:
            if n.name in self.skip:
                continue
            if n.op_type in ("QuantizeLinear", "Clip") and n.outputs[0] in self.qvs or \
                    n.op_type == "DequantizeLinear" and (n.outputs[0] in self.dq or
                                                         n.outputs[0] in self.consts):
                continue                              # materialized when someone needs them
            reason = self.lower_node(n)
            if reason is None:
                continue
            if self.touches_qdq(n):
                self.report.append(FloatUnit(n.name, n.op_type, reason))
            self.emit(n.op_type, n.name, [self.get_float(v) for v in n.inputs], n.outputs,
                      **n.attrs)
            self.float_ok.update(o for o in n.outputs if o)
        for v in self.g.output_names:
            self.get_float(v)
        # float values keep their names, and so what shape inference knew of them
        produced = {o for n in self.out.nodes for o in n.outputs}
        self.out.value_info = {k: v for k, v in self.g.value_info.items()
                               if k in produced and k in self.float_ok}
        self.out.toposort()
        used = {v for n in self.out.nodes for v in n.inputs}
        for k in set(self.inits) - used:
            if k not in self.g.output_names:
                del self.inits[k]
        self.out.verify()
        return self.out


def lower(g: Graph, *, report: bool = False, warn: bool = True, keep_float=frozenset()):
    """The integer graph of QDQ graph `g`. report=True also returns the float units
    ([FloatUnit(node, op_type, reason)]); warn=True warns once when int16 activations force
    float islands (no int16 kernels yet); nodes named in keep_float stay float."""
    low = _Lowering(g, keep_float)
    out = low.run()
    if warn:
        wide = sorted({f.node for f in low.report if "int16" in f.reason or "uint16" in f.reason})
        if wide:
            warnings.warn(f"16-bit activations run in float islands (no 16-bit kernels yet): "
                          f"{', '.join(wide[:8])}{' ...' if len(wide) > 8 else ''}",
                          QuantizationWarning, stacklevel=2)
    return (out, low.report) if report else out


def lower_with_layers(g: Graph, keep_float=frozenset()):
    """(integer graph, report, {QConv/QGemm node: float value its output stands for})."""
    low = _Lowering(g, keep_float)
    out = low.run()
    return out, low.report, low.layer_outputs


def has_qdq(g: Graph) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.nodes)
