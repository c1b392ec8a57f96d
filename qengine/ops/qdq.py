"""ONNX QuantizeLinear / DequantizeLinear, run in float: the ops of a QDQ graph before lowering.

A QDQ graph (qengine's quantized IR, docs/qdq.md) is a float graph whose tensors pass through
QuantizeLinear → DequantizeLinear pairs. Run as it stands, it is the "fake-quantized" model with
ONNX's exact semantics; qengine.qdq.lower turns its node units into integer ops. These two ops are
what runs where no lowering happened (and what a float64 reference Session of a QDQ graph runs).

Semantics (ONNX 10–25, integer types): y = saturate(round_half_even(x / y_scale) + y_zero_point),
x~ = (x − x_zero_point) · x_scale; the zero point's dtype (uint8 when absent) is the quantized
type. Scales are per tensor (a scalar or one element), per axis (1-D along `axis`) or blocked
(`block_size` > 0 along `axis`, opset 21). int4/uint4 tensors are held as int8/uint8 (the ONNX
frontend unpacks them; their values keep the 4-bit range).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from .base import Op, register_op

#: the integer types a quantized tensor may have, with their ranges
QUANT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535),
                "int16": (-32768, 32767)}
#: ONNX TensorProto element type numbers of the types above (the `output_dtype` attribute)
_ONNX_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16"}


def broadcast_param(p: np.ndarray, shape: tuple, axis: int, block_size: int, what: str):
    """Scale / zero point `p` shaped to broadcast against a tensor of `shape` (ONNX rules:
    scalar or 1-element → per tensor; 1-D of shape[axis] → per axis; with block_size, p has
    x's shape except ceil(shape[axis] / block_size) along axis)."""
    p = np.asarray(p)
    if block_size:
        if p.ndim != len(shape):
            raise ShapeError(f"{what} must have the input's rank {len(shape)} with "
                             f"block_size={block_size}, got shape {p.shape}")
        p = np.repeat(p, block_size, axis=axis)
        sl = [slice(None)] * len(shape)
        sl[axis] = slice(0, shape[axis])
        p = p[tuple(sl)]
        if p.shape != tuple(shape):
            raise ShapeError(f"{what} of shape {p.shape} does not block the input's shape "
                             f"{shape} along axis {axis}")
        return p
    if p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    if p.ndim != 1 or p.shape[0] != shape[axis]:
        raise ShapeError(f"{what} must be a scalar or 1-D of length {shape[axis]} (input "
                         f"axis {axis}), got shape {p.shape}")
    view = [1] * len(shape)
    view[axis] = p.shape[0]
    return p.reshape(view)


class _QDQ(Op):
    INPUTS = (2, 3)

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs.get("block_size", 0) < 0:
            raise ModelError(f"node {node.name!r} ({node.op_type}): block_size must be >= 0")

    def axis_of(self, x):
        axis = self.attrs["axis"]
        if x.ndim == 0:
            return 0
        if not -x.ndim <= axis < x.ndim:
            self.fail(f"axis {axis} is out of range for an input of rank {x.ndim}", ShapeError)
        return axis % x.ndim

    def params(self, x, inputs):
        scale = inputs[0]
        zp = inputs[1] if len(inputs) > 1 else None
        bs = self.attrs["block_size"]
        # per tensor: ONNX ignores axis (a 1-D input with the default axis=1 is fine)
        axis = self.axis_of(x) if bs or np.size(scale) != 1 else 0
        try:
            s = broadcast_param(scale, x.shape, axis, bs, "the scale")
            z = None if zp is None else broadcast_param(zp, x.shape, axis, bs, "the zero point")
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        return s, z


@register_op
class QuantizeLinear(_QDQ):
    op_type = "QuantizeLinear"
    ATTRS = {"axis": ("int", 1), "block_size": ("int", 0), "saturate": ("int", 1),
             "output_dtype": ("int", 0), "precision": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        super().check_attrs(attrs, node)
        od = attrs["output_dtype"]
        if od and od not in _ONNX_TYPES:
            raise ModelError(f"node {node.name!r} (QuantizeLinear): output_dtype {od} is not an "
                             f"integer type qengine quantizes to (uint8, int8, uint16, int16)")
        if attrs["precision"] not in (0, 1):     # 1: float32, what x / y_scale runs in anyway
            raise ModelError(f"node {node.name!r} (QuantizeLinear): precision "
                             f"{attrs['precision']} is not supported (only float32)")

    def run(self, x, scale, zp=None):
        if x.dtype.kind not in "fiu":
            self.fail(f"expects a float or int32 input, got {x.dtype}", ShapeError)
        s, z = self.params(x, [scale] + ([zp] if zp is not None else []))
        dtype = zp.dtype.name if zp is not None else \
            _ONNX_TYPES.get(self.attrs["output_dtype"], "uint8")
        if dtype not in QUANT_RANGES:
            self.fail(f"the zero point's type {dtype} is not one of {sorted(QUANT_RANGES)}",
                      ShapeError)
        lo, hi = QUANT_RANGES[dtype]
        ft = self.float_dtype if x.dtype.kind != "f" else np.result_type(x.dtype, self.float_dtype)
        q = np.rint(x.astype(ft) / s.astype(ft))
        if z is not None:
            q = q + z.astype(ft)
        # NaN has no integer: it becomes the zero point (qengine's documented NaN policy)
        q = np.where(np.isnan(q), 0 if z is None else z, q)
        return (np.asarray(np.clip(q, lo, hi), dtype),)


@register_op
class DequantizeLinear(_QDQ):
    op_type = "DequantizeLinear"
    ATTRS = {"axis": ("int", 1), "block_size": ("int", 0), "output_dtype": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        super().check_attrs(attrs, node)
        if attrs["output_dtype"] not in (0, 1):     # 1: float32
            raise ModelError(f"node {node.name!r} (DequantizeLinear): output_dtype "
                             f"{attrs['output_dtype']} is not supported (only float32)")

    def run(self, x, scale, zp=None):
        if x.dtype.kind not in "iu":
            self.fail(f"expects an integer input, got {x.dtype}", ShapeError)
        if zp is not None and zp.dtype != x.dtype:
            self.fail(f"the zero point's type {zp.dtype} differs from the input's {x.dtype}",
                      ShapeError)
        s, z = self.params(x, [scale] + ([zp] if zp is not None else []))
        ft = self.map_dtype(scale.dtype.name) if scale.dtype.kind == "f" else self.float_dtype
        d = x.astype(ft)
        if z is not None:
            d = d - z.astype(ft)
        return (np.asarray(d * s.astype(ft), ft),)             # 0-d stays an array
