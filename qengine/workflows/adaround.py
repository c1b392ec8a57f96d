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


def loss_and_grad(v, w, s, base, H, P, qmin, qmax, beta, lam=LAMBDA):
    """(loss, dloss/dV) of the objective in the module docstring; beta None: no regularizer
    (the warm-up)."""
    sig = 1.0 / (1.0 + np.exp(-v))
    h = np.clip(sig * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
    q = base + h
    inside = (q >= qmin) & (q <= qmax)
    d = s * np.clip(q, qmin, qmax) - w
    dh = d @ H
    loss = float(np.sum(dh * d)) / P
    grad_h = 2.0 * dh / P * s * inside
    if beta is not None:
        u = 2.0 * h - 1.0
        loss += lam * float(np.sum(1.0 - np.abs(u) ** beta))
        grad_h = grad_h - lam * beta * np.abs(u) ** (beta - 1.0) * np.sign(u) * 2.0
    live = (h > 0.0) & (h < 1.0)
    return loss, grad_h * (ZETA - GAMMA) * sig * (1.0 - sig) * live


def adaround_layer(w, s, H, P, bits=8, iters=1000, lr=1e-2):
    """Integer codes [Cout, K] for float weights w [Cout, K] with per-row scale s [Cout, 1],
    input Gram matrix H [K, K] over P patches."""
    w = np.asarray(w, np.float64)
    s = np.asarray(s, np.float64).reshape(-1, 1)
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
        _, grad = loss_and_grad(v, w, s, base, H, P, qmin, qmax, beta)
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
    taken = 0
    for feeds in batches:
        if taken >= samples:
            break
        tap.run_tapped(feeds, on_value)
        taken += max(1, len(next(iter(feeds.values()))))
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
