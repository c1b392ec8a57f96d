"""Dynamic-int8 2-D convolution: int8 weights (per output channel, packed once), the input
quantized per call (u8, per tensor), int32 accumulation, float32 output through the
dequantizing epilogue (docs/numerics.md, epilogue (a)) — what `quantize_dynamic` makes of a Conv
when there is no calibration data. NCHW float in, NCHW float out.

The paths of the static QConv2d, chosen from the shape:
  'dw'     depthwise (groups = Cin): the per-channel kernel's dequant twin (qe_dwconv.h), which
           writes NCHW itself;
  '1x1'    1×1, stride 1, no padding, one group: NCHW throughout, Y[Cout, pixels] = W·X per
           image with the weights as the GEMM's rows (qe_conv1x1_dynamic.h): no transpose;
  'im2col' everything else (and grouped 1×1): the GEMM conv driver (qe_conv.h), which writes
           NCHW from its tiles; its input is quantized straight from NCHW float into NHWC
           bytes in one compiled pass (qe_conv_dynamic.h).

The NumPy definition: quantize_activations_ref over the NHWC input, qconv2d_acc_ref, then
dequant_epilogue_ref (tests/test_dynamic_conv.py composes them).
"""
import numpy as np

from .. import _runtime, functional
from .._ext import _conv
from ..errors import ConfigError, ShapeError
from ..window import out_size
from . import params as S
from .conv import _pack_dw

_runtime.register_kernels("dwconv_u8s8_dequant", {name: _conv.dw_dequant_kernel_name(i)
                                                  for i, name in enumerate(_runtime.ISA_NAMES)})


