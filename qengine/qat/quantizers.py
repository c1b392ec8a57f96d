"""Fake quantizers: docs/numerics.md's quantize and choose_qparams in torch.

Two forwards. In training, the straight-through estimator (Bengio et al. 2013): the rounding
passes gradients through inside the range and stops them outside; a learned scale gets LSQ's
gradient (Esser et al. 2020, with its gradient scale 1/sqrt(N·Qp)) and a learned zero point
LSQ+'s offset gradient (Bhalgat et al. 2020). In eval, the integer codes themselves: the step
modules (qengine/qat/steps.py) then compute what the engine computes, from the same qparams.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..quant import choose_qparams
from ..qtypes import FLT_MIN


class _FakeQuant(torch.autograd.Function):
    """(clamp(rhe(x / s) + z, qmin, qmax) − z) · s with STE / LSQ / LSQ+ gradients. s and z
    broadcast against x; z holds integers (as floats)."""

    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax, grad_scale):
        v = x / s
        r = torch.round(v)                       # half to even, as rhe
        q = r + z
        lo, hi = q < qmin, q > qmax
        ctx.save_for_backward(v, r, lo, hi, s, z)
        ctx.bounds = (qmin, qmax, grad_scale)
        return (q.clamp(qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, g):
        v, r, lo, hi, s, z = ctx.saved_tensors
        qmin, qmax, gs = ctx.bounds
        out = lo | hi
        gx = g * ~out
        gs_ = gz = None
        if ctx.needs_input_grad[1]:
            d = torch.where(lo, qmin - z, torch.where(hi, qmax - z, r - v))
            gs_ = (g * d).sum_to_size(s.shape) * gs
        if ctx.needs_input_grad[2]:
            gz = (g * torch.where(out, -s, torch.zeros_like(s))).sum_to_size(z.shape) * gs
        return gx, gs_, gz, None, None, None


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def fake_quant(x, s, z, qmin, qmax, grad_scale=1.0):
    return _FakeQuant.apply(x, s, z, qmin, qmax, grad_scale)


def codes(x, s, z, qmin, qmax):
    """The integer codes q − z of float x (numerics.md "Quantize": float32 x / s, clamp, rhe),
    as a float tensor of exact integers. s, z: Python numbers or broadcastable tensors."""
    v = x / s
    return torch.round(torch.clamp(v, qmin - z, qmax - z))


def _f32(v) -> float:
    return float(np.float32(v))


class ActQuant(nn.Module):
    """Observer and fake quantizer of one activation, on the engine's uint8 grid: asymmetric,
    or symmetric (zero point 128: int8 semantics). The range is a moving average of the batch
    min/max (Krishnamoorthi 2018) — the first batch sets it — and the qparams are
    `choose_qparams` of that range, as static quantization chooses them from its observers.
    With `learn=True` the scale (and, asymmetric, the zero point) become parameters,
    initialized from the observed range on the first training step (LSQ / LSQ+)."""

    QMIN, QMAX = 0, 255

    def __init__(self, symmetric: bool = False, averaging: float = 0.01, learn: bool = False):
        super().__init__()
        self.symmetric, self.averaging, self.learn = symmetric, averaging, learn
        self.register_buffer("min_val", torch.tensor(math.inf))
        self.register_buffer("max_val", torch.tensor(-math.inf))
        self.register_buffer("observing", torch.tensor(True))
        if learn:
            self.scale = nn.Parameter(torch.tensor(1.0))
            self.zero = nn.Parameter(torch.tensor(0.0), requires_grad=not symmetric)
            self.register_buffer("initialized", torch.tensor(False))
        self._cache = None

    def extra_repr(self):
        return (f"symmetric={self.symmetric}, learn={self.learn}, "
                f"range=[{self.min_val.item():.4g}, {self.max_val.item():.4g}]")

    @property
    def observed(self) -> bool:
        return bool(torch.isfinite(self.min_val))

    def qparams(self) -> tuple[float, int]:
        """(scale, uint8 zero point) the engine will use."""
        if not self.observed:
            raise RuntimeError("this activation has not been observed yet: run the prepared "
                               "model on data in training mode (model.train()) first")
        if self.learn and bool(self.initialized):
            s = max(_f32(self.scale.detach().item()), FLT_MIN)
            z = 128 if self.symmetric else int(np.clip(np.rint(self.zero.item()), 0, 255))
            return s, z
        key = (self.min_val.item(), self.max_val.item())
        if self._cache is None or self._cache[0] != key:
            p = choose_qparams(key[0], key[1], bits=8, symmetric=self.symmetric, signed=False)
            self._cache = (key, (float(p.scale), int(p.zero_point)))
        return self._cache[1]

    def observe(self, x):
        x = x.detach()
        finite = x[torch.isfinite(x)] if not torch.isfinite(x).all() else x
        if finite.numel() == 0:
            return
        lo, hi = torch.aminmax(finite)
        lo, hi = lo.float(), hi.float()
        if not self.observed:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        else:
            c = self.averaging
            self.min_val.copy_(self.min_val + c * (lo - self.min_val))
            self.max_val.copy_(self.max_val + c * (hi - self.max_val))

    def forward(self, x):
        if self.training:
            if bool(self.observing):
                self.observe(x)
            if not self.observed:
                return x
            if self.learn:
                if not bool(self.initialized):
                    s, z = self.qparams()
                    self.scale.data.fill_(s)
                    self.zero.data.fill_(float(z))
                    self.initialized.fill_(True)
                s = self.scale.clamp_min(FLT_MIN)
                z = torch.full_like(s, 128.0) if self.symmetric else \
                    _RoundSTE.apply(self.zero).clamp(0, 255)
                g = 1.0 / math.sqrt(max(x[0].numel(), 1) * self.QMAX)
                return fake_quant(x, s, z, self.QMIN, self.QMAX, g)
            s, z = self.qparams()
            return fake_quant(x, torch.tensor(s), torch.tensor(float(z)), self.QMIN, self.QMAX)
        s, z = self.qparams()
        return (codes(x, s, z, self.QMIN, self.QMAX)) * s

    def dequantized(self, k):
        """float32 s·k of integer codes k = q − z (numerics.md "Dequantize")."""
        return k.float() * self.qparams()[0]


class WeightQuant(nn.Module):
    """Symmetric, narrow-range weight quantizer ([−(2^(b−1)−1), 2^(b−1)−1]), one scale per
    output channel (dim 0), per tensor, or per group of `group_size` along the flattened
    reduction axis. Scales are choose_qparams's of the current weights (max |w| / qmax in
    float64, rounded to float32) or, with `learn=True`, LSQ parameters initialized so."""

    def __init__(self, bits: int = 8, per_channel: bool = True, group_size: int | None = None,
                 learn: bool = False, channels: int = 1, reduction: int = 1):
        super().__init__()
        self.bits, self.per_channel, self.group_size, self.learn = \
            bits, per_channel, group_size, learn
        self.qmax = 2 ** (bits - 1) - 1
        self.reduction = reduction
        if learn:
            self.scale = nn.Parameter(torch.ones(self._scale_shape(channels)))
            self.register_buffer("initialized", torch.tensor(False))

    def extra_repr(self):
        return (f"bits={self.bits}, per_channel={self.per_channel}, group_size="
                f"{self.group_size}, learn={self.learn}")

    def _scale_shape(self, cout):
        if self.group_size:
            return (cout, -(-self.reduction // self.group_size))
        return (cout,) if self.per_channel else ()

    def _view(self, w):
        """w as [Cout, groups, group] (per channel: groups = 1; per tensor: one row). Groups run
        along the flattened reduction axis; a last group shorter than group_size is padded
        with zeros, which change neither its scale nor its sums."""
        if self.group_size:
            flat = w.reshape(w.shape[0], -1)
            pad = -flat.shape[1] % self.group_size
            if pad:
                flat = torch.nn.functional.pad(flat, (0, pad))
            return flat.reshape(w.shape[0], -1, self.group_size)
        if self.per_channel:
            return w.reshape(w.shape[0], 1, -1)
        return w.reshape(1, 1, -1)

    def _unview(self, v, w):
        return v.reshape(w.shape[0], -1)[:, :w[0].numel()].reshape(w.shape)

    def minmax_scales(self, w):
        a = self._view(w.detach()).abs().amax(-1).double()      # [Cout or 1, groups]
        s = (a / self.qmax).float()
        s = torch.where(a == 0, torch.ones_like(s), s).clamp_min(FLT_MIN)
        return s

    def scales(self, w):
        """float32 scales shaped [Cout or 1, groups] for `_view(w)`."""
        if not self.learn:
            return self.minmax_scales(w)
        if not bool(self.initialized):
            self.scale.data.copy_(self.minmax_scales(w).reshape(self.scale.shape))
            self.initialized.fill_(True)
        return self.scale.clamp_min(FLT_MIN).reshape(self._view(w).shape[:2])

    def forward(self, w):
        """Fake-quantized w (training: STE, LSQ gradient on learned scales)."""
        v = self._view(w)
        s = self.scales(w).unsqueeze(-1)
        g = 1.0 / math.sqrt(min(v.shape[-1], w[0].numel()) * self.qmax) if self.learn else 1.0
        return self._unview(fake_quant(v, s, torch.zeros(()), -self.qmax, self.qmax, g), w)

    def quantize(self, w):
        """(integer codes as float32 tensor of w's shape, scales [Cout or 1, groups]): the
        weights the engine stores."""
        with torch.no_grad():
            v = self._view(w)
            s = self.scales(w).detach().float()
            q = codes(v, s.unsqueeze(-1), 0, -self.qmax, self.qmax)
            return self._unview(q, w), s
