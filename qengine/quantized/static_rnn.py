"""StaticRNN: the integer LSTM / GRU (one ONNX LSTM/GRU node: one layer, 1 or 2 directions) with
calibrated activations, schemes "int16" (16x8) and "int8" (8x8); docs/numerics.md "Integer LSTM
and GRU". Float in, float out, integer inside: X is quantized with the layer's static input
qparams, every step runs in integers (include/qengine/rnn/qe_rnn_static.h, the whole time loop in
C), and Y / Y_h / Y_c are the dequantized codes — exactly, so states passed out and back in
(streaming, chunk by chunk) come back as the same codes. NumPy definition:
qengine.reference.static_rnn.static_rnn_ref.
"""
import numpy as np

from .. import _runtime
from .._ext import _rnn
from ..errors import ConfigError, ShapeError
from .weights import quantize_per_channel_symmetric

_F = np.float32
_KIND = {"lstm": 0, "gru": 1}
_SCHEME = {"int16": 0, "int8": 1}
GATES = {"lstm": 4, "gru": 3}


class Params:
    """What calibration fixes for one layer: the scheme, s_x / z_x of the input, s_h / z_h of h
    and the cell exponent e_c (s_c = 2^(e_c − 15)); numerics.md "Integer LSTM and GRU"."""

    def __init__(self, scheme, s_x, z_x, s_h, z_h, e_c):
        if scheme not in _SCHEME:
            raise ValueError(f"scheme must be 'int16' or 'int8', got {scheme!r}")
        if scheme == "int16" and (z_x or z_h or s_h != 2.0 ** -15):
            raise ValueError("int16 scheme: z_x = z_h = 0 and s_h = 2^-15")
        if not 0 <= int(e_c) <= 15:
            raise ValueError(f"e_c must be in [0, 15], got {e_c}")
        self.scheme, self.s_x, self.z_x = scheme, _F(s_x), int(z_x)
        self.s_h, self.z_h, self.e_c = _F(s_h), int(z_h), int(e_c)

    @property
    def s_c(self):
        return _F(2.0 ** (self.e_c - 15))

    def tuple(self):
        return (self.scheme, float(self.s_x), self.z_x, float(self.s_h), self.z_h, self.e_c)


def act_range(scheme):
    """The activation codes' range: int16 narrow [−32767, 32767], or uint8."""
    return (-32767, 32767) if scheme == "int16" else (0, 255)


def _multipliers(p, Ws, Rs):
    """mx = float32(s_x·s_w·4096), mh = float32(s_h·s_r·4096): float64 products, one rounding."""
    return ((np.float64(p.s_x) * np.asarray(Ws, np.float64) * 4096).astype(_F),
            (np.float64(p.s_h) * np.asarray(Rs, np.float64) * 4096).astype(_F))


def _biases(kind, B, GH, lbr):
    """(bx, bh) in Q3.12 units, float32: Wb + Rb on every row of bx, except a GRU with
    linear_before_reset, whose candidate rows take Wb in bx and Rb in bh."""
    B = np.asarray(B, np.float64)
    bx, bh = B[:GH] + B[GH:], np.zeros(GH)
    if kind == "gru" and lbr:
        H = GH // 3
        bx[2 * H:], bh[2 * H:] = B[2 * H:GH], B[GH + 2 * H:]
    return (bx * 4096).astype(_F), (bh * 4096).astype(_F)


def _pad_cols(a, kp):
    out = np.zeros(a.shape[:-1] + (kp,), a.dtype)
    out[..., :a.shape[-1]] = a
    return np.ascontiguousarray(out)


