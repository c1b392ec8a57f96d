"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization")
in NumPy: per layer, whether each weight rounds down or up, learned to reconstruct the layer's
output on the calibration data.

For a layer y = W x (Conv as W [Cout, Cin·kh·kw] times im2col patches, Gemm/MatMul as W
[Cout, K] times rows), with the scale s per output channel that plain quantization gives:
    W~ = s · clip(floor(W / s) + h(V), qmin, qmax),   h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1)
    loss = Σ_c (W~ − W)_c H (W~ − W)_cᵀ / P  +  λ Σ (1 − |2h(V) − 1|^β)
with H = Σ x xᵀ over the P patches/rows of the calibration inputs: the output reconstruction
error is a quadratic form in the weight error, so H (K × K) is accumulated once and every
step costs one [Cout, K] × [K, K] product — no autograd framework and no activations kept.
The gradient is analytic; V starts where h(V) is the fractional part (nearest rounding's
neighbourhood), β decays from 20 to 2 after a 20 % warm-up (the paper's schedule), Adam
updates V, and at the end each weight rounds up where h(V) ≥ 0.5. ζ = 1.1, γ = −0.1, λ = 0.01.

Layers: Conv with group 1 (2-D), Gemm and MatMul with constant weights, in the orientation the
int8 rewrite quantizes them ([Cout, ...]); inputs are the float model's (taps on the first
`samples` calibration rows). The codes go to the int8 rewrite with their scale
(qdq/insert.py: weight_codes).
"""
from __future__ import annotations

import numpy as np

from ..calibration.tap import TapSession
from ..graph.ir import Graph, Node
from ..qdq.insert import quantize_weights
from ..window import out_size, same_pads

ZETA, GAMMA = 1.1, -0.1
LAMBDA = 0.01
BETA = (20.0, 2.0)
WARMUP = 0.2


def _weight_matrix(g: Graph, n: Node):
    """The layer's weights as the int8 rewrite orients them ([Cout, ...]), or None."""
    if len(n.inputs) < 2 or n.inputs[1] not in g.initializers:
        return None
    b = g.initializers[n.inputs[1]]
    if n.op_type == "Conv":
        return b if b.ndim == 4 and int(n.attrs.get("group", 1)) == 1 else None
    if n.op_type == "Gemm" and not n.attrs.get("transA", 0):
        return (b if n.attrs.get("transB", 0) else b.T) * np.float32(n.attrs.get("alpha", 1.0))
    if n.op_type == "MatMul" and b.ndim == 2:
        return b.T
    return None


def _patches(n: Node, x: np.ndarray, kshape) -> np.ndarray:
    """The layer's input as columns [K, P] (K in the weights' flattened order)."""
    if n.op_type != "Conv":
        return x.reshape(-1, x.shape[-1]).T
    _, c, h, w = x.shape
    kh, kw = kshape
    sh, sw = n.attrs.get("strides", (1, 1))
    dh, dw = n.attrs.get("dilations", (1, 1))
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        (t, b_), (l_, r) = (same_pads(h, kh, sh, dh, auto == "SAME_UPPER"),
                            same_pads(w, kw, sw, dw, auto == "SAME_UPPER"))
    else:
        t, l_, b_, r = n.attrs.get("pads", (0, 0, 0, 0))
    oh, ow = out_size(h, kh, sh, dh, t, b_), out_size(w, kw, sw, dw, l_, r)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b_), (l_, r)))
    cols = np.empty((c, kh, kw, x.shape[0], oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                               j * dw:j * dw + (ow - 1) * sw + 1:sw].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, -1)


