"""ONNX Resize (opsets 10-19): nearest, linear and cubic, every coordinate_transformation_mode,
scales or sizes (with keep_aspect_ratio_policy), axes, roi for tf_crop_and_resize,
exclude_outside and extrapolation_value. Separable: one axis at a time, each output index
reading a few input indices with weights (a gather for nearest).

The neighbourhood follows onnx's definition: for a source coordinate x the taps are the n
input indices nearest x (the smaller one first on a tie), i0 = ceil(x) − 1 and the ratio
x − i0 in (0, 1]; indices beyond the edges read the edge value, or get weight 0 with
exclude_outside (the others renormalised). antialias=1 stretches the linear / cubic filter
by 1 / scale when downscaling (more taps, normalised to sum 1).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _runtime
from .._ext import _f32, _quant
from ..errors import ModelError, ShapeError
from .base import Op, register_op
from .tensor import check_made

MODES = ("nearest", "linear", "cubic")
COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_crop_and_resize")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
POLICIES = ("stretch", "not_larger", "not_smaller")
#: float32 linear / cubic axes through the compiled kernel (tests turn it off to compare)
COMPILED = True


def _taps(mode, ratio, nearest_mode, a, antialias=False, scale=1.0):
    """(weights [n_out, n] of n taps, the first tap's offset from i0)."""
    if antialias and mode != "nearest" and scale < 1.0:
        # the filter stretched by 1/scale when downscaling, normalised to sum 1
        reach = 1.0 if mode == "linear" else 2.0
        start = int(math.floor(-reach / scale) + 1)
        t = np.abs((np.arange(start, 2 - start)[None, :] - ratio[:, None]) * scale)
        if mode == "linear":
            w = np.clip(1 - t, 0, 1)
        else:
            w = np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                         np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))
        return w / w.sum(1, keepdims=True), start
    if mode == "linear":
        return np.stack([1 - ratio, ratio], 1), 0
    if mode == "nearest":
        whole = ratio == 1.0                     # an integer coordinate: exactly that index
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
              "floor": np.zeros_like(whole), "ceil": np.ones_like(whole)}[nearest_mode]
        up = up | whole
        return np.stack([~up, up], 1).astype(np.float64), 0
    r, s = ratio, 1 - ratio
    return np.stack([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                     ((a + 2) * r - (a + 3)) * r * r + 1,
                     ((a + 2) * s - (a + 3)) * s * s + 1,
                     ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a], 1), -1


