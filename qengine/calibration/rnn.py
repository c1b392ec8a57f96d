"""Calibration of the integer LSTM / GRU (qengine/quantized/static_rnn.py): the ranges its
schemes need, observed on the float layer as it runs over the calibration data.

A Graph's LSTM returns every step's h (Y) but only the last cell state, and the integer layer
needs the range of every cell state (its int16 grid) as well as of every h (the uint8 grid of
the "int8" scheme) and of the input. RNNObserver therefore replays each call of the float node
in float64 (`replay`, the ONNX equations), keeping every step's states, on the very inputs the
node got (its X, sequence_lens and initial states, so a stream calibrated chunk by
chunk with its state carried in is observed in its steady state). The ranges merge exactly
(min / max), so shards of the data calibrated apart and merged give the same parameters.

The gate pre-activations need no calibration: their format is fixed (Q3.12, ±8, where sigmoid
and tanh are flat to 3.4e-4 and 2e-7); the observer counts how often they leave it.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def replay(kind, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, *,
           direction="forward", layout=0, linear_before_reset=0):
    """ONNX LSTM / GRU (default activations, no clip, no peepholes) in float64. Returns
    (steps, h_n, c_n): steps = [(h, c or None)] of the rows that step, per direction and step in
    processing order (direction 0 first); h_n, c_n [D, batch, H] the final states (layout 0)."""
    X = np.asarray(X, np.float64)
    if layout == 1:
        X = np.swapaxes(X, 0, 1)
        initial_h = None if initial_h is None else np.swapaxes(initial_h, 0, 1)
        initial_c = None if initial_c is None else np.swapaxes(initial_c, 0, 1)
    W, R = np.asarray(W, np.float64), np.asarray(R, np.float64)
    D, H = W.shape[0], R.shape[-1]
    G = 4 if kind == "lstm" else 3
    B = np.zeros((D, 2 * G * H)) if B is None else np.asarray(B, np.float64)
    T, nb, _ = X.shape
    lens = np.full(nb, T) if sequence_lens is None else np.asarray(sequence_lens)
    out, h_n, c_n = [], np.zeros((D, nb, H)), np.zeros((D, nb, H))
    for d in range(D):
        h = np.zeros((nb, H)) if initial_h is None else np.asarray(initial_h[d], np.float64)
        c = np.zeros((nb, H)) if initial_c is None else np.asarray(initial_c[d], np.float64)
        wb, rb = B[d, :G * H], B[d, G * H:]
        reverse = direction == "reverse" or d == 1
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            gx = X[t] @ W[d].T + wb
            if kind == "lstm":
                p = gx + h @ R[d].T + rb
                i, o = _sigmoid(p[:, :H]), _sigmoid(p[:, H:2 * H])
                f, g = _sigmoid(p[:, 2 * H:3 * H]), np.tanh(p[:, 3 * H:])
                cn = f * c + i * g
                hn = o * np.tanh(cn)
            else:
                gh = h @ R[d, :2 * H].T + rb[:2 * H]
                z, r = _sigmoid(gx[:, :H] + gh[:, :H]), _sigmoid(gx[:, H:2 * H] + gh[:, H:])
                if linear_before_reset:
                    n = np.tanh(gx[:, 2 * H:] + r * (h @ R[d, 2 * H:].T + rb[2 * H:]))
                else:
                    n = np.tanh(gx[:, 2 * H:] + (r * h) @ R[d, 2 * H:].T + rb[2 * H:])
                hn, cn = (1.0 - z) * n + z * h, c
            active = (t < lens)[:, None]
            h, c = np.where(active, hn, h), np.where(active, cn, c)
            out.append((hn[active[:, 0]], cn[active[:, 0]] if kind == "lstm" else None))
        h_n[d], c_n[d] = h, c
    return out, h_n, c_n


def _finite_range(arrays):
    """(min, max) of the finite values of `arrays`, (inf, -inf) when there are none."""
    vals = [a[np.isfinite(a)] for a in (np.asarray(a, np.float64) for a in arrays)]
    vals = [v for v in vals if v.size]
    if not vals:
        return np.inf, -np.inf
    return min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)


class RNNObserver:
    """Ranges of one ONNX LSTM / GRU node's input, h and cell over the calibration data."""

    def __init__(self, kind, W, R, B=None, *, direction="forward", layout=0,
                 linear_before_reset=0):
        self.kind, self.W, self.R, self.B = kind, W, R, B
        self.direction, self.layout, self.lbr = direction, layout, linear_before_reset
        self.x_min = self.h_min = np.inf
        self.x_max = self.h_max = -np.inf
        self.c_absmax = 0.0
        self.calls = 0

    def observe(self, X, sequence_lens=None, initial_h=None, initial_c=None):
        X = np.asarray(X, np.float64)
        if X.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):    # exp of huge inputs → 0 / 1
            trace, _, _ = replay(self.kind, X, self.W, self.R, self.B, sequence_lens, initial_h,
                                 initial_c, direction=self.direction, layout=self.layout,
                                 linear_before_reset=self.lbr)
        finite = X[np.isfinite(X)]
        if finite.size:
            self.x_min = min(self.x_min, float(finite.min()))
            self.x_max = max(self.x_max, float(finite.max()))
        # NaN in the data (an int8 model reads it as 0.0) is left out of the ranges, as the
        # other observers leave it out
        hs = [t[0] for t in trace] + ([] if initial_h is None else [initial_h])
        lo, hi = _finite_range(hs)
        self.h_min, self.h_max = min(self.h_min, lo), max(self.h_max, hi)
        if self.kind == "lstm":
            cs = [t[1] for t in trace] + ([] if initial_c is None else [initial_c])
            lo, hi = _finite_range(cs)
            if np.isfinite(lo):
                self.c_absmax = max(self.c_absmax, abs(lo), abs(hi))
        self.calls += 1

    def merge(self, other: "RNNObserver") -> "RNNObserver":
        self.x_min, self.x_max = min(self.x_min, other.x_min), max(self.x_max, other.x_max)
        self.h_min, self.h_max = min(self.h_min, other.h_min), max(self.h_max, other.h_max)
        self.c_absmax = max(self.c_absmax, other.c_absmax)
        self.calls += other.calls
        return self

    def params(self, scheme: str):
        """The layer's quantized.static_rnn.Params for `scheme` ("int16" or "int8") from the
        ranges seen."""
        from ..quant import choose_qparams
        from ..quantized.static_rnn import Params, cell_exponent
        if not self.calls or not np.isfinite(self.x_min):
            raise ConfigError("the recurrent layer saw no finite calibration input")
        e_c = cell_exponent(self.c_absmax)
        if scheme == "int16":
            amax = max(abs(self.x_min), abs(self.x_max))
            s_x = np.float32(amax / 32767) if amax > 0 else np.float32(1.0)
            return Params("int16", s_x, 0, 2.0 ** -15, 0, e_c)
        if scheme != "int8":
            raise ConfigError(f"scheme must be 'int16' or 'int8', got {scheme!r}")
        px = choose_qparams(self.x_min, self.x_max, bits=8, symmetric=False, signed=False)
        hmin = self.h_min if np.isfinite(self.h_min) else 0.0
        hmax = self.h_max if np.isfinite(self.h_max) else 0.0
        ph = choose_qparams(hmin, hmax, bits=8, symmetric=False, signed=False)
        return Params("int8", px.scale, int(px.zero_point), ph.scale, int(ph.zero_point), e_c)


def carry_state(model, chunks, state):
    """Calibration feeds for a streaming model: each feed of `chunks` (an iterable of feed
    dicts, one chunk of the stream after the other) gets the state inputs named by `state`
    ({state input: state output}, e.g. {"h0": "hn", "c0": "cn"}) set to what the float model
    returned for the previous chunk (the first chunk keeps its own, or zeros). Pass the result
    as quantize_static's calibration_data: the recurrent layers are then calibrated in their
    steady state, as they will run."""
    from ..model_files import as_graph
    from ..session import Session
    sess = model if isinstance(model, Session) else Session(as_graph(model, "carry_state"))
    missing = [k for k in state if k not in sess.input_names]
    if missing:
        raise ConfigError(f"carry_state: {missing} are not inputs of the model (inputs: "
                          f"{sess.input_names})")
    carried = None
    for feeds in chunks:
        feeds = dict(feeds)
        if carried is not None:
            feeds.update(carried)
        yield feeds
        out = sess.run(feeds)
        carried = {k: out[v] for k, v in state.items()}