def h_of(v):
    return np.clip(1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def loss_and_grad(v, w, s, base, H, P, qmin, qmax, beta, lam=LAMBDA, want_loss=True):
    """(loss, dloss/dV) of the objective in the module docstring; beta None: no regularizer
    (the warm-up). want_loss=False skips the loss (None) in the optimisation loop."""
    sig = 1.0 / (1.0 + np.exp(-v))
    h = np.clip(sig * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
    q = base + h
    inside = (q >= qmin) & (q <= qmax)
    d = s * np.clip(q, qmin, qmax) - w
    dh = d @ H
    loss = float(np.sum(dh * d)) / P if want_loss else None
    grad_h = (2.0 / P) * dh * s * inside
    if beta is not None:
        u = 2.0 * h - 1.0
        au = np.abs(u)
        p = au ** (beta - 1.0)
        if want_loss:
            loss += lam * float(np.sum(1.0 - p * au))
        grad_h -= (2.0 * lam * beta) * p * np.sign(u)
    live = (h > 0.0) & (h < 1.0)
    return loss, grad_h * ((ZETA - GAMMA) * sig * (1.0 - sig) * live)


def adaround_layer(w, s, H, P, bits=8, iters=1000, lr=1e-2):
    """Integer codes [Cout, K] for float weights w [Cout, K] with per-row scale s [Cout, 1]
    (or one per weight, [Cout, K]: group-wise scales spread over their groups), input Gram
    matrix H [K, K] over P patches."""
    w = np.asarray(w, np.float64)
    s = np.asarray(s, np.float64)
    s = s.reshape(-1, 1) if s.size == w.shape[0] else s     # per row, or per weight [N, K]
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax
    base = np.floor(w / s)
    frac = np.clip(w / s - base, 0.01, 0.99)
    v = -np.log((ZETA - GAMMA) / (frac - GAMMA) - 1.0)
    m, m2 = np.zeros_like(v), np.zeros_like(v)
    b1, b2, eps = 0.9, 0.999, 1e-8
    warm = int(WARMUP * iters)
    for t in range(iters):
        beta = None if t < warm else \
            BETA[1] + (BETA[0] - BETA[1]) * (1.0 - (t - warm) / max(1, iters - warm))
        _, grad = loss_and_grad(v, w, s, base, H, P, qmin, qmax, beta, want_loss=False)
        m = b1 * m + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        v -= lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(m2 / (1 - b2 ** (t + 1))) + eps)
    q = np.clip(base + (h_of(v) >= 0.5), qmin, qmax)
    near = np.clip(np.rint(w / s), qmin, qmax)
    # The relaxation is not guaranteed to beat nearest rounding on its own objective (small
    # layers, 8-bit grids): keep whichever reconstructs the calibration outputs better.
    return (q if _recon(q, w, s, H) <= _recon(near, w, s, H) else near).astype(np.int8)


def _recon(q, w, s, H):
    d = s * q - w
    return float(np.sum((d @ H) * d))


def adaround_codes(g: Graph, batches, names, per_channel=True, bits=8, samples=64,
                   iters=1000, progress=None) -> dict:
    """{node name: (int8 codes in the rewrite's orientation, scale)} for the eligible nodes of
    `names` in float graph g, learned on the first `samples` rows of `batches`."""
    nodes = {n.name: n for n in g.nodes if n.name in names and _weight_matrix(g, n) is not None}
    if not nodes:
        return {}
    grams = {k: None for k in nodes}
    counts = dict.fromkeys(nodes, 0)
    by_input = {}
    for k, n in nodes.items():
        by_input.setdefault(n.inputs[0], []).append(k)
    tap = TapSession(g, sorted(by_input))

    def on_value(name, x):
        for k in by_input[name]:
            n = nodes[k]
            w = g.initializers[n.inputs[1]]
            cols = _patches(n, np.asarray(x, np.float64), w.shape[2:] if n.op_type == "Conv"
                            else None)
            gram = cols @ cols.T
            grams[k] = gram if grams[k] is None else grams[k] + gram
            counts[k] += cols.shape[1]
    _tap_rows(tap, batches, on_value, samples)
    out = {}
    for i, (k, n) in enumerate(nodes.items()):
        wt = _weight_matrix(g, n)
        _, scale = quantize_weights(wt, per_channel, None, None, bits)
        s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1, 1), (wt.shape[0], 1))
        if grams[k] is None:
            continue
        q = adaround_layer(wt.reshape(wt.shape[0], -1), s, grams[k], counts[k], bits, iters)
        out[k] = (q.reshape(wt.shape), scale)
        if progress:
            progress(i + 1, len(nodes))
    return out


