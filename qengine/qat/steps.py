"""The steps of a prepared QAT model: one torch module per engine operator.

Each step has two forwards. Training: the float op on fake-quantized weights and inputs, its
output fake-quantized (straight-through gradients). Eval: what the integer engine computes —
the same integer codes, exact integer sums (convolutions in float64, where every product and
partial sum of int8 × int8 codes is an exact integer; GEMMs in float32 where the sums are
provably below 2^24), then docs/numerics.md's requantize in float32 with the multipliers, bias
quantization, clamps and lookup tables the engine's own layers compute
(qengine/quantized/params.py, qengine/quantized/elementwise.py). So `qat.convert(model)` run by
qengine gives eval-mode model(x) bit for bit (tests/test_qat.py).

Each step also writes itself into a QDQ graph (`emit`), the form qengine's one lowering
(qengine/qdq/lower.py) and the ONNX export read.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..quantized.elementwise import activation_table
from ..quantized.params import (avgpool_multipliers, bias_q, clamp_range, multipliers,
                                rescale_multiplier)
from .quantizers import ActQuant, WeightQuant, codes

QMIN, QMAX = 0, 255
#: ONNX name, engine LUT function and its attributes of the elementwise activations
LUTS = {"hardswish": ("HardSwish", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
        "hardsigmoid": ("HardSigmoid", {"alpha": float(np.float32(1 / 6)), "beta": 0.5}),
        "leakyrelu": ("LeakyRelu", {}), "relu": ("Relu", {})}
_TORCH_FN = {"hardswish": F.hardswish, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "hardsigmoid": F.hardsigmoid, "relu": F.relu}


def _requantize(acc, m, z, lo, hi):
    """numerics.md epilogue (b) on exact sums `acc` (float64): codes q − z_y of
    rhe(clamp(float32(acc)·M, lo − z_y, hi − z_y))."""
    v = acc.float() * m
    return torch.round(torch.clamp(v, lo - z, hi - z))


def _clamp_tuple(act):
    """The engine layers' activation argument of an absorbed Relu / Clip."""
    if act is None:
        return None
    return "relu" if act[0] == "relu" else ("clip", act[1], act[2])


def _apply_act(y, act):
    if act is None:
        return y
    return F.relu(y) if act[0] == "relu" else torch.clamp(y, act[1], act[2])


class Step(nn.Module):
    """quantized=False: a keep_float step, run and emitted in float."""
    produces_qparams = True      # False: the output keeps its input's qparams (moves bytes)

    def __init__(self, name: str, quantized: bool, act_options: dict):
        super().__init__()
        self.name, self.quantized = name, quantized
        self.out = ActQuant(**act_options) if quantized and self.produces_qparams else None

    def output(self, y):
        """y through the output quantizer (fake quant in training); y itself in float."""
        return self.out(y) if self.out is not None else y


