"""QConv2d: static-int8 2-D convolution on uint8 NHWC activations (docs/numerics.md epilogue (b)).

y[n, oy, ox, o] = qe_requantize(Σ (x − z_x)·w[o] + bias_q[o], M[o], z_y, lo, hi)

Weights are quantized (or taken as int8) and packed at construction, with bias_q − z_x·colsum
folded into one int32 per output channel, so a call is one compiled, GIL-free kernel:
  'dw'     depthwise (groups = Cin, Cout = multiplier·Cin): per-channel kernel (qe_dwconv.h);
  '1x1'    1×1, stride 1, no padding: GEMM straight over the NHWC pixels (no im2col);
  'im2col' everything else: im2col written into the GEMM's packed layout per thread (qe_conv.h).
Weights whose int8 values all lie in [−7, 7] (StaticQuantConfig(weight_bits=4), QAT W4, INT4 QDQ
imports) are held two per byte instead, in the 4-bit kernels' layout, and '1x1' / 'im2col' run
qe_conv_w4.h: the same int32 sums and requantize, hence the same bytes (depthwise stays int8:
its weights are kh·kw bytes per channel).
The NumPy definition is qengine.reference.conv.qconv2d_ref.
"""
import numpy as np

from .. import _runtime, functional
from .._ext import _conv
from ..errors import ConfigError, ShapeError
from ..window import out_size
from . import params as S

_runtime.register_kernels("dwconv_u8s8", {name: _conv.dw_kernel_name(i)
                                          for i, name in enumerate(_runtime.ISA_NAMES)})