class DynamicConv2d:
    """DynamicConv2d(weight_int8 OIHW, weight_scale [Cout], bias=None, *, stride=1, padding=0,
    dilation=1, groups=1, activation=None, isa=None, algorithm=None); padding as QConv2d's
    ('same_upper' / 'same_lower' included); activation None | 'relu' | 'relu6' |
    ('clip', min, max) (min/max may be None), applied to the float output as np.clip does;
    algorithm None (chosen from the shape) or 'im2col' / '1x1' / 'dw' where valid.
    Call: float32 NCHW [N, Cin, H, W] -> float32 NCHW."""

    def __init__(self, weight_int8, weight_scale, bias=None, *, stride=1, padding=0,
                 dilation=1, groups=1, activation=None, isa=None, algorithm=None):
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
        self.activation = activation
        self.lo, self.hi = _clamp_bounds(activation)
        self._geometry = {}       # (h, w) -> (pt, pl, oh, ow)
        self._isa = S.isa_index(isa)
        self.isa = _runtime.ISA_NAMES[self._isa]
        self.algorithm = self._choose(algorithm)
        if self.algorithm == "dw":
            self.depth_multiplier = cout // g
            taps = w.reshape(cout, kh * kw).T.astype(np.int64)               # [taps, Cout]
            self._layout = _conv.dw_kernel_layout(self._isa)
            # Σ_t w per channel, in the kernel's layout order: −z_a·Σw is made from it per call
            self._wdw, self._wsum, _ = _pack_dw(self._layout, taps,
                                                taps.sum(axis=0).astype(np.int32),
                                                np.ones(cout, np.float32), kw)
            self.kernel = _conv.dw_dequant_kernel_name(self._isa)
            return
        k = kh * kw * cin_g
        functional._check_k(k)
        if self.algorithm == "1x1" and g == 1:
            # NCHW straight through: Y[Cout, pixels] = W·X per image (qe_conv1x1_dynamic.h)
            self._apack, self._wsum = _conv.conv1x1_dyn_pack(
                self._isa, np.ascontiguousarray(w.reshape(cout, cin_g)))
            self.kernel = functional._KERNELS[self.isa]["name"]
            return
        wk = w.transpose(0, 2, 3, 1).reshape(g, cout // g, k)    # K order (ky, kx, ci)
        self._packs = []
        for gi in range(g):
            pw = functional.pack_weights(np.ascontiguousarray(wk[gi]), isa=self.isa)
            self._packs.append((pw.data, pw.colsum, pw.n, pw.k, pw.kp))
        self.kernel = pw.kernel

    def _choose(self, algorithm):
        (kh, kw), g = self.kernel_size, self.groups
        ok = {"im2col": True,
              "dw": g == self.in_channels and self.out_channels % g == 0,
              "1x1": (kh, kw) == (1, 1) and self.stride == (1, 1) and
                     self.padding in ((0, 0, 0, 0), *S.SAME)}
        if algorithm is not None:
            if algorithm not in ok:
                raise ConfigError(f"algorithm must be one of {sorted(ok)}, got {algorithm!r}")
            if not ok[algorithm]:
                raise ConfigError(f"algorithm {algorithm!r} does not apply to this convolution")
            return algorithm
        if ok["dw"] and g > 1:
            return "dw"
        return "1x1" if ok["1x1"] else "im2col"

    def __call__(self, x, *, nthreads=0, arena=None):
        """arena: a dict the caller keeps between calls (one per thread); the layer keeps its
        scratch and output buffers there instead of allocating them per call."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.dtype.kind != "f":
            raise ShapeError(f"DynamicConv2d input must be float NCHW with {self.in_channels} "
                             f"channels, got {x.dtype} {x.shape}")
        x = np.ascontiguousarray(x, np.float32)
        arena = {} if arena is None else arena
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        geo = self._geometry.get((h, w))
        if geo is None:           # pads and output size depend on the input size only
            pt, pl, pb, pr = S.resolve_pads(self.padding, h, w, self.kernel_size, self.stride,
                                            self.dilation)
            oh = out_size(h, kh, sh, dh, pt, pb)
            ow = out_size(w, kw, sw, dw, pl, pr)
            if oh < 1 or ow < 1:
                raise ShapeError(f"input {h}x{w} is too small for kernel {self.kernel_size}")
            if len(self._geometry) < 64:
                self._geometry[(h, w)] = (pt, pl, oh, ow)
        else:
            pt, pl, oh, ow = geo
        cout = self.out_channels
        y = arena["y"] = S.output(arena.get("y"), (n, cout, oh, ow), np.float32)
        if y.size == 0:
            return y
        if self.algorithm == "1x1" and self.groups == 1:
            _conv.conv1x1_dynamic(self._isa, self._apack, self._wsum, self.weight_scale,
                                  self.bias, c, x, y, self.lo, self.hi, nthreads)
            return y
        q = arena["q"] = S.output(arena.get("q"), (n, h, w, c))
        s, z = _conv.dynq_nchw(self._isa, x, q, nthreads)
        if self.algorithm == "dw":
            if self.depth_multiplier > 1:       # output channel o reads input channel o // mult
                q = np.ascontiguousarray(np.repeat(q, self.depth_multiplier, axis=3))
            shape = (n, h, w, cout, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, cout, 1, 1)
            _conv.dwconv_dequant(self._isa, q, shape, z, s, self._wdw, self._layout,
                                 self._wsum, self.weight_scale, self.bias, y, self.lo, self.hi,
                                 nthreads)
            return y
        # '1x1' and 'im2col' share the conv driver here: for a 1×1 its "im2col" is the copy of
        # pixel rows into the packed panels that a plain GEMM makes too, and the driver writes
        # NCHW from its tiles (qe_conv.h)
        shape = (n, h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl,
                 self.groups, c // self.groups, cout // self.groups)
        _conv.conv2d_gemm_f32(self._isa, q, shape, z, s, self._packs, self.weight_scale,
                              self.bias, y, nthreads, True, self.lo, self.hi)
        return y

    def __repr__(self):
        return (f"DynamicConv2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, groups={self.groups}, activation={self.activation!r},"
                f" algorithm={self.algorithm!r}, kernel={self.kernel!r})")


def _clamp_bounds(activation):
    """float32 (lo, hi) of the fused clamp; (−inf, inf) for none."""
    if activation is None:
        return -np.inf, np.inf
    if activation == "relu":
        return 0.0, np.inf
    if activation == "relu6":
        return 0.0, 6.0
    if isinstance(activation, tuple) and len(activation) == 3 and activation[0] == "clip":
        lo = -np.inf if activation[1] is None else float(np.float32(activation[1]))
        hi = np.inf if activation[2] is None else float(np.float32(activation[2]))
        if not lo <= hi:
            raise ConfigError(f"activation {activation!r}: need min <= max")
        return lo, hi
    raise ConfigError(f"activation must be None, 'relu', 'relu6' or ('clip', min, max), got "
                      f"{activation!r}")
