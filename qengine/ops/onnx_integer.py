"""ONNX's integer ops with their exact semantics, in NumPy: DynamicQuantizeLinear, MatMulInteger,
ConvInteger — what onnxruntime.quantization.quantize_dynamic writes (QuantFormat IntegerOps).

They run where `qengine.graph.integer_ops.fuse_integer_ops` could not turn a whole
DynamicQuantizeLinear → MatMulInteger/ConvInteger → Cast → Mul chain into qengine's own dynamic
ops (uint8 or asymmetric weights, weights computed at run time, a pattern it does not know):
correct, and slow (int64 NumPy, no packed kernels).

Semantics (ONNX 10/11):
* DynamicQuantizeLinear(x) → (y uint8, y_scale, y_zero_point): the range [min(x, 0), max(x, 0)]
  mapped onto [0, 255]; y_scale = (max − min) / 255 (1/255 when max = min = 0),
  y_zero_point = round(saturate(−min / y_scale)), y = saturate(round(x / y_scale) +
  y_zero_point), rounding half to even, in float32. inf/NaN inputs are refused (no range).
* MatMulInteger(A, B, a_zero_point, b_zero_point) → int32 (A − a_zp) @ (B − b_zp): a_zero_point
  is a scalar or per row of A (shape [M] or [..., M, 1]), b_zero_point a scalar or per column of
  B (shape [N] or [..., 1, N]).
* ConvInteger(x, w, x_zero_point, w_zero_point) → int32 convolution of (x − x_zp) and
  (w − w_zp), x padded with its zero point (a real 0); x_zero_point per tensor, w_zero_point per
  tensor or per output channel [M]. 1-D and 2-D convolutions.
Sums are int64, then wrapped to int32 as an int32 accumulator would (they only differ when K is
large enough to overflow int32, which ONNX leaves undefined).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from ..window import out_size as conv_out_size, same_pads
from .base import Op, register_op

_INT8 = ("int8", "uint8")


def _conv_acc(x, xz, w, stride, pads, dil, groups):
    """int64 NCHW: Σ (x − z_x)·w over each window, padding with real 0 (= z_x). A plain
    window-by-window sum (one einsum per kernel tap); the exact path for files whose weights
    the compiled kernels cannot take."""
    n, c, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dil, pads
    oh = conv_out_size(h, kh, sh, dh, pt, pb)
    ow = conv_out_size(wd, kw, sw, dw, pl, pr)
    xp = np.pad(x.astype(np.int64) - xz, ((0, 0), (0, 0), (pt, pb + sh), (pl, pr + sw)))
    wg = w.reshape(groups, cout // groups, cin_g, kh, kw)
    acc = np.zeros((n, groups, cout // groups, oh, ow), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            win = xp[:, :, y0:y0 + sh * oh:sh, x0:x0 + sw * ow:sw].reshape(n, groups, cin_g,
                                                                          oh, ow)
            acc += np.einsum("ngchw,goc->ngohw", win, wg[:, :, :, ky, kx])
    return acc.reshape(n, cout, oh, ow)


def _wrap_int32(v: np.ndarray) -> np.ndarray:
    return ((v + 2**31) % 2**32 - 2**31).astype(np.int32)


@register_op
class DynamicQuantizeLinear(Op):
    op_type = "DynamicQuantizeLinear"
    OUTPUTS = (3, 3)

    def run(self, x):
        if x.dtype != np.float32 and x.dtype.kind != "f":
            self.fail(f"expects a float32 input, got {x.dtype}", ShapeError)
        x = x.astype(np.float32, copy=False)
        if x.size and not np.isfinite(x).all():
            self.fail("the input holds inf or NaN, which has no uint8 range", ShapeError)
        lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
        hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
        # a constant-zero range takes scale 1/255 (the spec's reference and onnxruntime)
        scale = np.float32(np.float32(1.0 if hi == lo else hi - lo) / np.float32(255))
        zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
        y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
        return y, np.array(scale, np.float32), np.array(zp, np.uint8)


def _check_int8(op: Op, arr, what: str):
    if arr.dtype.name not in _INT8:
        op.fail(f"{what} must be int8 or uint8, got {arr.dtype}", ShapeError)


@register_op
class MatMulInteger(Op):
    op_type = "MatMulInteger"
    INPUTS = (2, 4)

    def run(self, a, b, a_zp=None, b_zp=None):
        _check_int8(self, a, "A")
        _check_int8(self, b, "B")
        if a.ndim == 0 or b.ndim == 0:
            self.fail("A and B must have rank >= 1", ShapeError)
        a64, b64 = a.astype(np.int64), b.astype(np.int64)
        if a_zp is not None:
            _check_int8(self, a_zp, "a_zero_point")
            if a_zp.dtype != a.dtype:
                self.fail(f"a_zero_point's type {a_zp.dtype} differs from A's {a.dtype}",
                          ShapeError)
            a64 = a64 - self._zp(a_zp, a.shape[-2] if a.ndim > 1 else 1, row=True)
        if b_zp is not None:
            _check_int8(self, b_zp, "b_zero_point")
            if b_zp.dtype != b.dtype:
                self.fail(f"b_zero_point's type {b_zp.dtype} differs from B's {b.dtype}",
                          ShapeError)
            b64 = b64 - self._zp(b_zp, b.shape[-1], row=False)
        try:
            return (_wrap_int32(np.matmul(a64, b64)),)
        except ValueError as e:
            self.fail(f"shapes {a.shape} and {b.shape}: {e}", ShapeError)

    def _zp(self, zp, n, row):
        """A per-tensor, per-row (A) or per-column (B) zero point shaped to broadcast."""
        z = zp.astype(np.int64)
        if z.size == 1:
            return z.reshape(())
        if z.ndim == 1 and z.shape[0] == n:
            return z.reshape(n, 1) if row else z
        what = "a_zero_point (per row: [M])" if row else "b_zero_point (per column: [N])"
        if z.ndim >= 2:     # the N-D forms [..., M, 1] / [..., 1, N] broadcast as they are
            return z
        self.fail(f"{what} has shape {zp.shape}, expected a scalar or {n} elements",
                  ShapeError)


@register_op
class ConvInteger(Op):
    op_type = "ConvInteger"
    INPUTS = (2, 4)
    ATTRS = {"auto_pad": ("string", "NOTSET"), "dilations": ("ints", None),
             "group": ("int", 1), "kernel_shape": ("ints", None), "pads": ("ints", None),
             "strides": ("ints", None)}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (ConvInteger)"
        if attrs["auto_pad"] not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise ModelError(f"{where}: auto_pad {attrs['auto_pad']!r} is not one of NOTSET, "
                             f"VALID, SAME_UPPER, SAME_LOWER")
        if attrs["group"] < 1:
            raise ModelError(f"{where}: group must be >= 1, got {attrs['group']}")

    def run(self, x, w, x_zp=None, w_zp=None):
        _check_int8(self, x, "x")
        _check_int8(self, w, "w")
        if x.ndim not in (3, 4) or w.ndim != x.ndim:
            self.fail(f"qengine runs 1-D and 2-D ConvInteger: x [N, C, (H,) W] and w of the same "
                      f"rank, got x {x.shape}, w {w.shape}", ShapeError)
        xz = 0
        if x_zp is not None:
            if x_zp.size != 1:
                self.fail(f"x_zero_point must be a scalar, got shape {x_zp.shape}", ShapeError)
            xz = int(x_zp.reshape(-1)[0])
        w64 = w.astype(np.int64)
        if w_zp is not None:
            if w_zp.size not in (1, w.shape[0]) or w_zp.ndim > 1:
                self.fail(f"w_zero_point must be a scalar or [{w.shape[0]}] (per output "
                          f"channel), got shape {w_zp.shape}", ShapeError)
            w64 = w64 - w_zp.astype(np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
        one_d = x.ndim == 3
        if one_d:
            x, w64 = x[:, :, None, :], w64[:, :, None, :]
        a = self.attrs
        nsp = 1 if one_d else 2
        strides = list(a["strides"] or [1] * nsp)
        dil = list(a["dilations"] or [1] * nsp)
        pads = list(a["pads"] or [0] * 2 * nsp)
        if a["kernel_shape"] is not None and list(a["kernel_shape"]) != list(w.shape[2:]):
            self.fail(f"kernel_shape {a['kernel_shape']} differs from w's {list(w.shape[2:])}",
                      ShapeError)
        if len(strides) != nsp or len(dil) != nsp or len(pads) != 2 * nsp:
            self.fail(f"strides/dilations/pads must have {nsp}/{nsp}/{2 * nsp} entries",
                      ShapeError)
        if one_d:
            strides, dil, pads = [1] + strides, [1] + dil, [0, pads[0], 0, pads[1]]
        if a["auto_pad"] == "VALID":
            pads = [0, 0, 0, 0]
        elif a["auto_pad"] != "NOTSET":
            upper = a["auto_pad"] == "SAME_UPPER"
            (pt, pb), (pl, pr) = (same_pads(x.shape[2 + i], w64.shape[2 + i], strides[i], dil[i],
                                            upper) for i in range(2))
            pads = [pt, pl, pb, pr]
        if x.shape[1] != w64.shape[1] * a["group"] or w64.shape[0] % a["group"]:
            self.fail(f"channels: x has {x.shape[1]}, w {tuple(w.shape)} with group "
                      f"{a['group']}", ShapeError)
        for i in range(2):
            if conv_out_size(x.shape[2 + i], w64.shape[2 + i], strides[i], dil[i], pads[i],
                             pads[i + 2]) <= 0:
                self.fail(f"the kernel does not fit the input {x.shape}", ShapeError)
        acc = _conv_acc(x, xz, w64, tuple(strides), tuple(pads), tuple(dil), a["group"])
        y = _wrap_int32(acc)
        return (np.ascontiguousarray(y[:, :, 0, :] if one_d else y),)


@register_op
class Floor(Op):
    """ONNX Floor (float). Here because older ORT IntegerOps files quantize a conv bias at run
    time as Cast(Floor(bias / (x_scale · w_scale))) and add it to ConvInteger's int32 output."""
    op_type = "Floor"

    def run(self, x):
        if x.dtype.kind != "f":
            self.fail(f"expects a float input, got {x.dtype}", ShapeError)
        return (np.floor(x),)
