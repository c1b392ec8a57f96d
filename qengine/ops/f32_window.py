"""The compiled FP32 window kernels (include/qengine/f32, src_pyx/_f32.pyx) behind the float
Conv, MaxPool and AveragePool ops: NCHW in, NCHW out, no im2col.

The ops use them for float32 tensors with 1 or 2 spatial dims (a 1-D window is run as a 2-D
one of height 1); float64 reference sessions and 3-D windows keep the NumPy code, which stays
the living definition. Every path computes each output with one chain of operations in a
fixed order (fused multiply-adds for convolutions), so the result is the same on every ISA
(scalar, AVX2, AVX-512) and for every thread count; docs/numerics.md states the tolerance
against float64.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _runtime
from .._ext import _f32
from .spatial import Geometry

_runtime.register_kernels("conv_f32", {isa: _f32.conv_kernel(i)[0]
                                       for i, isa in enumerate(_runtime.ISA_NAMES)})
_runtime.register_kernels("conv_f32_pc", {isa: _f32.conv_kernel(i, _f32.CONV_PC)[0]
                                          for i, isa in enumerate(_runtime.ISA_NAMES)})
_runtime.register_kernels("dwconv_f32", {isa: _f32.dwconv_kernel(i)
                                         for i, isa in enumerate(_runtime.ISA_NAMES)})

POOL_MAX, POOL_AVG = _f32.POOL_MAX, _f32.POOL_AVG


def supported(x: np.ndarray, n_spatial: int) -> bool:
    """True when the compiled kernels take this input (float32, 1 or 2 spatial dims)."""
    return x.dtype == np.float32 and n_spatial in (1, 2) and x.ndim == n_spatial + 2


def as_2d(x: np.ndarray) -> np.ndarray:
    """The input as a C-contiguous NCHW float32 array (N, C, L) → (N, C, 1, L)."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[:2] + (1,) * (4 - x.ndim) + x.shape[2:])


def geom(geo: Geometry) -> tuple:
    """(kh, kw, sh, sw, dh, dw, pt, pl, oh, ow) of a 1-D or 2-D window."""
    lift = (lambda t, one: (one,) + tuple(t)) if len(geo.kernel) == 1 else (lambda t, one: tuple(t))
    k, s, d = lift(geo.kernel, 1), lift(geo.strides, 1), lift(geo.dilations, 1)
    p, o = lift(geo.pads_begin, 0), lift(geo.out, 1)
    return (k[0], k[1], s[0], s[1], d[0], d[1], p[0], p[1], o[0], o[1])


def end_pads(geo: Geometry) -> tuple[int, int]:
    pe = (0,) + tuple(geo.pads_end) if len(geo.kernel) == 1 else tuple(geo.pads_end)
    return pe[0], pe[1]


def clamp_of(bounds) -> tuple[float, float]:
    lo, hi = bounds
    return float(lo if lo is not None else -math.inf), float(hi if hi is not None else math.inf)


class PackedConv:
    """Weights of one float Conv for the kernels: kept [M, taps] for depthwise, otherwise packed
    for the tile orientation a layer's shape asks for (channels × pixels or pixels × channels,
    include/qengine/f32/qe_f32_conv.h). The orientation depends on the input size, so each
    packing is made on first use and kept: a Conv sees one input size in practice, so one
    packing. Two threads racing on a first use both pack and one result is kept (the same)."""

    def __init__(self, w: np.ndarray, groups: int, isa: int | None = None):
        self.isa = _runtime.isa_index() if isa is None else isa
        self.m, self.groups = w.shape[0], groups
        # one input channel per group: each output channel is one plane × one filter
        self.depthwise = w.shape[1] == 1 and groups > 1
        self.w = np.ascontiguousarray(w.reshape(w.shape[0], -1), np.float32)
        self.w.setflags(write=False)
        self.packs: dict[int, tuple[np.ndarray, int]] = {}

    def pack(self, orientation: int) -> tuple[np.ndarray, int]:
        got = self.packs.get(orientation)
        if got is None:
            got = self.packs[orientation] = _f32.conv_pack(self.w, self.groups, self.isa,
                                                           orientation)
        return got

    def run(self, x4: np.ndarray, g4: tuple, bias, lo: float, hi: float) -> np.ndarray:
        n = x4.shape[0]
        y = np.empty((n, self.m, g4[8], g4[9]), np.float32)
        if self.depthwise:
            _f32.dwconv2d(x4, self.w, bias, g4, lo, hi, y, self.isa)
            return y
        orient = _f32.conv_orientation(self.isa, g4, x4.shape, self.m, self.groups)
        packed, tile = self.pack(orient)
        _f32.conv2d(x4, packed, orient, tile, bias, g4, self.groups, self.m, lo, hi, y,
                    self.isa)
        return y


def pool(x4: np.ndarray, kind: int, g4: tuple, count_include_pad: bool, pads_end,
         isa: int | None = None) -> np.ndarray:
    y = np.empty(x4.shape[:2] + (g4[8], g4[9]), np.float32)
    _f32.pool2d(x4, kind, g4, bool(count_include_pad), int(pads_end[0]), int(pads_end[1]), y,
                _runtime.isa_index() if isa is None else isa)
    return y