# ---- dynamic quantization: LSTM / GRU gates and Linear layers ----------------------------------
#
# A gate's pre-activation W x_t + R h_(t-1) + b is linear in each weight matrix, so each is
# rounded like a Gemm: W's Gram matrix sums x_t x_t^T over every step, R's sums h_(t-1) h_(t-1)^T
# over the states the float layer went through (replayed in float64 from its tapped inputs).
# The loss is the gate pre-activations' reconstruction, not the gate outputs after
# sigmoid / tanh. A GRU with linear_before_reset=0 feeds (r * h) to its candidate rows of R:
# those rows would need a Gram of their own, so that R keeps nearest rounding.

def _spread(scale, k, group_size):
    """Row or group scales [N] / [N, G] as one scale per weight [N, K]."""
    s = np.asarray(scale, np.float64).reshape(len(scale), -1)
    if s.shape[1] == 1:
        return np.broadcast_to(s, (s.shape[0], k))
    return np.repeat(s, group_size, axis=1)[:, :k]


def learn_codes(w, scale, gram, count, bits, group_size=None, iters=1000):
    """AdaRound codes for w [N, K] on the grid `scale` (from the nearest-rounding quantizer)."""
    if gram is None or count == 0:
        return None
    return adaround_layer(w, _spread(scale, w.shape[1], group_size), gram, count, bits, iters)


class GramSet:
    """Gram matrices Σ x xᵀ per key, accumulated over rows."""

    def __init__(self):
        self.gram, self.count = {}, {}

    def add(self, key, rows):
        rows = np.asarray(rows, np.float64).reshape(-1, np.shape(rows)[-1])
        g = rows.T @ rows
        self.gram[key] = g if key not in self.gram else self.gram[key] + g
        self.count[key] = self.count.get(key, 0) + rows.shape[0]

    def get(self, key):
        return self.gram.get(key), self.count.get(key, 0)


def dynamic_grams(g: Graph, batches, rnn_nodes: dict, linear_inputs: dict,
                  samples=64) -> GramSet:
    """Gram matrices of what the dynamic layers read on the first `samples` rows:
    (rnn node, "W", d) / (rnn node, "R", d) for rnn_nodes {name: (kind, attrs)} and
    (linear node, "x") for linear_inputs {name: input value}."""
    from ..calibration.rnn import replay
    grams = GramSet()

    def hook(name, kind, attrs):
        def run(X, W=None, R=None, B=None, lens=None, h0=None, c0=None):
            layout = attrs.get("layout", 0)
            Xt = np.swapaxes(X, 0, 1) if layout == 1 else X
            steps, _, _ = replay(kind, X, W, R, B, lens, h0, c0,
                                 direction=attrs.get("direction", "forward"), layout=layout,
                                 linear_before_reset=attrs.get("linear_before_reset", 0))
            T, D, H = Xt.shape[0], W.shape[0], R.shape[-1]
            h0t = None if h0 is None else (np.swapaxes(h0, 0, 1) if layout == 1 else h0)
            for d in range(D):
                grams.add((name, "W", d), Xt)
                prev = [np.zeros((Xt.shape[1], H)) if h0t is None else h0t[d]]
                prev += [h for h, _ in steps[d * T:(d + 1) * T - 1]]
                grams.add((name, "R", d), np.concatenate(prev))
        return run
    hooks = {k: hook(k, kind, attrs) for k, (kind, attrs) in rnn_nodes.items()}
    by_value = {}
    for k, v in linear_inputs.items():
        by_value.setdefault(v, []).append(k)
    tap = TapSession(g, sorted(by_value), node_hooks=hooks)

    def on_value(v, x):
        for k in by_value[v]:
            grams.add((k, "x"), x)
    _tap_rows(tap, batches, on_value, samples)
    return grams


def _tap_rows(tap, batches, on_value, samples):
    """Run the tapped graph over the batches until `samples` rows (first axis) were seen."""
    taken = 0
    for feeds in batches:
        if taken >= samples:
            break
        tap.run_tapped(feeds, on_value)
        taken += max(1, len(next(iter(feeds.values()))))
