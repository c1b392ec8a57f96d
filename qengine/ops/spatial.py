"""Sliding-window geometry shared by Conv and the pooling ops (ONNX semantics, N-D).

`Geometry.resolve` turns the ONNX attributes (kernel, strides, dilations, pads, auto_pad,
ceil_mode) and the input's spatial sizes into explicit begin/end pads and output sizes, so the
ops (and shape inference) use one definition:

* NOTSET: out = floor_or_ceil((in + pb + pe − ((k−1)·d + 1)) / s) + 1; with ceil_mode a window
  that would start inside the end padding is dropped (ONNX / PyTorch rule).
* VALID: no padding, out = floor((in − ((k−1)·d + 1)) / s) + 1.
* SAME_UPPER / SAME_LOWER: out = ceil(in / s); the total pad max(0, (out−1)·s + (k−1)·d + 1 −
  in) is split evenly, the odd element going to the end (UPPER) or the beginning (LOWER).

`overhang` is how far the last window runs past the padded input (ceil_mode only); pooling
pads that much more (with −inf or 0) but never counts it as input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ModelError
from ..window import out_size, same_pads

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")

#: attribute specs common to Conv and the pools
WINDOW_ATTRS = {"auto_pad": ("string", "NOTSET"), "dilations": ("ints", None),
                "kernel_shape": ("ints", None), "pads": ("ints", None),
                "strides": ("ints", None)}


def check_window_attrs(attrs, where: str) -> None:
    if attrs["auto_pad"] not in AUTO_PADS:
        raise ModelError(f"{where}: auto_pad {attrs['auto_pad']!r} is not one of {AUTO_PADS}")
    k = attrs["kernel_shape"]
    n = None if k is None else len(k)
    for key, lo in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 0)):
        v = attrs.get(key)
        if v is None:
            continue
        if any(x < lo for x in v):
            raise ModelError(f"{where}: {key} must be >= {lo}, got {v}")
        want = None if n is None else (2 * n if key == "pads" else n)
        if want is not None and len(v) != want:
            raise ModelError(f"{where}: {key} has {len(v)} entries, expected {want} for a "
                             f"{n}-D kernel")


class GeometryCache:
    """Geometry.resolve per input size for one node: the attributes are fixed, so a streaming
    model re-running the same shapes skips ~10 µs of Python per call. Bounded (many distinct
    sizes just clear it)."""

    def __init__(self):
        self._geo = {}

    def get(self, attrs, in_sizes, kernel=None, ceil_mode=False) -> "Geometry":
        key = (tuple(in_sizes), None if kernel is None else tuple(kernel))
        geo = self._geo.get(key)
        if geo is None:
            geo = Geometry.resolve(attrs, in_sizes, kernel, ceil_mode)   # may raise ValueError
            if len(self._geo) >= 64:
                self._geo.clear()
            self._geo[key] = geo
        return geo


@dataclass(frozen=True)
class Geometry:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]
    overhang: tuple[int, ...]

    @classmethod
    def resolve(cls, attrs, in_sizes: Sequence[int], kernel: Sequence[int] | None = None,
                ceil_mode: bool = False) -> "Geometry":
        """Explicit pads and output sizes for inputs of spatial sizes `in_sizes`.

        Raises ValueError when the input is too small for the kernel (callers turn it into a
        ShapeError naming the node).
        """
        n = len(in_sizes)
        kernel = tuple(kernel if kernel is not None else attrs["kernel_shape"])
        if len(kernel) != n:
            raise ValueError(f"kernel {list(kernel)} does not match {n} spatial dims")
        strides = tuple(attrs.get("strides") or (1,) * n)
        dil = tuple(attrs.get("dilations") or (1,) * n)
        if len(strides) != n or len(dil) != n:
            raise ValueError(f"strides {list(strides)} / dilations {list(dil)} do not match "
                             f"{n} spatial dims")
        auto = attrs.get("auto_pad", "NOTSET")
        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
        if auto == "NOTSET":
            pads = attrs.get("pads") or [0] * (2 * n)
            if len(pads) != 2 * n:
                raise ValueError(f"pads {pads} do not match {n} spatial dims")
            pb, pe = tuple(pads[:n]), tuple(pads[n:])
        elif auto == "VALID":
            pb = pe = (0,) * n
        else:
            sides = [same_pads(i, k, s, d, auto == "SAME_UPPER")
                     for i, k, s, d in zip(in_sizes, kernel, strides, dil)]
            pb, pe = tuple(b for b, _ in sides), tuple(e for _, e in sides)
        out, over = [], []
        for i, s, e, b, en in zip(in_sizes, strides, eff, pb, pe):
            span = i + b + en - e
            if span < 0:
                raise ValueError(f"input spatial size {i} (+ pads {b}, {en}) is smaller than "
                                 f"the dilated kernel {e}")
            # e is already the dilated extent, hence dilation 1
            o = out_size(i, e, s, 1, b, en, ceil_mode and auto == "NOTSET")
            out.append(o)
            over.append(max(0, (o - 1) * s + e - (i + b + en)))
        return cls(kernel, strides, dil, pb, pe, tuple(out), tuple(over))


def pad_spatial(x: np.ndarray, begin: Sequence[int], end: Sequence[int], value) -> np.ndarray:
    """Pad the trailing len(begin) axes of x with a constant (no copy when nothing to pad)."""
    if not any(begin) and not any(end):
        return x
    n = len(begin)
    shape = x.shape[:-n] + tuple(s + b + e for s, b, e in zip(x.shape[-n:], begin, end))
    out = np.full(shape, value, dtype=x.dtype)
    out[(Ellipsis,) + tuple(slice(b, b + s) for b, s in zip(begin, x.shape[-n:]))] = x
    return out


def tap_slices(geo: Geometry, tap: Sequence[int]) -> tuple:
    """Index selecting, from the padded input, the input element every output position reads
    at kernel offset `tap` (a strided slice per spatial axis)."""
    return (Ellipsis,) + tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s)
        for t, d, o, s in zip(tap, geo.dilations, geo.out, geo.strides))


def windows(xp: np.ndarray, geo: Geometry) -> np.ndarray:
    """A read-only view of the padded input with shape (*lead, *kernel, *out): element
    [..., t, o] is the input the output position o reads at kernel offset t."""
    n = len(geo.kernel)
    lead, st = xp.shape[:-n], xp.strides
    sp = st[-n:]
    shape = lead + geo.kernel + geo.out
    strides = st[:-n] + tuple(a * d for a, d in zip(sp, geo.dilations)) + \
        tuple(a * s for a, s in zip(sp, geo.strides))
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)