class QConv2d:
    """QConv2d(weight, bias=None, *, input_scale, input_zero_point, output_scale,
    output_zero_point, weight_scale=None, stride=1, padding=0, dilation=1, groups=1,
    activation=None, isa=None, algorithm=None)

    weight: float32 OIHW [Cout, Cin/groups, kh, kw] (quantized here: symmetric per output
    channel, narrow range) or int8 OIHW with weight_scale (scalar or [Cout]).
    bias: None, float [Cout] (quantized at s_x·s_w) or int32 [Cout] (already bias_q).
    padding: int, (ph, pw) or (top, left, bottom, right) — padded taps are the real value 0 —,
    or 'same_upper' / 'same_lower' (ONNX auto_pad, resolved for each input's size).
    activation: None | 'relu' | 'relu6' | ('clip', min, max), fused as the output clamp.
    algorithm: None (chosen from the shape) or force 'im2col' / '1x1' / 'dw' where valid.
    weight_bits: None (4 when every int8 weight lies in [−7, 7] and the algorithm is not 'dw',
    else 8), 8 (the int8 kernels) or 4 (int4 in memory; the weights must lie in [−7, 7]).
    Call: x uint8 NHWC [N, H, W, Cin] -> uint8 NHWC [N, OH, OW, Cout]; nthreads=0 = default.
    """

    def __init__(self, weight, bias=None, *, input_scale, input_zero_point, output_scale,
                 output_zero_point, weight_scale=None, stride=1, padding=0, dilation=1,
                 groups=1, activation=None, isa=None, algorithm=None, weight_bits=None):
        w = np.asarray(weight)
        if w.ndim != 4:
            raise ShapeError(f"QConv2d weight must be OIHW [Cout, Cin/groups, kh, kw], got {w.shape}")
        cout, cin_g, kh, kw = w.shape
        if isinstance(groups, bool) or int(groups) != groups or groups < 1 or cout % groups:
            raise ConfigError(f"groups must be a positive int dividing Cout={cout}, got {groups!r}")
        self.groups = g = int(groups)
        self.in_channels, self.out_channels = cin_g * g, cout
        self.kernel_size = (kh, kw)
        self.stride, self.dilation = S.pair(stride, "stride"), S.pair(dilation, "dilation")
        self.padding = S.pads4(padding)
        self.input_scale = S.scale(input_scale, "input_scale")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        self.weight_int8, self.weight_scale = S.weights_s8(w, weight_scale, cout)
        self.bias_int32 = S.bias_q(bias, self.input_scale, self.weight_scale)
        self.multiplier = S.multipliers(self.input_scale, self.weight_scale, self.output_scale)
        self._isa = S.isa_index(isa)
        self.isa = _runtime.ISA_NAMES[self._isa]
        self.algorithm = self._choose(algorithm)
        za = np.int64(self.input_zero_point)
        if self.algorithm == "dw":
            self.depth_multiplier = cout // g
            taps = self.weight_int8.reshape(cout, kh * kw).T.astype(np.int64)   # [taps, Cout]
            bias = _wrap32(self.bias_int32.astype(np.int64) - za * taps.sum(axis=0))
            self._layout = _conv.dw_kernel_layout(self._isa)
            self._wdw, self._bias, self._mult = _pack_dw(self._layout, taps, bias,
                                                         self.multiplier, kw)
            self.kernel = _conv.dw_kernel_name(self._isa)
            self.weight_bits = 8
        else:
            k = kh * kw * cin_g
            functional._check_k(k)
            # K order (ky, kx, ci): the order the im2col (and NHWC 1×1 rows) present the inputs
            wk = self.weight_int8.transpose(0, 2, 3, 1).reshape(g, cout // g, k)
            self.weight_bits = S.static_weight_bits(self.weight_int8, weight_bits)
            self._mult = np.ascontiguousarray(self.multiplier)
            if self.weight_bits == 4:
                self._packs, self.kernel = S.pack_w4(wk, self._isa)
                self._bias = _wrap32(self.bias_int32.astype(np.int64)
                                     - za * wk.reshape(cout, k).sum(axis=1, dtype=np.int64))
                return
            self._packs, cols = [], []
            for gi in range(g):
                pw = functional.pack_weights(np.ascontiguousarray(wk[gi]), isa=self.isa)
                self._packs.append((pw.data, pw.colsum, pw.n, pw.k, pw.kp))
                cols.append(pw.colsum)
            self._bias = _wrap32(self.bias_int32.astype(np.int64)
                                 - za * np.concatenate(cols).astype(np.int64))
            self.kernel = pw.kernel

    def _choose(self, algorithm):
        cout, (kh, kw), g = self.out_channels, self.kernel_size, self.groups
        # SAME padding of a 1×1 stride-1 window is zero at every input size
        ok = {"im2col": True,
              "dw": g == self.in_channels and cout % g == 0,
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

    def pads(self, h, w):
        """(top, left, bottom, right) for an input of spatial size h × w."""
        return S.resolve_pads(self.padding, h, w, self.kernel_size, self.stride, self.dilation)

    def output_shape(self, input_shape):
        n, h, w, _ = input_shape
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = (self.kernel_size, self.stride,
                                                          self.dilation, self.pads(h, w))
        return (n, out_size(h, kh, sh, dh, pt, pb), out_size(w, kw, sw, dw, pl, pr),
                self.out_channels)

    def __call__(self, x, *, nthreads=0, out=None):
        x = S.nhwc_u8(x, "x", self.in_channels)
        y = S.output(out, self.output_shape(x.shape))
        if y.size:
            self._run(x, y, nthreads)
        return y

    def _run(self, x, y, nthreads, skip=None, add=None):
        """The kernel call writing conv(x) into y; with skip and add (QConvAdd2d: 1x1 and
        im2col only) y = QAdd(conv(x), skip), fused."""
        n, h, w, c = x.shape
        _, oh, ow, cout = y.shape
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, _, _) = (self.kernel_size, self.stride,
                                                        self.dilation, self.pads(h, w))
        zx, zy = self.input_zero_point, self.output_zero_point
        if self.algorithm == "dw":
            if self.depth_multiplier > 1:       # output channel o reads input channel o // mult
                x = np.ascontiguousarray(np.repeat(x, self.depth_multiplier, axis=3))
            shape = (n, h, w, cout, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, cout, 1, 1)
            _conv.dwconv(self._isa, x, shape, zx, self._wdw, self._layout, self._bias,
                         self._mult, zy, self.lo, self.hi, y, nthreads)
        elif self.weight_bits == 4:
            g = self.groups
            shape = (n, h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, g, c // g,
                     cout // g)
            _conv.conv2d_w4(self._isa, x, shape, zx, self._packs, self._bias, self._mult, zy,
                            self.lo, self.hi, y, nthreads, skip, add)
        elif self.algorithm == "1x1":
            _conv.conv1x1(self._isa, x, n * h * w, c, self._packs, self._bias, self._mult, zy,
                          self.lo, self.hi, y, cout, nthreads, skip, add)
        else:
            g = self.groups
            shape = (n, h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, g, c // g,
                     cout // g)
            _conv.conv2d_gemm(self._isa, x, shape, zx, self._packs, self._bias, self._mult, zy,
                              self.lo, self.hi, y, nthreads, skip, add)

    def _driver_shape(self, input_shape):
        """(output shape, the conv driver's shape tuple) for an NHWC input of `input_shape`."""
        n, h, w, c = input_shape
        _, oh, ow, cout = out_shape = self.output_shape(input_shape)
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, _, _) = (self.kernel_size, self.stride,
                                                        self.dilation, self.pads(h, w))
        g = self.groups
        return out_shape, (n, h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl, g, c // g,
                           cout // g)

    def prepare_call(self, input_shape):
        """(output shape, fn(x, y)) for inputs of exactly `input_shape`: every argument of the
        kernel call resolved now, so that a graph op calling it again with a checked uint8
        C-contiguous x of that shape makes one call into compiled code (graph/executor.py)."""
        out_shape, shape = self._driver_shape(input_shape)
        n, h, w, c, cout = *input_shape, out_shape[3]
        zx, zy, lo, hi, isa = self.input_zero_point, self.output_zero_point, self.lo, self.hi, \
            self._isa
        if self.algorithm == "dw" and self.depth_multiplier == 1:
            shape = shape[:3] + (cout,) + shape[4:15] + (cout, 1, 1)   # the dw driver's form
            args = (self._wdw, self._layout, self._bias, self._mult, zy, lo, hi)
            kernel = _conv.dwconv
            return out_shape, lambda x, y: kernel(isa, x, shape, zx, *args, y, 0)
        if self.weight_bits == 4:
            packs, bias, mult, kernel = self._packs, self._bias, self._mult, _conv.conv2d_w4
            return out_shape, lambda x, y: kernel(isa, x, shape, zx, packs, bias, mult, zy, lo,
                                                  hi, y, 0)
        if self.algorithm == "1x1":
            m, packs, bias, mult = n * h * w, self._packs, self._bias, self._mult
            kernel = _conv.conv1x1
            return out_shape, lambda x, y: kernel(isa, x, m, c, packs, bias, mult, zy, lo, hi,
                                                  y, cout, 0)
        if self.algorithm == "im2col":
            packs, bias, mult, kernel = self._packs, self._bias, self._mult, _conv.conv2d_gemm
            return out_shape, lambda x, y: kernel(isa, x, shape, zx, packs, bias, mult, zy, lo,
                                                  hi, y, 0)
        return out_shape, lambda x, y: self(x, out=y)

    def prepare_call_add(self, input_shape, add):
        """prepare_call for QConvAdd2d: (output shape, fn(x, skip, y)) making y = QAdd(conv(x),
        skip) in one fused kernel call (algorithms 1x1 and im2col); add = the QAdd arguments
        (a_zp, b_zp, zp, lo, hi, a_mult, b_mult)."""
        out_shape, shape = self._driver_shape(input_shape)
        n, h, w, c, cout = *input_shape, out_shape[3]
        zx, zy, lo, hi, isa = self.input_zero_point, self.output_zero_point, self.lo, self.hi, \
            self._isa
        packs, bias, mult = self._packs, self._bias, self._mult
        if self.weight_bits == 4:
            kernel = _conv.conv2d_w4
            return out_shape, lambda x, skip, y: kernel(isa, x, shape, zx, packs, bias, mult, zy,
                                                        lo, hi, y, 0, skip, add)
        if self.algorithm == "1x1":
            m, kernel = n * h * w, _conv.conv1x1
            return out_shape, lambda x, skip, y: kernel(isa, x, m, c, packs, bias, mult, zy, lo,
                                                        hi, y, cout, 0, skip, add)
        if self.algorithm != "im2col":
            raise ConfigError(f"the {self.algorithm!r} convolution has no fused residual add")
        kernel = _conv.conv2d_gemm
        return out_shape, lambda x, skip, y: kernel(isa, x, shape, zx, packs, bias, mult, zy, lo,
                                                    hi, y, 0, skip, add)

    def __repr__(self):
        return (f"QConv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size},"
                f" stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, algorithm={self.algorithm!r}, "
                f"weight_bits={self.weight_bits}, kernel={self.kernel!r})")


class QConvAdd2d:
    """QConvAdd2d(conv, add): y = add(conv(x), skip) — a QConv2d whose output only a QAdd reads
    (a ResNet / MobileNetV2 residual), run as one kernel call when the convolution goes through
    the GEMM driver (algorithms '1x1' and 'im2col'): each tile of the conv output, once
    requantized to uint8 and still in L1, is added to the matching block of `skip` in place,
    inside the conv's parallel loop (include/qengine/eltwise/qe_u8_residual.h). The add is the
    QAdd kernel itself, so the bytes equal add(conv(x), skip) on every ISA and thread count.

    conv: a QConv2d; add: a QAdd whose operand a is the conv output (a_scale / a_zero_point =
    the conv's output_scale / output_zero_point). The operand order of the graph's Add does not
    matter: QAdd computes float32(a − z_a)·M_a + float32(b − z_b)·M_b, and float addition is
    commutative bit for bit. A depthwise conv (no GEMM tiles) and a skip of another shape
    (NumPy broadcasting) run the two layers one after the other — the same bytes, unfused.
    Call: (x uint8 NHWC, skip uint8 [N, OH, OW, Cout]) -> uint8 NHWC. NumPy definition:
    qengine.reference.conv.qadd_ref(qconv2d_ref(x, ...), ..., skip, ...).
    """

    def __init__(self, conv, add):
        from .elementwise import QAdd
        if not isinstance(conv, QConv2d) or not isinstance(add, QAdd):
            raise ConfigError(f"QConvAdd2d takes a QConv2d and a QAdd, got "
                              f"{type(conv).__name__} and {type(add).__name__}")
        if (add.a_scale, add.a_zero_point) != (conv.output_scale, conv.output_zero_point):
            raise ConfigError(f"the QAdd's operand a must be the conv output: its qparams "
                              f"({add.a_scale}, {add.a_zero_point}) differ from the conv's "
                              f"output ({conv.output_scale}, {conv.output_zero_point})")
        self.conv, self.add = conv, add
        self.fused = conv.algorithm in ("1x1", "im2col")
        self._add = (add.a_zero_point, add.b_zero_point, add.output_zero_point, add.lo, add.hi,
                     add._ma, add._mb)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def output_shape(self, input_shape):
        return self.conv.output_shape(input_shape)

    def __call__(self, x, skip, *, nthreads=0, out=None):
        x = S.nhwc_u8(x, "x", self.conv.in_channels)
        shape = self.conv.output_shape(x.shape)
        if not (self.fused and isinstance(skip, np.ndarray) and skip.dtype == np.uint8 and
                skip.shape == shape):
            return self.add(self.conv(x, nthreads=nthreads), skip, nthreads=nthreads, out=out)
        skip = np.ascontiguousarray(skip)
        y = S.output(out, shape)
        if np.may_share_memory(y, skip) or np.may_share_memory(y, x):
            y = np.empty(shape, np.uint8)       # the kernel reads x and skip while writing y
        if y.size:
            self.conv._run(x, y, nthreads, skip, self._add)
        return y

    def prepare_call(self, input_shape, skip_shape):
        """(output shape, fn(x, skip, y)) for uint8 C-contiguous x, skip of exactly these shapes
        (and y not overlapping them), or None when the pair does not run fused."""
        if not self.fused or tuple(skip_shape) != self.conv.output_shape(input_shape):
            return None
        return self.conv.prepare_call_add(input_shape, self._add)

    def __repr__(self):
        return f"QConvAdd2d({self.conv!r}, fused={self.fused})"


class QConvTranspose2d:
    """QConvTranspose2d(weight, bias=None, *, input_scale, input_zero_point, output_scale,
    output_zero_point, weight_scale, stride=1, padding=0, output_padding=0, dilation=1,
    activation=None, isa=None): ONNX ConvTranspose (group 1) on uint8 NHWC.

    weight: int8 [Cout, Cin, kh, kw] — the ConvTranspose weights [Cin, Cout, kh, kw] with their
    channel axes swapped, so output channels come first as in every int8 layer — with
    weight_scale per output channel; bias float [Cout] (quantized at s_x·s_w).

    A transposed convolution is a convolution (stride 1, the same dilation) of the input with
    s−1 zeros stuffed between its pixels, padded by (k−1)·d − p before and (k−1)·d − p +
    output_padding after, with the kernel flipped in space: each output sums exactly the
    products ConvTranspose sums, so QConv2d's kernels and requantize run it. The stuffed
    zeros are the input's zero point (the real value 0). When the kernel equals the stride
    and nothing is padded (the U-Net's up-sampling) every output pixel reads one input pixel:
    that case is one int8 GEMM [N·H·W, Cin] × [Cin, kh·kw·Cout] and a pixel shuffle, the same
    sums and the same requantize without the zeros."""

    def __init__(self, weight, bias=None, *, input_scale, input_zero_point, output_scale,
                 output_zero_point, weight_scale, stride=1, padding=0, output_padding=0,
                 dilation=1, activation=None, isa=None):
        w = np.asarray(weight)
        if w.ndim != 4 or w.dtype != np.int8:
            raise ShapeError(f"QConvTranspose2d weight must be int8 [Cout, Cin, kh, kw], got "
                             f"{w.dtype} {w.shape}")
        cout, cin, kh, kw = w.shape
        self.in_channels, self.out_channels = cin, cout
        self.stride, self.dilation = S.pair(stride, "stride"), S.pair(dilation, "dilation")
        pt, pl, pb, pr = S.pads4(padding)
        op = (output_padding, output_padding) if np.ndim(output_padding) == 0 \
            else tuple(output_padding)
        if len(op) != 2 or any(int(v) != v for v in op):
            raise ConfigError(f"output_padding must be an int or a pair, got {output_padding!r}")
        oph, opw = int(op[0]), int(op[1])
        (sh, sw), (dh, dw) = self.stride, self.dilation
        if not (0 <= oph < max(sh, dh) and 0 <= opw < max(sw, dw)):
            raise ConfigError(f"output_padding {(oph, opw)} must be below the stride or the "
                              f"dilation")
        pads = ((kh - 1) * dh - pt, (kw - 1) * dw - pl, (kh - 1) * dh - pb + oph,
                (kw - 1) * dw - pr + opw)
        if min(pads) < 0:
            raise ConfigError(f"pads {(pt, pl, pb, pr)} larger than (kernel − 1)·dilation have "
                              f"no int8 form")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        common = dict(input_scale=input_scale, input_zero_point=input_zero_point,
                      output_scale=output_scale, output_zero_point=output_zero_point,
                      weight_scale=weight_scale, activation=activation, isa=isa)
        self.conv = QConv2d(np.ascontiguousarray(w[:, :, ::-1, ::-1]), bias, padding=pads,
                            dilation=self.dilation, **common)
        self.gemm = None
        if (kh, kw) == self.stride and self.dilation == (1, 1) and \
                not any((pt, pl, pb, pr, oph, opw)):
            from .linear import QLinear
            ws = np.broadcast_to(np.asarray(weight_scale, np.float32).reshape(-1), (cout,))
            rows = w.transpose(2, 3, 0, 1).reshape(kh * kw * cout, cin)      # (i, j, o) × c
            self.gemm = QLinear(rows, None if bias is None else np.tile(
                np.asarray(bias).reshape(-1), kh * kw), weight_scale=np.tile(ws, kh * kw),
                **{k: v for k, v in common.items() if k != "weight_scale"})

    def output_shape(self, x_shape):
        n, h, w, _ = x_shape
        (sh, sw) = self.stride
        hs, ws = (h - 1) * sh + 1, (w - 1) * sw + 1
        return self.conv.output_shape((n, hs, ws, self.in_channels))

    def __call__(self, x, *, nthreads=0, out=None):
        x = S.nhwc_u8(x, "x", self.in_channels)
        n, h, w, c = x.shape
        (sh, sw) = self.stride
        if self.gemm is not None and x.size:
            y = self.gemm(np.ascontiguousarray(x).reshape(n * h * w, c), nthreads=nthreads)
            y = y.reshape(n, h, w, sh, sw, self.out_channels).transpose(0, 1, 3, 2, 4, 5)
            shape = (n, h * sh, w * sw, self.out_channels)
            res = S.output(out, shape)
            np.copyto(res, y.reshape(shape))
            return res
        if (sh, sw) != (1, 1) and x.size:
            stuffed = np.full((n, (h - 1) * sh + 1, (w - 1) * sw + 1, c), self.input_zero_point,
                              np.uint8)
            stuffed[:, ::sh, ::sw] = x
            x = stuffed
        return self.conv(x, nthreads=nthreads, out=out)


def _wrap32(v):
    return ((np.asarray(v, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def _pack_dw(layout, taps, bias, mult, kw):
    """Depthwise weights [taps, C] (int64 holding int8, taps in (ky, kx) order of a kw-wide
    window), folded int32 bias [C] and float32 multipliers [C] in the layout of the ISA's kernel
    (include/qengine/conv/qe_dwconv_params.h). Returns (weights, bias, mult), all C-contiguous."""
    ntaps, c = taps.shape
    if layout == 0:
        # low 16 bits = the int8 weight, high 16 = 0: the vpmaddwd layout
        return (np.ascontiguousarray((taps & 0xFFFF).astype(np.int32)),
                np.ascontiguousarray(bias), np.ascontiguousarray(mult, np.float32))
    # layout 1, 64-channel vpdpbusd blocks, 4 taps of one channel per int32 lane: per (block,
    # row, group of 4 taps), byte k of lane 4L + j of vector q = tap 4g + k of channel
    # 16L + 4q + j; taps past kw are 0
    nb, kh, ng = -(-c // 64), ntaps // kw, -(-kw // 4)
    wt = np.zeros((kh, ng * 4, nb * 64), np.int8)
    wt[:, :kw, :c] = taps.reshape(kh, kw, c)
    # [kh, g, k, block, L, q, j] -> [block, kh, g, q, L, j, k]
    wt = wt.reshape(kh, ng, 4, nb, 4, 4, 4).transpose(3, 0, 1, 5, 4, 6, 2)

    def permute(v, dtype):      # entry 16q + 4L + j of a block = channel 16L + 4q + j
        pad = np.zeros(nb * 64, dtype)
        pad[:c] = v
        return np.ascontiguousarray(pad.reshape(nb, 4, 4, 4).transpose(0, 2, 1, 3).reshape(-1))
    return np.ascontiguousarray(wt), permute(bias, np.int32), permute(mult, np.float32)
