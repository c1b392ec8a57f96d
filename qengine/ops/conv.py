"""FP32 Conv (ONNX Conv, opsets 1–22; N-D, groups, dilations, pads, auto_pad) with an optional
fused activation (see `qengine.ops.activation`).

float32 tensors with 1 or 2 spatial dims run the compiled kernels (`qengine.ops.f32_window`:
an offset-table GEMM over the phase-split padded input, a depthwise kernel, the Relu/Clip
activation fused into the store); weights are packed for them at load. The NumPy code below
remains for float64 reference sessions and 3-D convolutions, in two strategies:
* im2col + GEMM: the padded input is viewed as (N, C, *kernel, *out) windows (no copy), copied
  once into a (G, Cg·K, L) column matrix and multiplied by the (G, Mg, Cg·K) weight matrix
  (BLAS through np.matmul). A 1×1 conv with stride 1 and no pads skips the copy entirely.
* per-tap multiply-add, when every group has a single input channel (depthwise): the GEMM
  would degenerate into G tiny products, while K vectorized multiply-adds over the whole
  tensor stream through memory once per tap.

Weights given as initializers are reshaped once at load; weights computed at run time (the
ONNX light models build theirs with ConstantOfShape) are handled per call.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from . import f32_window
from .activation import ACTIVATION_ATTRS, activation_bounds, apply_activation, check_activation
from .base import Op, register_op
from .spatial import (WINDOW_ATTRS, Geometry, GeometryCache, check_window_attrs, pad_spatial,
                      tap_slices, windows)
from .tensor import check_made

#: im2col buffers above this many elements are built one batch item at a time
_COLS_MAX_ELEMENTS = 1 << 24


def conv_output_shape(attrs, x_shape, w_shape) -> tuple[int, ...]:
    """Output shape of Conv for input/weight shapes (ValueError if they do not fit)."""
    geo = Geometry.resolve(attrs, x_shape[2:], w_shape[2:])
    return (x_shape[0], w_shape[0]) + geo.out


@register_op
class Conv(Op):
    op_type = "Conv"
    INPUTS = (2, 3)
    ATTRS = {**WINDOW_ATTRS, "group": ("int", 1), **ACTIVATION_ATTRS}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (Conv)"
        check_window_attrs(attrs, where)
        check_activation(attrs, where)
        if attrs["group"] < 1:
            raise ModelError(f"{where}: group must be >= 1, got {attrs['group']}")

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        x, w = in_shapes[0], in_shapes[1]
        if x is None or w is None:
            return None
        return [conv_output_shape(attrs, x, w)]

    def prepare(self, initializers):
        w = self.const_input(initializers, 1)
        b = self.const_input(initializers, 2)
        self.w = None if w is None else self._weights(w)
        self.b = None if b is None else self._bias(b, w.shape[0] if w is not None else None)
        # the compiled float32 path: weights packed once, the clamp activations in the kernel
        self.packed = None
        if w is not None and self.float_dtype == np.float32 and w.ndim in (3, 4):
            self.packed = f32_window.PackedConv(w, self.attrs["group"])
        self.b32 = None if self.b is None else np.ascontiguousarray(self.b, np.float32)
        act = self.attrs["fused_activation"]
        bounds = activation_bounds(act, self.attrs["fused_activation_params"])
        self.clamp = f32_window.clamp_of(bounds if bounds is not None else (None, None))
        self.post_activation = act if bounds is None else ""
        self._geos = GeometryCache()

    def _weights(self, w, cls=ModelError):
        g = self.attrs["group"]
        if w.ndim < 3:
            self.fail(f"W must have rank >= 3, got shape {w.shape}", cls)
        if w.shape[0] % g:
            self.fail(f"W has {w.shape[0]} output channels, not a multiple of group {g}", cls)
        ks = self.attrs["kernel_shape"]
        if ks is not None and list(w.shape[2:]) != list(ks):
            self.fail(f"kernel_shape {ks} does not match W of shape {w.shape}", cls)
        # (G, Mg, Cg·K): the GEMM operand; for depthwise (Cg = 1) it is (G, Mg, K) per tap
        mat = np.ascontiguousarray(w.reshape(g, w.shape[0] // g, -1))
        mat.setflags(write=False)
        return w.shape, mat

    def _bias(self, b, m, cls=ModelError):
        if b.ndim != 1 or (m is not None and b.shape[0] != m):
            self.fail(f"B must have shape ({m},), got {b.shape}", cls)
        return b

    def run(self, x, w, b=None):
        (w_shape, wmat) = self.w if self.w is not None else self._weights(w, ShapeError)
        if b is not None:
            b = self.b if self.b is not None else self._bias(b, w_shape[0], ShapeError)
        n_sp = len(w_shape) - 2
        g = self.attrs["group"]
        if x.ndim != n_sp + 2 or x.shape[1] != w_shape[1] * g:
            self.fail(f"input of shape {x.shape} does not fit W of shape {w_shape} with group "
                      f"{g} (need rank {n_sp + 2} and {w_shape[1] * g} channels)", ShapeError)
        try:
            geo = self._geos.get(self.attrs, x.shape[2:], w_shape[2:])
        except ValueError as e:
            self.fail(str(e), ShapeError)
        if f32_window.supported(x, n_sp) and w.dtype == np.float32:
            return (self._run_compiled(x, w, b, geo),)
        xp = pad_spatial(x, geo.pads_begin, geo.pads_end, 0)
        if w_shape[1] == 1 and g > 1:
            y = _conv_per_tap(xp, wmat, geo)
        else:
            y = _conv_im2col(xp, wmat, geo, w_shape)
        if b is not None:
            y += b.astype(y.dtype, copy=False).reshape((-1,) + (1,) * n_sp)
        return (apply_activation(y, self.attrs["fused_activation"],
                                 self.attrs["fused_activation_params"]),)


    def _run_compiled(self, x, w, b, geo):
        packed = self.packed if self.w is not None and self.packed is not None else \
            f32_window.PackedConv(w, self.attrs["group"])
        if b is not None:
            b = self.b32 if self.b is not None else np.ascontiguousarray(b, np.float32)
        y = packed.run(f32_window.as_2d(x), f32_window.geom(geo), b, *self.clamp)
        y = y.reshape((x.shape[0], y.shape[1]) + geo.out)
        if self.post_activation:
            apply_activation(y, self.post_activation, self.attrs["fused_activation_params"])
        return y


def _conv_im2col(xp, wmat, geo: Geometry, w_shape):
    n, g = xp.shape[0], wmat.shape[0]
    kk, length = wmat.shape[2], int(np.prod(geo.out, dtype=np.int64))
    pointwise = all(k == 1 for k in geo.kernel) and all(s == 1 for s in geo.strides)
    dtype = np.result_type(xp.dtype, wmat.dtype)
    if pointwise:  # the input already is the column matrix
        y = np.matmul(wmat, xp.reshape(n, g, kk, length))
        return y.reshape((n, w_shape[0]) + geo.out)
    win = windows(xp, geo)  # (N, C, *kernel, *out)
    y = np.empty((n, g, wmat.shape[1], length), dtype)
    per_item = n > 1 and n * g * kk * length > _COLS_MAX_ELEMENTS
    step = 1 if per_item else n
    for i in range(0, n, step):
        cols = win[i:i + step].reshape(-1, g, kk, length)  # the im2col copy
        np.matmul(wmat, cols, out=y[i:i + step])
    return y.reshape((n, w_shape[0]) + geo.out)


def _conv_per_tap(xp, wmat, geo: Geometry):
    n, g, mg = xp.shape[0], wmat.shape[0], wmat.shape[1]
    n_sp = len(geo.kernel)
    xg = xp.reshape((n, g, 1) + xp.shape[2:])
    y = None
    for t, tap in enumerate(np.ndindex(*geo.kernel)):
        wt = wmat[:, :, t].reshape((g, mg) + (1,) * n_sp)
        term = xg[tap_slices(geo, tap)] * wt
        if y is None:
            y = term
        else:
            y += term
    return y.reshape((n, g * mg) + geo.out)


@register_op
class ConvTranspose(Op):
    """ONNX ConvTranspose (N-D, groups, strides, dilations, pads / output_padding /
    output_shape / auto_pad) in NumPy: each input position scatters W times its value into
    the output (a GEMM to columns, then a col2im that adds every kernel tap's strided slice),
    then the pads are cropped. W is [C, M/group, *kernel]."""
    op_type = "ConvTranspose"
    INPUTS = (2, 3)
    ATTRS = {**WINDOW_ATTRS, "group": ("int", 1), "output_padding": ("ints", None),
             "output_shape": ("ints", None)}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (ConvTranspose)"
        check_window_attrs(attrs, where)
        if attrs["group"] < 1:
            raise ModelError(f"{where}: group must be >= 1, got {attrs['group']}")
        if attrs["output_padding"] is not None and min(attrs["output_padding"], default=0) < 0:
            raise ModelError(f"{where}: output_padding must be >= 0, got "
                             f"{attrs['output_padding']}")

    def _geometry(self, x_sizes, kernel):
        """(strides, dilations, pads begin, pads end, the uncropped output size) for these
        input sizes."""
        n = len(x_sizes)
        a = self.attrs
        st = list(a["strides"] or [1] * n)
        dil = list(a["dilations"] or [1] * n)
        op = list(a["output_padding"] or [0] * n)
        if any(len(v) != n for v in (st, dil, op)):
            self.fail(f"strides / dilations / output_padding do not have one entry per spatial "
                      f"dim ({n})", ShapeError)
        if any(o >= max(s, d) for o, s, d in zip(op, st, dil)):
            self.fail(f"output_padding {op} must be smaller than the stride or the dilation",
                      ShapeError)
        full = [(i - 1) * s + (k - 1) * d + 1 + o
                for i, s, k, d, o in zip(x_sizes, st, kernel, dil, op)]
        out_shape = a["output_shape"]
        if out_shape is not None:
            out_shape = list(out_shape)[-n:]
        elif a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            out_shape = [i * s for i, s in zip(x_sizes, st)]
        if out_shape is not None:
            total = [f - o for f, o in zip(full, out_shape)]
            if any(t < 0 for t in total):
                # a larger output than the full one: ONNX pads the end (output_padding-like)
                op = [o + max(-t, 0) for o, t in zip(op, total)]
                full = [f + max(-t, 0) for f, t in zip(full, total)]
                total = [max(t, 0) for t in total]
            upper = a["auto_pad"] != "SAME_LOWER"
            begin = [t // 2 if upper else t - t // 2 for t in total]
            end = [t - b for t, b in zip(total, begin)]
        elif a["auto_pad"] == "VALID" or a["pads"] is None:
            begin = end = [0] * n
        else:
            begin, end = list(a["pads"][:n]), list(a["pads"][n:])
        return st, dil, begin, end, full

    def run(self, x, w, b=None):
        g = self.attrs["group"]
        if x.ndim < 3 or w.ndim != x.ndim or w.shape[0] != x.shape[1] or x.shape[1] % g:
            self.fail(f"input {x.shape} and W {w.shape} do not fit (W must be [C, M/group, "
                      f"*kernel] with C = the input's channels, divisible by group {g})",
                      ShapeError)
        kernel = w.shape[2:]
        if self.attrs["kernel_shape"] is not None and tuple(self.attrs["kernel_shape"]) != \
                tuple(kernel):
            self.fail(f"kernel_shape {self.attrs['kernel_shape']} does not match W {w.shape}",
                      ShapeError)
        st, dil, begin, end, full = self._geometry(x.shape[2:], kernel)
        n, c = x.shape[:2]
        check_made(self, (n, w.shape[1] * self.attrs["group"], *full))
        if any(f - b - e < 0 for f, b, e in zip(full, begin, end)):
            self.fail(f"pads {begin + end} crop more than the full output {full}", ShapeError)
        cg, mg = c // g, w.shape[1]
        sizes = x.shape[2:]
        dt = np.result_type(x.dtype, w.dtype)
        # columns: [N, G, Mg·K, L] = W_g^T [Mg·K, Cg] times x_g [Cg, L]
        wg = w.astype(dt, copy=False).reshape(g, cg, mg * int(np.prod(kernel)))
        xg = x.astype(dt, copy=False).reshape(n, g, cg, -1)
        cols = np.matmul(wg.transpose(0, 2, 1)[None], xg)
        cols = cols.reshape((n, g * mg) + tuple(kernel) + tuple(sizes))
        r = len(sizes)
        if all(s == k and d == 1 for s, k, d in zip(st, kernel, dil)) and \
                all(f == i * k for f, i, k in zip(full, sizes, kernel)):
            # stride = kernel (a U-Net's 2×2 / stride 2 upsampling): the taps tile the output
            # without overlapping, so it is one interleaving copy, not a sum per tap
            perm = (0, 1) + tuple(q for a in range(r) for q in (2 + r + a, 2 + a))
            y = cols.transpose(perm).reshape((n, g * mg) + tuple(full))
        else:
            y = np.zeros((n, g * mg) + tuple(full), dt)
            for tap in np.ndindex(*kernel):
                dst = (slice(None), slice(None)) + tuple(
                    slice(t * d, t * d + (i - 1) * s + 1, s)
                    for t, d, i, s in zip(tap, dil, sizes, st))
                y[dst] += cols[(slice(None), slice(None)) + tap]
        crop = (slice(None), slice(None)) + tuple(
            slice(bg, f - e) for bg, e, f in zip(begin, end, full))
        y = y[crop]
        if b is not None:
            if b.shape != (g * mg,):
                self.fail(f"B has shape {b.shape}, expected ({g * mg},)", ShapeError)
            y = np.ascontiguousarray(y)
            y += b.astype(dt).reshape((1, -1) + (1,) * len(sizes))   # y is ours: in place
        return (np.ascontiguousarray(y, dtype=x.dtype),)