class Weighted(Step):
    """Conv1d / Conv2d / Linear, with the BatchNorm after it folded (bn: None when there is none
    or prepare folded it already, fold_bn=False) and a Relu /
    ReLU6 / Hardtanh after it absorbed as the output clamp — as the engine runs them."""

    def __init__(self, name, module, bn, act, quantized, act_options, weight_options):
        super().__init__(name, quantized, act_options)
        self.module, self.bn, self.act = module, bn, act
        self.register_buffer("bn_frozen", torch.tensor(False))
        w = module.weight
        self.wq = WeightQuant(channels=w.shape[0], reduction=w[0].numel(), **weight_options)

    @property
    def kind(self):
        return {nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Linear: "linear"}[type(self.module)]

    def _op(self, x, w, b=None):
        m = self.module
        if self.kind == "linear":
            return F.linear(x, w, b)
        fn = F.conv1d if self.kind == "conv1d" else F.conv2d
        return fn(x, w, b, m.stride, m.padding, m.dilation, m.groups)

    def folded(self):
        """(weights, bias) as deployed: BatchNorm folded with its running statistics."""
        m, bn = self.module, self.bn
        b = m.bias if m.bias is not None else torch.zeros(m.weight.shape[0])
        if bn is None:
            return m.weight, b
        f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shape = (-1,) + (1,) * (m.weight.ndim - 1)
        return m.weight * f.reshape(shape), bn.bias + (b - bn.running_mean) * f

    def forward(self, x, qin):
        if not self.quantized:
            if self.bn is not None and self.training:
                y = self.bn(self._op(x, self.module.weight, self.module.bias))
            else:
                y = self._op(x, *self.folded())
            return _apply_act(y, self.act)
        if not self.training:
            return self.exact(x, qin[0])
        bn = self.bn
        if bn is not None and not bool(self.bn_frozen):
            # batch statistics in training (Jacob et al. 2018, Krishnamoorthi 2018 §2.5): the
            # conv runs on the weights folded with the running std, the result is scaled back
            # and batch-normalized, so BN still learns from batch statistics
            f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (self.module.weight.ndim - 1)
            y = self._op(x, self.wq(self.module.weight * f.reshape(shape)))
            y = y / f.reshape((1, -1) + (1,) * (y.ndim - 2))
            if self.module.bias is not None:
                y = y + self.module.bias.reshape((1, -1) + (1,) * (y.ndim - 2))
            y = bn(y)
        else:
            w, b = self.folded()
            y = self._op(x, self.wq(w), b)
        return self.output(_apply_act(y, self.act))

    def integer_weights(self, sx: float):
        """(int8 codes, float32 [Cout] weight scales, int32 bias) the engine stores."""
        with torch.no_grad():
            w, b = self.folded()
            q, s = self.wq.quantize(w)
        sw = np.broadcast_to(s.numpy().reshape(-1), (w.shape[0],)).astype(np.float32)
        return q.numpy().astype(np.int8), sw, bias_q(b.detach().numpy().astype(np.float32),
                                                      sx, sw)

    def exact(self, x, xq: ActQuant):
        sx, zx = xq.qparams()
        sy, zy = self.out.qparams()
        q, sw, bq = self.integer_weights(sx)
        k = codes(x.detach(), sx, zx, QMIN, QMAX)
        # exact integer sums: a float32 GEMM is exact while K·255·127 < 2^24 (every partial
        # sum an integer below 2^24); convolutions always run in float64, because a float32
        # convolution may be computed by Winograd transforms (oneDNN), which are not exact
        exact32 = self.kind == "linear" and q[0].size * 255 * 127 < 2 ** 24
        dt = torch.float32 if exact32 else torch.float64
        acc = self._op(k.to(dt), torch.from_numpy(q).to(dt)).double()
        acc = acc + torch.from_numpy(bq.astype(np.float64)).reshape((1, -1) + (1,) *
                                                                    (acc.ndim - 2))
        m = torch.from_numpy(multipliers(sx, sw, sy)).reshape((1, -1) + (1,) * (acc.ndim - 2))
        lo, hi = clamp_range(_clamp_tuple(self.act), sy, zy)
        return _requantize(acc, m, zy, lo, hi) * sy

    def emit(self, b, ins, out):
        x, m = ins[0], self.module
        if self.quantized:
            sx = b.qparams_of(x)[0]
            q, sw, bq = self.integer_weights(sx)
            w = q[:, :, None, :] if self.kind == "conv1d" else q
            w = b.dq_const(f"{self.name}.weight", w, sw, axis=0)
            bias = b.dq_const(f"{self.name}.bias", bq, (np.float32(sx) * sw).astype(np.float32),
                              axis=0)
        else:
            with torch.no_grad():
                w, bias = (t.detach().numpy().astype(np.float32) for t in self.folded())
            w = b.init(f"{self.name}.weight", w[:, :, None, :] if self.kind == "conv1d" else w)
            bias = b.init(f"{self.name}.bias", bias)
        final = out
        if self.kind == "conv1d":    # a 2-D conv over a height of 1: the int8 kernels' form
            x = b.move("Unsqueeze", f"{self.name}.to_2d", x, [b.axes([2])], unsqueeze=2)
            out = b.fresh(f"{final}.h1")
            b.shape_of(out, final, unsqueeze=2)
        y = b.fresh(f"{out}.pre") if self.act is not None else b.result(out, self)
        if self.kind == "linear":
            b.node("Gemm", self.name, [x, w, bias], [y], like=out, transB=1)
        else:
            b.node("Conv", self.name, [x, w, bias], [y], like=out,
                   **_window(m, 2 if self.kind == "conv2d" else 1))
        if self.act is not None:
            b.activation(self.act, f"{self.name}.act", y, b.result(out, self), like=out)
        b.finish(out, self)
        if final != out:
            b.move("Squeeze", f"{self.name}.to_1d", out, [b.axes([2])], dest=final)


