"""FP32 pooling: MaxPool, AveragePool (N-D, pads, auto_pad, ceil_mode, dilations,
count_include_pad), GlobalAveragePool, GlobalMaxPool.

Both windowed pools loop over the kernel taps, each a vectorized max/add over the whole
strided output (K passes over memory, no window copy). The input is padded with −inf (max) or
0 (average); AveragePool divides by the number of window elements that lie in the input, or
in the input plus its explicit pads with count_include_pad — never counting the ceil_mode
overhang past the pads (as onnxruntime and PyTorch do). The window counts are separable, so
they are an outer product of per-axis counts.

float32 tensors with 1 or 2 spatial dims run the compiled kernels instead
(`qengine.ops.f32_window`, same padding and count rules); the NumPy code is the definition and
serves float64 reference sessions, integer MaxPool and 3-D windows.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from . import f32_window
from .base import Op, register_op
from .spatial import (WINDOW_ATTRS, Geometry, GeometryCache, check_window_attrs, pad_spatial,
                      tap_slices)


def pool_output_shape(attrs, x_shape) -> tuple[int, ...]:
    geo = Geometry.resolve(attrs, x_shape[2:], ceil_mode=bool(attrs.get("ceil_mode", 0)))
    return tuple(x_shape[:2]) + geo.out


class _WindowPool(Op):
    ATTRS = {**WINDOW_ATTRS, "ceil_mode": ("int", 0)}
    PAD_VALUE = 0.0

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} ({cls.op_type})"
        if attrs["kernel_shape"] is None:
            raise ModelError(f"{where}: required attribute 'kernel_shape' is missing")
        check_window_attrs(attrs, where)

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return None if in_shapes[0] is None else [pool_output_shape(attrs, in_shapes[0])]

    def prepare(self, initializers):
        self._geos = GeometryCache()

    def geometry(self, x) -> Geometry:
        n = len(self.attrs["kernel_shape"])
        if x.ndim != n + 2:
            self.fail(f"input must have rank {n + 2} for a {n}-D kernel, got shape {x.shape}",
                      ShapeError)
        try:
            return self._geos.get(self.attrs, x.shape[2:],
                                  ceil_mode=bool(self.attrs["ceil_mode"]))
        except ValueError as e:
            self.fail(str(e), ShapeError)

    def compiled(self, x, geo, kind, count_include_pad):
        y = f32_window.pool(f32_window.as_2d(x), kind, f32_window.geom(geo), count_include_pad,
                            f32_window.end_pads(geo))
        return y.reshape(x.shape[:2] + geo.out)

    def padded(self, x, geo):
        end = tuple(e + o for e, o in zip(geo.pads_end, geo.overhang))
        return pad_spatial(x, geo.pads_begin, end, self.PAD_VALUE)


@register_op
class MaxPool(_WindowPool):
    """The optional Indices output is not supported (inference graphs do not read it)."""
    op_type = "MaxPool"
    OUTPUTS = (1, 2)
    ATTRS = {**_WindowPool.ATTRS, "storage_order": ("int", 0)}
    PAD_VALUE = -np.inf

    @classmethod
    def check_attrs(cls, attrs, node):
        super().check_attrs(attrs, node)
        if len(node.outputs) > 1 and node.outputs[1]:
            raise ModelError(f"node {node.name!r} (MaxPool): the Indices output is not "
                             f"supported")

    def run(self, x):
        geo = self.geometry(x)
        if f32_window.supported(x, len(geo.kernel)):
            return (self.compiled(x, geo, f32_window.POOL_MAX, False),)
        if x.dtype.kind != "f":  # integer MaxPool (opset 12): pad with the dtype's minimum
            xp = pad_spatial(x, geo.pads_begin,
                             tuple(e + o for e, o in zip(geo.pads_end, geo.overhang)),
                             np.iinfo(x.dtype).min)
        else:
            xp = self.padded(x, geo)
        y = None
        for tap in np.ndindex(*geo.kernel):
            v = xp[tap_slices(geo, tap)]
            y = v.copy() if y is None else np.maximum(y, v, out=y)
        return (y,)


@register_op
class AveragePool(_WindowPool):
    op_type = "AveragePool"
    ATTRS = {**_WindowPool.ATTRS, "count_include_pad": ("int", 0)}

    def run(self, x):
        geo = self.geometry(x)
        if f32_window.supported(x, len(geo.kernel)):
            return (self.compiled(x, geo, f32_window.POOL_AVG,
                                  bool(self.attrs["count_include_pad"])),)
        xp = self.padded(x, geo)
        y = None
        for tap in np.ndindex(*geo.kernel):
            v = xp[tap_slices(geo, tap)]
            y = v.copy() if y is None else np.add(y, v, out=y)
        y /= self._counts(x.shape[2:], geo).astype(y.dtype)
        return (y,)

    def _counts(self, in_sizes, geo):
        include = bool(self.attrs["count_include_pad"])
        count = np.ones((), np.int64)
        for i, (size, k, s, d, pb, pe, o) in enumerate(zip(
                in_sizes, geo.kernel, geo.strides, geo.dilations, geo.pads_begin, geo.pads_end,
                geo.out)):
            # position of tap t of window j in input coordinates: j·s − pb + t·d
            pos = np.arange(o)[:, None] * s - pb + np.arange(k)[None, :] * d
            lo, hi = (-pb, size + pe) if include else (0, size)
            c = ((pos >= lo) & (pos < hi)).sum(axis=1)
            count = np.multiply.outer(count, c)
        return count


class _GlobalPool(Op):
    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        s = in_shapes[0]
        return None if s is None else [tuple(s[:2]) + (1,) * (len(s) - 2)]

    def run(self, x):
        if x.ndim < 2:
            self.fail(f"input must have rank >= 2, got shape {x.shape}", ShapeError)
        return (type(self).reduce(x, axis=tuple(range(2, x.ndim)), keepdims=True),)


@register_op
class GlobalAveragePool(_GlobalPool):
    op_type = "GlobalAveragePool"
    reduce = staticmethod(np.mean)


@register_op
class GlobalMaxPool(_GlobalPool):
    op_type = "GlobalMaxPool"
    reduce = staticmethod(np.max)
