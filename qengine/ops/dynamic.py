"""Graph ops for dynamic int8 quantization (made by qengine.workflows.dynamic.quantize_dynamic).

Their weights are initializers in a portable canonical form — int8 [.., N, K] plus float32
per-row scales — and are packed for the CPU's kernels when a Session is built, so one engine
file runs on every CPU.

DynamicQuantLSTM / DynamicQuantGRU inputs:
    X, Wq, Ws, Rq, Rs, B, sequence_lens, initial_h[, initial_c]   (optional ones may be "")
DynamicQuantLinear inputs: X, Wq [N, K], Ws [N], bias [N] (optional); Y = X·Wᵀ + bias on the
    last axis of X.
4-bit weights (attribute weight_bits=4; default 8): Wq is the int4 storage of
qengine.quantized.weights.pack_int4, uint8 [.., N, ceil(K/2)] (two values per byte, low nibble
first, the narrow range [−7, 7]: a nibble 8 (−8) is refused), K given by the attribute
in_features (Linear) / input_size (LSTM/GRU W; R's K is H); Ws [.., N, groups] with
group_size 0 (one scale per row) or 32 / 64 / 128 (ceil(K / group_size) scales per row).
DynamicQuantConv inputs: X (NCHW), Wq int8 OIHW, Ws [Cout], B (optional); 2-D convolution with
    explicit pads (the ONNX Conv attributes after auto_pad was resolved), or 1-D (X [N, C, L],
    Wq [Cout, Cin/g, k]) run as 2-D with H = 1; an optional fused activation
    (qengine.ops.activation: Relu / Clip applied in the kernel's output pass, others after).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from ..quantized.weights import unpack_int4
from ..quantized.dynamic_conv import DynamicConv2d
from ..quantized.dynamic_linear import DynamicLinear
from ..quantized.linear import DynamicMatMul
from ..quantized.rnn import DynamicRNN
from .activation import (ACTIVATION_ATTRS, activation_bounds, apply_activation,
                         check_activation)
from .base import Op, register_op
from .rnn import GRU, LSTM


_W4_ATTRS = {"weight_bits": ("int", 8), "group_size": ("int", 0)}


def check_weight_bits(attrs, node, k_attr):
    """weight_bits 8, or 4 with group_size 0 / 32 / 64 / 128 and K (attribute k_attr) ≥ 1."""
    where = f"node {node.name!r} ({node.op_type})"
    bits, gs = attrs["weight_bits"], attrs["group_size"]
    if bits not in (4, 8):
        raise ModelError(f"{where}: weight_bits must be 4 or 8, got {bits}")
    if gs not in (0, 32, 64, 128) or (bits == 8 and gs):
        raise ModelError(f"{where}: group_size must be 0 (per row), 32, 64 or 128, and 0 with "
                         f"8-bit weights; got {gs} with weight_bits={bits}")
    if bits == 4 and attrs[k_attr] < 1:
        raise ModelError(f"{where}: 4-bit weights need the attribute {k_attr} (K) >= 1, got "
                         f"{attrs[k_attr]}")


def int4_weights(op, packed, k, what):
    """The op's int4 storage as int8 values [.., K] (ModelError naming the op if malformed)."""
    try:
        return unpack_int4(packed, k)
    except ValueError as e:
        op.fail(f"{what}: {e}")