@register_op
class Resize(Op):
    op_type = "Resize"
    INPUTS = (1, 4)
    ATTRS = {"mode": ("string", "nearest"),
             "coordinate_transformation_mode": ("string", "half_pixel"),
             "nearest_mode": ("string", "round_prefer_floor"),
             "cubic_coeff_a": ("float", -0.75), "exclude_outside": ("int", 0),
             "extrapolation_value": ("float", 0.0), "antialias": ("int", 0),
             "axes": ("ints", None), "keep_aspect_ratio_policy": ("string", "stretch")}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} (Resize)"
        for key, allowed in (("mode", MODES), ("coordinate_transformation_mode", COORDINATES),
                             ("nearest_mode", NEAREST), ("keep_aspect_ratio_policy", POLICIES)):
            if attrs[key] not in allowed:
                raise ModelError(f"{where}: {key} {attrs[key]!r} is not one of {allowed}")
        if attrs["antialias"] and attrs["mode"] == "nearest":
            raise ModelError(f"{where}: antialias=1 has no meaning for mode 'nearest'")

    def _plan(self, in_shape, roi, scales, sizes):
        """(per resized axis: (axis, scale, out size, roi start, roi end))."""
        r = len(in_shape)
        axes = [a % r if -r <= a < r else None for a in self.attrs["axes"] or range(r)]
        if None in axes or len(set(axes)) != len(axes):
            self.fail(f"axes {self.attrs['axes']} are not distinct axes of rank {r}",
                      ShapeError)
        n = len(axes)
        if sizes is not None and sizes.size:
            if scales is not None and scales.size:
                self.fail("only one of scales and sizes may be given", ShapeError)
            if sizes.size != n:
                self.fail(f"sizes has {sizes.size} values for {n} axes", ShapeError)
            out = [int(v) for v in sizes.reshape(-1)]
            sc = [o / in_shape[a] if in_shape[a] else 1.0 for o, a in zip(out, axes)]
            policy = self.attrs["keep_aspect_ratio_policy"]
            if policy != "stretch":
                s = min(sc) if policy == "not_larger" else max(sc)
                sc = [s] * n
                out = [int(s * in_shape[a] + 0.5) for a in axes]
        elif scales is not None and scales.size:
            if scales.size != n:
                self.fail(f"scales has {scales.size} values for {n} axes", ShapeError)
            sc = [float(v) for v in scales.reshape(-1)]
            if any(not s > 0 for s in sc):
                self.fail(f"scales must be positive, got {sc}", ShapeError)
            out = [int(math.floor(s * in_shape[a])) for s, a in zip(sc, axes)]
        else:
            self.fail("one of scales and sizes must be given", ShapeError)
        if any(o < 0 for o in out):
            self.fail(f"output sizes {out} are negative", ShapeError)
        full = list(in_shape)
        for a, o in zip(axes, out):
            full[a] = o
        check_made(self, full)
        roi_v = None if roi is None or not roi.size else roi.astype(np.float64).reshape(-1)
        if self.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
            if roi_v is None or roi_v.size not in (2 * n, 2 * r):
                self.fail(f"tf_crop_and_resize needs roi with {2 * n} values (starts, then "
                          f"ends of the resized axes)", ShapeError)
            if roi_v.size == 2 * r and n != r:
                roi_v = np.concatenate([roi_v[axes], roi_v[[r + a for a in axes]]])
        plan = []
        for i, (a, s, o) in enumerate(zip(axes, sc, out)):
            lo, hi = (0.0, 1.0) if roi_v is None or roi_v.size != 2 * n else \
                (roi_v[i], roi_v[n + i])
            plan.append((a, s, o, lo, hi))
        return plan

    def _source(self, n_in, scale, n_out, lo, hi):
        """The source coordinate of each output index (float64), and where it is outside
        the input for tf_crop_and_resize."""
        mode = self.attrs["coordinate_transformation_mode"]
        i = np.arange(n_out, dtype=np.float64)
        width = scale * n_in                      # onnx's output_width: not rounded
        if mode == "align_corners":
            x = np.zeros(n_out) if width == 1 else i * (n_in - 1) / (width - 1)
        elif mode == "asymmetric":
            x = i / scale
        elif mode == "tf_crop_and_resize":
            x = np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1 else \
                i * (hi - lo) * (n_in - 1) / (width - 1)
            x = x + lo * (n_in - 1)
        elif mode == "pytorch_half_pixel":
            x = np.full(n_out, -0.5) if width == 1 else (i + 0.5) / scale - 0.5
        elif mode == "half_pixel":
            x = (i + 0.5) / scale - 0.5
        else:                                     # half_pixel_symmetric
            offset = n_in / 2 * (1 - n_out / width)
            x = offset + (i + 0.5) / scale - 0.5
        outside = (x < 0) | (x > n_in - 1) if mode == "tf_crop_and_resize" else None
        return x, outside

    def prepare(self, initializers):
        self._taps_cache = {}

    def _axis_taps(self, n_in, scale, n_out, lo, hi, dtype):
        """(idx [n_out, k], w [n_out, k] in `dtype`, taps with a nonzero weight somewhere,
        outside mask or None): what one axis reads, which depends on the sizes and the
        attributes only — kept per key, these small NumPy steps cost more than the
        interpolation itself on a feature map (at most 64 keys)."""
        key = (n_in, scale, n_out, lo, hi, dtype)
        got = self._taps_cache.get(key)
        if got is not None:
            return got
        x, outside = self._source(n_in, scale, n_out, lo, hi)
        mode = self.attrs["mode"]
        i0 = np.ceil(x).astype(np.int64) - 1
        ratio = x - i0
        w, start = _taps(mode, ratio, self.attrs["nearest_mode"], self.attrs["cubic_coeff_a"],
                         bool(self.attrs["antialias"]), scale)
        idx = (i0 + start)[:, None] + np.arange(w.shape[1])[None, :]
        if self.attrs["exclude_outside"]:
            w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
            w = w / w.sum(1, keepdims=True)
        idx = np.clip(idx, 0, n_in - 1)
        if mode != "nearest" or outside is not None:
            w = w.astype(dtype)
        keep = [k for k in range(w.shape[1]) if np.any(w[:, k])]
        got = (idx, w, keep, outside)
        if len(self._taps_cache) >= 64:
            self._taps_cache.clear()
        self._taps_cache[key] = got
        return got

    def _axis(self, y, axis, scale, n_out, lo, hi):
        n_in = y.shape[axis]
        if n_in == 0:
            self.fail(f"cannot resize an empty axis {axis}", ShapeError)
        idx, w, keep, outside = self._axis_taps(n_in, scale, n_out, lo, hi, y.dtype)
        if self.attrs["mode"] == "nearest" and outside is None:   # one tap of weight 1
            return np.take(y, idx[np.arange(n_out), w.argmax(1)], axis=axis)
        if COMPILED and y.dtype == np.float32 and outside is None and keep:
            # the same products and sums as the loop below, compiled (qe_f32_resize.h)
            return _f32.resize_axis(np.ascontiguousarray(y), axis % y.ndim, idx[:, keep],
                                    w[:, keep])
        shape = [1] * y.ndim
        shape[axis] = n_out
        out = None
        for k in keep:
            term = np.take(y, idx[:, k], axis=axis)
            term *= w[:, k].reshape(shape)
            if out is None:
                out = term
            else:
                out += term
        if out is None:
            out = np.zeros(y.shape[:axis] + (n_out,) + y.shape[axis + 1:], y.dtype)
        if outside is not None:
            np.moveaxis(out, axis, -1)[..., outside] = self.attrs["extrapolation_value"]
        return out

    def run(self, x, roi=None, scales=None, sizes=None):
        plan = self._plan(x.shape, roi, scales, sizes)
        # float inputs interpolate in their own type (float32 models stay float32, as in
        # onnxruntime); nearest gathers any type (uint8 codes in static int8); other integer
        # interpolation runs in float32 for 8-bit values (the compiled kernels: static int8's
        # codes), in float64 for wider ones, rounded back once
        exact = self.attrs["mode"] == "nearest" and \
            self.attrs["coordinate_transformation_mode"] != "tf_crop_and_resize"
        y = x if x.dtype.kind == "f" or exact else \
            x.astype(np.float32 if x.dtype.itemsize == 1 else np.float64)
        # shrinking axes first, the last axis before the others: the work is smallest, and
        # the axis that is a gather per value (the last) runs on the fewest values
        plan = sorted(plan, key=lambda p: (p[2] / max(x.shape[p[0]], 1), -p[0]))
        for axis, scale, n_out, lo, hi in plan:
            if math.isclose(scale, 1.0) and n_out == y.shape[axis] and \
                    math.isclose(lo, 0.0) and math.isclose(hi, 1.0):
                continue
            y = self._axis(y, axis, scale, n_out, lo, hi)
        if x.dtype == np.uint8 and y.dtype == np.float32 and y.size:
            # rint and clamp to [0, 255] in one compiled pass (a quantize at scale 1)
            out = np.empty(y.shape, np.uint8)
            _quant.quantize_u8(np.ascontiguousarray(y), out, 1.0, 0, _runtime.isa_index())
            return (out,)
        if x.dtype.kind in "iu" and not exact:
            info = np.iinfo(x.dtype)
            y = np.clip(np.rint(y), info.min, info.max)
        return (np.ascontiguousarray(y.astype(x.dtype, copy=False)),)