def _window(m, dims):
    """ONNX Conv attributes of a torch conv module; a Conv1d gets a height-1 kernel."""
    def two(v):
        return list(v) if dims == 2 else [1, v[0]]
    pad = list(m.padding) if dims == 2 else [0, m.padding[0]]
    return dict(strides=two(m.stride), dilations=two(m.dilation), group=m.groups,
                pads=pad + pad, kernel_shape=two(m.kernel_size))


class Add(Step):
    def __init__(self, name, act, quantized, act_options):
        super().__init__(name, quantized, act_options)
        self.act = act

    def forward(self, a, c, qin):
        if self.quantized and not self.training:
            (sa, za), (sc, zc), (sy, zy) = qin[0].qparams(), qin[1].qparams(), \
                self.out.qparams()
            # QAdd: float32(a − z_a)·M_a + float32(b − z_b)·M_b, each rounded to float32
            v = codes(a, sa, za, QMIN, QMAX) * float(rescale_multiplier(sa, sy)) + \
                codes(c, sc, zc, QMIN, QMAX) * float(rescale_multiplier(sc, sy))
            lo, hi = clamp_range(_clamp_tuple(self.act), sy, zy)
            return torch.round(torch.clamp(v, lo - zy, hi - zy)) * sy
        y = _apply_act(a + c, self.act)
        return self.output(y)

    def emit(self, b, ins, out):
        y = b.fresh(f"{out}.pre") if self.act is not None else b.result(out, self)
        b.node("Add", self.name, list(ins), [y], like=out)
        if self.act is not None:
            b.activation(self.act, f"{self.name}.act", y, b.result(out, self), like=out)
        b.finish(out, self)


class Cat(Step):
    def __init__(self, name, dim, quantized, act_options):
        super().__init__(name, quantized, act_options)
        self.dim = dim

    def forward(self, *xs, qin):
        if self.quantized and not self.training:
            sy, zy = self.out.qparams()
            parts = []
            for x, xq in zip(xs, qin):
                s, z = xq.qparams()
                v = codes(x, s, z, QMIN, QMAX) * float(rescale_multiplier(s, sy))
                parts.append(torch.round(torch.clamp(v, -zy, QMAX - zy)))
            return torch.cat(parts, self.dim) * sy
        y = torch.cat(xs, self.dim)
        return self.output(y)

    def emit(self, b, ins, out):
        b.node("Concat", self.name, list(ins), [b.result(out, self)], like=out, axis=self.dim)
        b.finish(out, self)


class MaxPool(Step):
    produces_qparams = False

    def __init__(self, name, module, quantized, act_options):
        super().__init__(name, quantized, act_options)
        self.module = module

    def forward(self, x, qin):
        return self.module(x)      # max of codes = code of the max: exact

    def emit(self, b, ins, out):
        m = self.module
        k, s, p, d = (_pair(v) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding,
                                           m.dilation))
        b.node("MaxPool", self.name, [ins[0]], [b.result(out, self)], like=out, kernel_shape=k,
               strides=s, pads=p + p, dilations=d, ceil_mode=int(m.ceil_mode))
        b.finish(out, self, same_as=ins[0])


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [int(v), int(v)]