class _DynamicRNNOp(Op):
    KIND = ""
    FLOAT_OP = LSTM
    ATTRS = {"direction": ("string", "forward"), "hidden_size": ("int", None),
             "layout": ("int", 0), "per_row": ("int", 0), **_W4_ATTRS,
             "input_size": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        LSTM.check_attrs({**{k: None for k in ("activation_alpha", "activation_beta",
                                               "activations", "clip")},
                          "input_forget": 0, **cls._float_attrs(attrs)}, node)
        check_weight_bits(attrs, node, "input_size")

    @staticmethod
    def _float_attrs(attrs):
        return {k: v for k, v in attrs.items() if k not in (*_W4_ATTRS, "input_size")}

    def prepare(self, initializers):
        arrs = [self.const_input(initializers, i, True, what)
                for i, what in ((1, "Wq"), (2, "Ws"), (3, "Rq"), (4, "Rs"))]
        B = self.const_input(initializers, 5)
        if self.input_name(5) and B is None:
            self.fail("input 5 (B) must be an initializer")
        a = self.attrs
        w4 = {}
        if a["weight_bits"] == 4:
            if arrs[3].ndim != 3 or arrs[3].shape[1] % (4 if self.KIND == "lstm" else 3):
                self.fail(f"Rs must be [D, G·H, groups], got shape {arrs[3].shape}")
            H = arrs[3].shape[1] // (4 if self.KIND == "lstm" else 3)
            arrs[0] = int4_weights(self, arrs[0], a["input_size"], "Wq")
            arrs[2] = int4_weights(self, arrs[2], H, "Rq")
            w4 = {"weight_bits": 4, "group_size": a["group_size"] or None}
        try:
            self.layer = DynamicRNN(self.KIND, *arrs, B, direction=a["direction"],
                                    linear_before_reset=a.get("linear_before_reset", 0),
                                    per_row=bool(a["per_row"]), **w4)
        except (ShapeError, ValueError) as e:
            self.fail(str(e))
        if self.attrs["hidden_size"] not in (None, self.layer.H):
            self.fail(f"hidden_size={self.attrs['hidden_size']} but R has {self.layer.H} columns")

    def run(self, X, Wq=None, Ws=None, Rq=None, Rs=None, B=None, lens=None, h0=None, c0=None):
        layout = self.attrs["layout"]
        if X is None or X.ndim != 3:
            self.fail(f"X must be 3-D, got {None if X is None else X.shape}", ShapeError)
        if layout == 1:
            X = np.swapaxes(X, 0, 1)
            h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
            c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
        try:
            Y, Yh, Yc = self.layer(X, lens, h0, c0)
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        finals = [Yh] if Yc is None else [Yh, Yc]
        if layout == 1:
            Y = np.transpose(Y, (2, 0, 1, 3))
            finals = [np.swapaxes(f, 0, 1) for f in finals]
        return (Y, *finals)[:len(self.node.outputs)]


@register_op
class DynamicQuantLSTM(_DynamicRNNOp):
    op_type = "DynamicQuantLSTM"
    WEIGHT_INPUTS = ((1, 2), (3, 4))
    KIND = "lstm"
    INPUTS = (5, 9)
    OUTPUTS = (0, 3)


@register_op
class DynamicQuantGRU(_DynamicRNNOp):
    op_type = "DynamicQuantGRU"
    WEIGHT_INPUTS = ((1, 2), (3, 4))
    KIND = "gru"
    INPUTS = (5, 8)
    OUTPUTS = (0, 2)
    ATTRS = {**_DynamicRNNOp.ATTRS, "linear_before_reset": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        GRU.check_attrs({**{k: None for k in ("activation_alpha", "activation_beta",
                                              "activations", "clip")},
                         **cls._float_attrs(attrs)}, node)
        check_weight_bits(attrs, node, "input_size")

    def run(self, X, Wq=None, Ws=None, Rq=None, Rs=None, B=None, lens=None, h0=None):
        return super().run(X, Wq, Ws, Rq, Rs, B, lens, h0, None)


@register_op
class DynamicQuantLinear(Op):
    op_type = "DynamicQuantLinear"
    WEIGHT_INPUTS = ((1, 2),)
    INPUTS = (3, 4)
    ATTRS = {"per_row": ("int", 0), **_W4_ATTRS, "in_features": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        check_weight_bits(attrs, node, "in_features")

    def prepare(self, initializers):
        Wq = self.const_input(initializers, 1, True, "Wq")
        Ws = self.const_input(initializers, 2, True, "Ws")
        bias = self.const_input(initializers, 3)
        if self.input_name(3) and bias is None:
            self.fail("input 3 (bias) must be an initializer")
        a, w4 = self.attrs, {}
        if a["weight_bits"] == 4:
            Wq = int4_weights(self, Wq, a["in_features"], "Wq")
            w4 = {"weight_bits": 4, "group_size": a["group_size"] or None}
        try:
            self.layer = DynamicLinear(Wq, Ws, bias, per_row=bool(a["per_row"]), **w4)
        except (ShapeError, ValueError) as e:
            self.fail(str(e))

    def run(self, X, Wq=None, Ws=None, bias=None):
        if X is None or X.dtype.kind != "f":
            self.fail("X must be a float tensor", ShapeError)
        try:
            return (self.layer(X),)
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        except ValueError as e:            # a Cython-level argument error: still name the node
            self.fail(f"{e} (input {X.dtype} {X.shape})", ShapeError)




@register_op
class DynamicQuantMatMul(Op):
    """A MatMul between two float activations, both quantized at each call: A per row, B per
    column (qengine/quantized/linear.py DynamicMatMul)."""
    op_type = "DynamicQuantMatMul"
    INPUTS = (2, 2)

    def prepare(self, initializers):
        self.layer = DynamicMatMul()

    def run(self, a, b):
        if a.dtype.kind != "f" or b.dtype.kind != "f":
            self.fail(f"A and B must be float tensors, got {a.dtype} and {b.dtype}", ShapeError)
        try:
            return (self.layer(a.astype(np.float32, copy=False),
                               b.astype(np.float32, copy=False)),)
        except ShapeError as e:
            self.fail(str(e), ShapeError)


@register_op
class DynamicQuantConv(Op):
    op_type = "DynamicQuantConv"
    WEIGHT_INPUTS = ((1, 2),)
    INPUTS = (3, 4)
    ATTRS = {"strides": ("ints", None), "pads": ("ints", None), "dilations": ("ints", None),
             "group": ("int", 1), "kernel_shape": ("ints", None), "auto_pad": ("string", "NOTSET"),
             **ACTIVATION_ATTRS}
    USES_ARENA = True

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (DynamicQuantConv)"
        check_activation(attrs, where)
        if attrs["auto_pad"] not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise ModelError(f"{where}: auto_pad {attrs['auto_pad']!r} is not one of NOTSET, "
                             f"VALID, SAME_UPPER, SAME_LOWER")

    def prepare(self, initializers):
        Wq = self.const_input(initializers, 1, True, "Wq")
        Ws = self.const_input(initializers, 2, True, "Ws")
        b = self.const_input(initializers, 3)
        if self.input_name(3) and b is None:
            self.fail("input 3 (B) must be an initializer")
        a = self.attrs
        strides, pads, dil = a["strides"], a["pads"], a["dilations"]
        # a 1-D convolution (Conv1d: X [N, C, L], Wq [Cout, Cin/g, k]) runs as 2-D with H = 1
        self._1d = Wq.ndim == 3
        if self._1d:
            Wq = Wq[:, :, None, :]
            strides = (1, *(strides or (1,)))
            pads = (0, (pads or (0, 0))[0], 0, (pads or (0, 0))[1])
            dil = (1, *(dil or (1,)))
        if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            pads = a["auto_pad"].lower()               # resolved for each input's size
        elif a["auto_pad"] == "VALID":
            pads = (0, 0, 0, 0)
        name, params = a["fused_activation"], a["fused_activation_params"]
        bounds = activation_bounds(name, params)
        self._post = None if bounds is not None else (name, params)   # e.g. LeakyRelu
        act = None if bounds is None or name == "" else ("clip", *bounds)
        try:
            self.layer = DynamicConv2d(Wq, Ws, b, stride=tuple(strides or (1, 1)),
                                       padding=pads if isinstance(pads, str) else
                                       tuple(pads or (0, 0, 0, 0)),
                                       dilation=tuple(dil or (1, 1)), groups=a["group"],
                                       activation=act)
        except (ShapeError, ValueError) as e:
            self.fail(str(e))

    def run(self, X, Wq=None, Ws=None, B=None, arena=None):
        if X is None or X.dtype.kind != "f":
            self.fail("X must be a float tensor", ShapeError)
        if self._1d:
            if X.ndim != 3:
                self.fail(f"X must be 3-D [N, C, L] for a 1-D convolution, got {X.shape}",
                          ShapeError)
            X = X[:, :, None, :]
        try:
            y = self.layer(X, arena=arena)
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        if self._post is not None:
            y = apply_activation(y, *self._post)
        return (y[:, :, 0, :] if self._1d else y,)