def _kp(k):
    return -(-k // _rnn.SRNN_KB) * _rnn.SRNN_KB


def cell_exponent(max_abs_c):
    """e_c for a cell range: the smallest e in [0, 15] with max|c| < 2^e (s_c = 2^(e − 15))."""
    m = float(max_abs_c)
    if not np.isfinite(m):
        raise ConfigError(f"the cell state's calibrated range is not finite ({m})")
    e = 0
    while e < 15 and m >= 2.0 ** e:
        e += 1
    return e


class StaticRNN:
    """StaticRNN(kind, Wq, Ws, Rq, Rs, B, params, *, direction="forward",
    linear_before_reset=0, isa=None)

    Wq int8 [D, G·H, I] / Rq int8 [D, G·H, H] with per-row scales Ws / Rs [D, G·H] (symmetric,
    narrow range), B float [D, 2·G·H] or None (ONNX gate order: LSTM i,o,f,c; GRU z,r,h);
    params: Params (scheme, input / h qparams, cell exponent). Call with
    X float [T, batch, I], optional sequence_lens [batch], initial_h / initial_c [D, batch, H];
    returns float32 (Y [T, D, batch, H], Y_h [D, batch, H], Y_c [D, batch, H] or None).
    nthreads: the time loop's team (0 = the process setting for layers worth it); the units are
    divided among it and every team size gives the same bits."""

    def __init__(self, kind, Wq, Ws, Rq, Rs, B, params, *, direction="forward",
                 linear_before_reset=0, isa=None):
        if kind not in _KIND:
            raise ConfigError(f"kind must be 'lstm' or 'gru', got {kind!r}")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ConfigError(f"direction must be forward, reverse or bidirectional, got "
                              f"{direction!r}")
        if not isinstance(params, Params):
            raise ConfigError("params must be a qengine.quantized.static_rnn.Params")
        Wq, Rq = np.asarray(Wq), np.asarray(Rq)
        G = GATES[kind]
        if Wq.dtype != np.int8 or Rq.dtype != np.int8 or Wq.ndim != 3 or Rq.ndim != 3 or \
                Wq.shape[1] % G or Rq.shape[:2] != Wq.shape[:2] or \
                Rq.shape[2] * G != Rq.shape[1]:
            raise ShapeError(f"{kind}: W int8 [D, {G}·H, I] and R int8 [D, {G}·H, H] expected, "
                             f"got {Wq.dtype} {Wq.shape} and {Rq.dtype} {Rq.shape}")
        D, GH, I = Wq.shape
        if D != (2 if direction == "bidirectional" else 1):
            raise ShapeError(f"{direction} needs {2 if direction == 'bidirectional' else 1} "
                             f"direction(s) of weights, got {D}")
        self.kind, self.params, self.direction = kind, params, direction
        self.lbr = int(bool(linear_before_reset))
        self.D, self.H, self.I = D, GH // G, I
        self._isa = _runtime.isa_index(isa)
        self.kernel = _rnn.s16s8_dot_name(self._isa)
        Ws = np.asarray(Ws, _F).reshape(D, GH)
        Rs = np.asarray(Rs, _F).reshape(D, GH)
        B = np.zeros((D, 2 * GH), _F) if B is None else np.asarray(B, _F).reshape(D, 2 * GH)
        self.Wq, self.Ws, self.Rq, self.Rs, self.B = Wq, Ws, Rq, Rs, B
        self._w = [_pad_cols(Wq[d], _kp(I)) for d in range(D)]
        # AVX2 multiplies int16 pairs: W, which every step's projection reuses from L1, is kept
        # widened as well, in 16-row panels (no vpmovsxbw per use, no horizontal sums); R stays
        # int8 — a recurrent step streams it, and int16 R measured slower (bytes, not
        # instructions, bound the step)
        avx2 = _runtime.ISA_NAMES[self._isa] == "avx2"
        self._w16 = [_rnn.s16_pack_panels(w) if avx2 else None for w in self._w]
        self._r = [_pad_cols(Rq[d], _kp(self.H)) for d in range(D)]
        self._m, self._b = [], []
        for d in range(D):
            self._m.append(tuple(np.ascontiguousarray(m) for m in
                                 _multipliers(params, Ws[d], Rs[d])))
            self._b.append(tuple(np.ascontiguousarray(b) for b in
                                 _biases(kind, B[d], GH, self.lbr)))
        p = params
        self._mo = float(_F(2.0 ** -30 / np.float64(p.s_h)))
        self._mq = float(_F(np.float64(p.s_h) * 32768))

    @classmethod
    def from_float(cls, kind, W, R_, B, params, **kw):
        """Float ONNX weights W [D, G·H, I], R [D, G·H, H] → per-row int8."""
        W, R_ = np.asarray(W, _F), np.asarray(R_, _F)
        qs = [quantize_per_channel_symmetric(W[d]) for d in range(W.shape[0])]
        rs = [quantize_per_channel_symmetric(R_[d]) for d in range(R_.shape[0])]
        return cls(kind, np.stack([q for q, _ in qs]), np.stack([s for _, s in qs]),
                   np.stack([q for q, _ in rs]), np.stack([s for _, s in rs]), B, params, **kw)

    def __call__(self, X, sequence_lens=None, initial_h=None, initial_c=None, *, nthreads=0):
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[2] != self.I or X.dtype.kind != "f":
            raise ShapeError(f"{self.kind}: X must be float [T, batch, {self.I}], got "
                             f"{X.dtype} {X.shape}")
        T, nb, _ = X.shape
        D, H, p = self.D, self.H, self.params
        lens = None
        if sequence_lens is not None:
            lens = np.ascontiguousarray(sequence_lens, np.int32).reshape(-1)
            if lens.shape != (nb,) or np.any(lens < 0) or np.any(lens > T):
                raise ShapeError(f"sequence_lens must be [{nb}] values in [0, {T}]")
        for name, s in (("initial_h", initial_h), ("initial_c", initial_c)):
            if s is not None and np.shape(s) != (D, nb, H):
                raise ShapeError(f"{name} must be [{D}, {nb}, {H}], got {np.shape(s)}")
        lo, hi = act_range(p.scheme)
        X = np.ascontiguousarray(X, _F)
        Y = np.empty((T, D, nb, H), _F)
        Yh = np.empty((D, nb, H), _F)
        Yc = np.empty((D, nb, H), _F) if self.kind == "lstm" else None
        for d in range(D):
            h0 = None if initial_h is None else np.ascontiguousarray(initial_h[d], _F)
            c0 = None if initial_c is None or Yc is None else \
                np.ascontiguousarray(initial_c[d], _F)
            mx, mh = self._m[d]
            bx, bh = self._b[d]
            _rnn.srnn_forward(self._isa, _KIND[self.kind], _SCHEME[p.scheme], X, self._w[d],
                              self._w16[d], self._r[d], mx, mh, bx, bh, lens, h0, c0, Y, d, Yh[d],
                              None if Yc is None else Yc[d],
                              int(self.direction == "reverse" or d == 1), self.lbr, p.e_c,
                              p.z_h, self._mo, self._mq, float(p.s_x), p.z_x, lo, hi,
                              float(p.s_h), float(p.s_c), int(nthreads))
        return Y, Yh, Yc