class AvgPool(Step):
    """AvgPool2d, or a global average (AdaptiveAvgPool2d(1), mean over H and W)."""

    def __init__(self, name, module, quantized, act_options, keepdim=True):
        super().__init__(name, quantized, act_options)
        self.module, self.keepdim = module, keepdim     # module None: global

    def _float(self, x):
        if self.module is None:
            return x.mean((2, 3), keepdim=self.keepdim)
        return self.module(x)

    def forward(self, x, qin):
        if not (self.quantized and not self.training):
            y = self._float(x)
            return self.output(y)
        (sx, zx), (sy, zy) = qin[0].qparams(), self.out.qparams()
        k = codes(x, sx, zx, QMIN, QMAX).double()
        if self.module is None:
            hw = x.shape[2] * x.shape[3]
            acc = k.sum((2, 3), keepdim=self.keepdim)
            m = float(avgpool_multipliers(sx, sy, hw)[hw])
        else:
            mod = self.module
            kh, kw = _pair(mod.kernel_size)
            args = dict(kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding,
                        ceil_mode=mod.ceil_mode, divisor_override=1)
            acc = F.avg_pool2d(k, **args)
            ones = torch.ones_like(k[:1, :1])
            if mod.count_include_pad:        # taps inside the padded extent
                ph, pw = _pair(mod.padding)
                ones = F.pad(ones, (pw, pw, ph, ph), value=1.0)
                args["padding"] = 0
            count = F.avg_pool2d(ones, **args).round().long()
            if count.shape[2:] != acc.shape[2:]:
                raise NotImplementedError(f"{self.name}: this ceil_mode/padding combination "
                                          f"is not simulated")
            m = torch.from_numpy(avgpool_multipliers(sx, sy, kh * kw))[count]
        return _requantize(acc, m, zy, QMIN, QMAX) * sy

    def emit(self, b, ins, out):
        y, m = b.result(out, self), self.module
        if m is None:
            b.node("ReduceMean", self.name, [ins[0], b.axes([2, 3])], [y], like=out,
                   keepdims=int(self.keepdim))
        else:
            k, s, p = (_pair(v) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
            b.node("AveragePool", self.name, [ins[0]], [y], like=out, kernel_shape=k, strides=s,
                   pads=p + p, ceil_mode=int(m.ceil_mode),
                   count_include_pad=int(m.count_include_pad))
        b.finish(out, self)


class Lut(Step):
    """An elementwise activation on its own: the engine's 256-entry table."""

    def __init__(self, name, fn, attrs, quantized, act_options):
        super().__init__(name, quantized, act_options)
        self.fn, self.attrs = fn, dict(attrs)

    def _torch(self, x):
        if self.fn == "leakyrelu":
            return F.leaky_relu(x, self.attrs["alpha"])
        if self.fn == "clip":
            return torch.clamp(x, self.attrs["alpha"], self.attrs["beta"])
        return _TORCH_FN[self.fn](x)

    def forward(self, x, qin):
        if not (self.quantized and not self.training):
            y = self._torch(x)
            return self.output(y)
        (sx, zx), (sy, zy) = qin[0].qparams(), self.out.qparams()
        if self.fn == "clip":
            lo, hi = self.attrs["alpha"], self.attrs["beta"]
            table = activation_table(lambda r: np.clip(r, lo, hi), sx, zx, sy, zy)
        else:
            table = activation_table(self.fn, sx, zx, sy, zy, **self.attrs)
        q = (codes(x, sx, zx, QMIN, QMAX) + zx).long()
        return (torch.from_numpy(table.astype(np.float32))[q] - zy) * sy

    def emit(self, b, ins, out):
        y = b.result(out, self)
        if self.fn == "clip":
            b.node("Clip", self.name, [ins[0], b.scalar(self.attrs["alpha"]),
                                       b.scalar(self.attrs["beta"])], [y], like=out)
        else:
            b.node(LUTS[self.fn][0], self.name, [ins[0]], [y], like=out, **self.attrs)
        b.finish(out, self)


class Flatten(Step):
    """torch.flatten(x, 1) / nn.Flatten / x.view(x.size(0), -1): bytes move, qparams stay."""
    produces_qparams = False

    def forward(self, x, qin):
        return torch.flatten(x, 1)

    def emit(self, b, ins, out):
        b.node("Flatten", self.name, [ins[0]], [b.result(out, self)], like=out, axis=1)
        b.finish(out, self, same_as=ins[0])


class InputQuant(Step):
    """The quantizer of a float value an int8 step reads (a model input, a keep_float
    output)."""

    def forward(self, x, qin):
        return self.out(x)

    def emit(self, b, ins, out):
        b.quantize(ins[0], out, self.out.qparams())
