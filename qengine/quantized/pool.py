"""Static-int8 pooling on uint8 NHWC: QMaxPool2d (no requantize: max commutes with the monotonic
quantization), QAveragePool2d (exact integer sum, then the normative requantize with
M = float32(s_x / (s_y·count)), which also changes scale/zero point), QGlobalAveragePool.
The NumPy definition is qengine.reference.conv.qpool_ref."""
import numpy as np

from .._ext import _conv
from ..errors import ConfigError
from ..window import out_size
from . import params as S


class _Pool:
    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode):
        self.kernel_size = S.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else S.pair(stride, "stride")
        self.padding = S.pads4(padding)
        self.dilation = S.pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)
        if isinstance(self.padding, str):
            return                # SAME pads are at most (k − 1)·d: always inside the window
        (kh, kw), (pt, pl, pb, pr) = self.kernel_size, self.padding
        if pt >= kh * self.dilation[0] or pb >= kh * self.dilation[0] or \
                pl >= kw * self.dilation[1] or pr >= kw * self.dilation[1]:
            raise ConfigError(f"padding {self.padding} must be smaller than the (dilated) kernel")

    def pads(self, h, w):
        """(top, left, bottom, right) for an input of spatial size h × w."""
        return S.resolve_pads(self.padding, h, w, self.kernel_size, self.stride, self.dilation)

    def output_shape(self, input_shape):
        n, h, w, c = input_shape
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = (self.kernel_size, self.stride,
                                                          self.dilation, self.pads(h, w))
        return (n, out_size(h, kh, sh, dh, pt, pb, self.ceil_mode),
                out_size(w, kw, sw, dw, pl, pr, self.ceil_mode), c)

    def _prepare(self, input_shape, kind, cip, zx, zy, lo, hi, mult):
        """(output shape, fn(x, y)) for uint8 C-contiguous inputs of exactly `input_shape`."""
        n, h, w, c = input_shape
        out_shape = self.output_shape(input_shape)
        _, oh, ow, _ = out_shape
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = (self.kernel_size, self.stride,
                                                          self.dilation, self.pads(h, w))
        shape = (n, h, w, c, oh, ow, c, kh, kw, sh, sw, dh, dw, pt, pl, c, 1, 1)
        if not n * oh * ow * c:
            return out_shape, lambda x, y: None
        pool = _conv.pool2d
        return out_shape, lambda x, y: pool(kind, x, shape, pb, pr, cip, zx, zy, lo, hi, mult,
                                            y, 0)

    def _run(self, x, kind, cip, zx, zy, lo, hi, mult, nthreads, out=None):
        x = S.nhwc_u8(x)
        n, h, w, c = x.shape
        _, oh, ow, _ = self.output_shape(x.shape)
        y = S.output(out, (n, oh, ow, c))
        if y.size:
            (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = (self.kernel_size, self.stride,
                                                              self.dilation, self.pads(h, w))
            shape = (n, h, w, c, oh, ow, c, kh, kw, sh, sw, dh, dw, pt, pl, c, 1, 1)
            _conv.pool2d(kind, x, shape, pb, pr, cip, zx, zy, lo, hi, mult, y, nthreads)
        return y


class QMaxPool2d(_Pool):
    """QMaxPool2d(kernel_size, stride=None (= kernel_size), padding=0, dilation=1,
    ceil_mode=False). padding as QConv2d's ('same_upper' / 'same_lower' included).
    Call: uint8 NHWC -> uint8 NHWC with the input's qparams."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)

    def __call__(self, x, *, nthreads=0, out=None):
        return self._run(x, 0, False, 0, 0, 0, 255, None, nthreads, out)

    def prepare_call(self, input_shape):
        return self._prepare(input_shape, 0, False, 0, 0, 0, 255, None)


class QAveragePool2d(_Pool):
    """QAveragePool2d(kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=False, *, input_scale, input_zero_point, output_scale=None,
    output_zero_point=None (default: the input's), activation=None, dilation=1).
    Call: uint8 NHWC -> uint8 NHWC."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=False, *, input_scale, input_zero_point, output_scale=None,
                 output_zero_point=None, activation=None, dilation=1):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.input_scale = S.scale(input_scale, "input_scale")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        self.output_scale = S.scale(self.input_scale if output_scale is None else output_scale,
                                    "output_scale")
        self.output_zero_point = S.zero_point(
            self.input_zero_point if output_zero_point is None else output_zero_point,
            "output_zero_point")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        kh, kw = self.kernel_size
        self._mult = S.avgpool_multipliers(self.input_scale, self.output_scale, kh * kw)

    def __call__(self, x, *, nthreads=0, out=None):
        return self._run(x, 1, self.count_include_pad, self.input_zero_point,
                         self.output_zero_point, self.lo, self.hi, self._mult, nthreads, out)

    def prepare_call(self, input_shape):
        return self._prepare(input_shape, 1, self.count_include_pad, self.input_zero_point,
                             self.output_zero_point, self.lo, self.hi, self._mult)


class QGlobalAveragePool:
    """QGlobalAveragePool(*, input_scale, input_zero_point, output_scale=None,
    output_zero_point=None, activation=None). Call: uint8 NHWC [N, H, W, C] -> [N, 1, 1, C]."""

    def __init__(self, *, input_scale, input_zero_point, output_scale=None,
                 output_zero_point=None, activation=None):
        self.input_scale = S.scale(input_scale, "input_scale")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        self.output_scale = S.scale(self.input_scale if output_scale is None else output_scale,
                                    "output_scale")
        self.output_zero_point = S.zero_point(
            self.input_zero_point if output_zero_point is None else output_zero_point,
            "output_zero_point")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        self._cache = {}

    def __call__(self, x, *, nthreads=0, out=None):
        x = S.nhwc_u8(x)
        n, h, w, c = x.shape
        y = S.output(out, (n, 1, 1, c))
        if y.size == 0 or h * w == 0:
            y[...] = self.output_zero_point
            return y
        if (h, w) not in self._cache:
            self._cache[(h, w)] = S.avgpool_multipliers(self.input_scale, self.output_scale,
                                                        h * w)
        shape = (n, h, w, c, 1, 1, c, h, w, 1, 1, 1, 1, 0, 0, c, 1, 1)
        _conv.pool2d(1, x, shape, 0, 0, False, self.input_zero_point, self.output_zero_point,
                     self.lo, self.hi, self._cache[(h, w)], y, nthreads)
        return y
