"""Dynamic-int8 2-D convolution: int8 weights (per output channel, packed once), the input
quantized per call (u8, per tensor), int32 accumulation, float32 output through the
dequantizing epilogue (docs/numerics.md, epilogue (a)) — what `quantize_dynamic` makes of a Conv
when there is no calibration data. NCHW float in, NCHW float out.

The NumPy definition: quantize_activations_ref over the NHWC input, qconv2d_acc_ref, then
dequant_epilogue_ref (tests/test_dynamic_conv.py composes them).
"""
import numpy as np

from .. import _runtime, functional
from .._ext import _conv
from ..errors import ConfigError, ShapeError
from ..reference.conv import conv_out_size
from . import _static as S


class DynamicConv2d:
    """DynamicConv2d(weight_int8 OIHW, weight_scale [Cout], bias=None, *, stride=1, padding=0,
    dilation=1, groups=1, isa=None); padding as QConv2d's ('same_upper' / 'same_lower'
    included). Call: float32 NCHW [N, Cin, H, W] -> float32 NCHW."""

    def __init__(self, weight_int8, weight_scale, bias=None, *, stride=1, padding=0,
                 dilation=1, groups=1, isa=None):
        w = np.asarray(weight_int8)
        if w.dtype != np.int8 or w.ndim != 4:
            raise ShapeError(f"DynamicConv2d weight must be int8 OIHW, got {w.dtype} {w.shape}")
        cout, cin_g, kh, kw = w.shape
        if isinstance(groups, bool) or int(groups) != groups or groups < 1 or cout % groups:
            raise ConfigError(f"groups must be a positive int dividing Cout={cout}, got {groups!r}")
        self.groups = g = int(groups)
        self.in_channels, self.out_channels, self.kernel_size = cin_g * g, cout, (kh, kw)
        self.stride, self.dilation = S.pair(stride, "stride"), S.pair(dilation, "dilation")
        self.padding = S.pads4(padding)
        ws = np.ascontiguousarray(np.broadcast_to(np.asarray(weight_scale, np.float32), (cout,)))
        if not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
            raise ConfigError("weight scales must be finite and positive")
        self.weight_scale = ws
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        if self.bias is not None and self.bias.shape != (cout,):
            raise ShapeError(f"bias must have shape ({cout},), got {self.bias.shape}")
        self._isa = S.isa_index(isa)
        self.isa = _runtime.ISA_NAMES[self._isa]
        k = kh * kw * cin_g
        functional._check_k(k)
        wk = w.transpose(0, 2, 3, 1).reshape(g, cout // g, k)    # K order (ky, kx, ci)
        self._packs = []
        for gi in range(g):
            pw = functional.pack_weights(np.ascontiguousarray(wk[gi]), isa=self.isa)
            self._packs.append((pw.data, pw.colsum, pw.n, pw.k, pw.kp))

    def __call__(self, x, *, nthreads=0):
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.dtype.kind != "f":
            raise ShapeError(f"DynamicConv2d input must be float NCHW with {self.in_channels} "
                             f"channels, got {x.dtype} {x.shape}")
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pt, pl, pb, pr = S.resolve_pads(self.padding, h, w, self.kernel_size, self.stride,
                                        self.dilation)
        oh, ow = conv_out_size(h, kh, sh, dh, pt, pb), conv_out_size(w, kw, sw, dw, pl, pr)
        if oh < 1 or ow < 1:
            raise ShapeError(f"input {h}x{w} is too small for kernel {self.kernel_size}")
        xh = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), np.float32)
        q, s, z = functional.quantize_activations(xh.reshape(-1, c), isa=self.isa)
        y = np.empty((n, oh, ow, self.out_channels), np.float32)
        shape = (n, h, w, c, oh, ow, self.out_channels, kh, kw, sh, sw, dh, dw, pt, pl,
                 self.groups, c // self.groups, self.out_channels // self.groups)
        _conv.conv2d_gemm_f32(self._isa, q.reshape(n, h, w, c), shape, int(z), float(s),
                              self._packs, self.weight_scale, self.bias, y, nthreads)
        return np.ascontiguousarray(np.transpose(y, (0, 3, 1, 2)))
