"""4-bit weights for dynamic quantization (issue 11): the int4 kernels against the NumPy
definition of epilogue (c) (bit-exact, every ISA, against each other too), the W4 Linear /
LSTM / GRU against float64 within derived error bounds, the int4 storage and engine files
(round trip, malformed files refused), and the configuration's errors."""
import itertools
import json
import zlib

import numpy as np
import pytest

import qengine
from qengine import _runtime, functional as F
from qengine.engine_file import read_safetensors, write_safetensors
from qengine.errors import ConfigError, ModelError
from qengine.graph.ir import Graph, Node, ValueInfo
from qengine.quantized.dynamic_linear import DynamicLinear
from qengine.quantized.rnn import DynamicRNN
from qengine.quantized.weights import pack_int4, quantize_int4, unpack_int4
from qengine.reference.dynamic_rnn import dynamic_rnn_ref
from qengine.reference.gemm import (int4_group_sums_ref, linear_dynamic_int4_ref,
                                    matmul_dequant_int4_ref)

ISAS = _runtime.available_isas()
GROUPS = [None, 32, 64, 128]


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ---------------------------------------------------------------------------- weights
@pytest.mark.parametrize("group", GROUPS)
def test_quantize_int4_narrow_range_and_scales(group):
    rng = _rng("q", group)
    w = rng.standard_normal((9, 200)).astype(np.float32)
    w[0, 3] = -50.0                   # a row whose extreme is negative: it must map to −7, not −8
    w[1] = 0.0                        # all zeros: a valid scale, weights 0
    w[2, 150:] = 1e-30                # a tiny last group
    q, s = quantize_int4(w, group)
    ng = 1 if group is None else -(-200 // group)
    assert q.dtype == np.int8 and s.shape == (9, ng) and s.dtype == np.float32
    assert q.min() >= -7 and q.max() <= 7 and q[0, 3] == -7 and not q[1].any()
    gs = 200 if group is None else group
    for g in range(ng):               # symmetric max-abs scale of each group's own values
        cols = w[:, g * gs:(g + 1) * gs].astype(np.float64)
        a = np.abs(cols).max(axis=1)
        want = np.where(a == 0, 1.0, a / 7).astype(np.float32)
        want = np.maximum(want, np.finfo(np.float32).tiny)
        np.testing.assert_array_equal(s[:, g], want)
        np.testing.assert_array_equal(q[:, g * gs:(g + 1) * gs],
                                      np.clip(np.rint(cols / s[:, g:g + 1].astype(np.float32)
                                                      .astype(np.float64)), -7, 7))


@pytest.mark.parametrize("k", [1, 2, 7, 8, 33])
def test_int4_storage_round_trip_and_layout(k):
    q = _rng("s", k).integers(-7, 8, (3, 5, k)).astype(np.int8)
    p = pack_int4(q)
    assert p.dtype == np.uint8 and p.shape == (3, 5, -(-k // 2))
    np.testing.assert_array_equal(unpack_int4(p, k), q)
    # value 2i in the low nibble, 4-bit two's complement (the ONNX int4 order)
    assert p[0, 0, 0] & 0x0F == (int(q[0, 0, 0]) & 0x0F)
    if k > 1:
        assert p[0, 0, 0] >> 4 == (int(q[0, 0, 1]) & 0x0F)


def test_int4_storage_refuses_what_pack_cannot_write():
    with pytest.raises(ValueError, match="-8"):
        unpack_int4(np.array([[0x80]], np.uint8), 2)           # high nibble 8 = −8
    with pytest.raises(ValueError, match="padding nibble"):
        unpack_int4(np.array([[0x10]], np.uint8), 1)           # odd K, nonzero pad
    with pytest.raises(ValueError, match="uint8"):
        unpack_int4(np.zeros((2, 3), np.uint8), 7)             # ceil(7/2) = 4 bytes per row
    with pytest.raises(ValueError, match=r"\[-7, 7\]"):
        pack_int4(np.array([[-8, 1]], np.int8))


# ---------------------------------------------------------------------------- kernels
def _case(key, m, n, k, group, pattern="random"):
    rng = _rng(key, m, n, k, group, pattern)
    ng = 1 if group is None else -(-k // group)
    if pattern == "random":
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-7, 8, (n, k)).astype(np.int8)
        za = rng.integers(0, 256, m).astype(np.int32)
    else:                             # activation 255 against all +7, all −7, alternating ±7
        a = np.full((m, k), 255, np.uint8)
        wv = {"plus": 7, "minus": -7}.get(pattern)
        w = np.full((n, k), wv, np.int8) if wv is not None else \
            np.where(np.arange(k) % 2, 7, -7).astype(np.int8)[None, :].repeat(n, 0)
        za = np.zeros(m, np.int32) if pattern != "minus" else np.full(m, 255, np.int32)
    sa = ((rng.random(m) + 0.5) * 1e-2).astype(np.float32)
    ws = ((rng.random((n, ng)) + 0.5) * 3e-3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    return a, za, sa, w, ws, bias


SHAPES = [(1, 1, 1), (1, 17, 7), (2, 15, 16), (3, 16, 17), (4, 33, 31), (5, 48, 32), (9, 20, 33),
          (1, 64, 127), (6, 31, 128), (7, 16, 129), (1, 100, 300), (3, 40, 4099)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("group", GROUPS)
def test_kernel_equals_numpy_definition(isa, group):
    for (m, n, k), per_row in itertools.product(SHAPES, [False, True]):
        a, za, sa, w, ws, bias = _case("k", m, n, k, group)
        if not per_row:
            za, sa = za[:1], sa[:1]
        pw = F.pack_weights_int4(w, ws, group)
        got = F.matmul_dequant_int4(a, sa, za, pw, bias, per_row=per_row, isa=isa)
        want = matmul_dequant_int4_ref(a, sa if per_row else sa[0], za if per_row else za[0],
                                       w, ws, group, bias)
        np.testing.assert_array_equal(got, want, err_msg=f"{(m, n, k, group, per_row, isa)}")


@pytest.mark.parametrize("pattern", ["plus", "minus", "alt"])
@pytest.mark.parametrize("group", GROUPS)
def test_extremes_every_isa_equals_scalar_and_integer_sums_exact(pattern, group):
    """255 × ±7 over long K: every ISA's bytes equal the scalar kernel's, and the integer part
    (checked through a unit scale) is the exact int64 group sum."""
    m, n, k = 3, 33, 2000
    a, za, sa, w, ws, _ = _case("x", m, n, k, group, pattern)
    pw1 = F.pack_weights_int4(w, np.ones_like(ws), group)
    exact = int4_group_sums_ref(a, za, w, group)                # [m, n, G]
    for isa in ISAS:
        y = F.matmul_dequant_int4(a, np.ones(m, np.float32), za, pw1, per_row=True, isa=isa)
        # with unit scales and integers < 2^24 every float32 operation is exact
        np.testing.assert_array_equal(y, exact.sum(-1).astype(np.float32))
        pw = F.pack_weights_int4(w, ws, group)
        yz = F.matmul_dequant_int4(a, sa, za, pw, per_row=True, isa=isa)
        np.testing.assert_array_equal(
            yz, F.matmul_dequant_int4(a, sa, za, pw, per_row=True, isa="scalar"))


@pytest.mark.parametrize("isa", ISAS)
def test_linear_dynamic_int4_accumulate_and_threads(isa):
    _, _, _, w, ws, bias = _case("t", 64, 200, 700, 64)
    x = _rng("tx").standard_normal((64, 700)).astype(np.float32)
    pw = F.pack_weights_int4(w, ws, 64)
    base = _rng("tb").standard_normal((64, 200)).astype(np.float32)
    # accumulate: out + y, y by the definition (bias included)
    want = base + linear_dynamic_int4_ref(x, w, ws, 64, bias, per_row=True)
    prev = qengine.get_num_threads()
    for threads in (1, 2):
        qengine.set_num_threads(threads)
        try:
            out = base.copy()
            F.linear_dynamic_int4(x, pw, bias, per_row=True, isa=isa, out=out, accumulate=True)
        finally:
            qengine.set_num_threads(prev)
        np.testing.assert_array_equal(out, want, err_msg=f"threads={threads}")


def test_pack_weights_int4_errors():
    w = np.zeros((4, 40), np.int8)
    with pytest.raises(ConfigError, match=r"\[-7, 7\]"):
        F.pack_weights_int4(np.full((4, 40), -8, np.int8), np.ones((4, 1), np.float32))
    with pytest.raises(ConfigError, match="group_size"):
        F.pack_weights_int4(w, np.ones((4, 3), np.float32), 16)
    with pytest.raises(qengine.ShapeError, match=r"\(4, 2\)"):
        F.pack_weights_int4(w, np.ones((4, 1), np.float32), 32)   # 40 = 32 + 8: two groups
    with pytest.raises(ConfigError, match="finite"):
        F.pack_weights_int4(w, np.zeros((4, 1), np.float32))
    pw = F.pack_weights_int4(w, np.ones((4, 2), np.float32), 32)
    with pytest.raises(qengine.ShapeError, match="K = 40"):
        F.linear_dynamic_int4(np.zeros((2, 39), np.float32), pw)
    with pytest.raises(ConfigError, match="PackedWeights4"):
        F.linear_dynamic_int4(np.zeros((2, 40), np.float32), w)


# ---------------------------------------------------------------------------- vs float64
def _linear_bound(x, Wf, wq, ws, group):
    """|y − x·Wᵀ| per output, derived: x·w − x~·w~ = x·(w − w~) + (x − x~)·w~ with
    |w − w~| ≤ s_w/2 (round to nearest, the max-abs scale clips nothing) and |x − x~| ≤ s_a/2
    (the dynamic range covers x), plus float32 rounding of each group's partial sum, its scale
    product and the sums (≤ (G + 3) roundings of 2^-24 relative on Σ|x~·w~| + |bias|)."""
    k = x.shape[1]
    gs = k if group is None else group
    sw = np.repeat(ws.astype(np.float64), gs, axis=1)[:, :k]              # [N, K]
    lo, hi = min(x.min(), 0.0), max(x.max(), 0.0)
    sa = (np.float64(hi) - lo) / 255 * (1 + 1e-6)                          # per tensor
    wd = wq.astype(np.float64) * sw
    quant = np.abs(x) @ (sw / 2).T + (sa / 2) * np.abs(wd).sum(1)[None, :]
    rnd = (ws.shape[1] + 3) * 2.0**-24 * (np.abs(x) + sa) @ np.abs(wd).T
    return quant + rnd + 1e-30


@pytest.mark.parametrize("group", GROUPS)
def test_w4_linear_within_derived_bound_of_float64(group):
    rng = _rng("lin", group)
    K, N = 300, 70                    # 300 = 2·128 + 44: a short last group for 64 and 128
    Wf = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.standard_normal((5, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    wq, ws = quantize_int4(Wf, group)
    layer = DynamicLinear(wq, ws, b, weight_bits=4, group_size=group)
    y = layer(x)
    ref = x.astype(np.float64) @ Wf.astype(np.float64).T + b
    bound = _linear_bound(x.astype(np.float64), Wf, wq, ws, group) + 2.0**-23 * np.abs(ref)
    err = np.abs(y - ref)
    assert np.all(err <= bound), float((err / bound).max())
    assert (err / bound).max() > 1e-3        # the bound is not vacuous: errors approach it


def _lstm_step64(x, h, c, W, R, B):
    H = h.shape[1]
    g = x @ W.T + h @ R.T + B[:4 * H] + B[4 * H:]
    sig = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    i, o, f, cc = sig(g[:, :H]), sig(g[:, H:2 * H]), sig(g[:, 2 * H:3 * H]), np.tanh(g[:, 3 * H:])
    c2 = f * c + i * cc
    return o * np.tanh(c2), c2, (i, o, f, cc)


@pytest.mark.parametrize("group", [None, 32])
def test_w4_lstm_steps_within_derived_bound_of_float64(group):
    """Each step from the layer's own state (streamed one step per call) against the float64
    step from the same state. Gate pre-activation errors e are bounded per row as for the
    linear layer (W·x and R·h); then σ' ≤ 1/4, tanh' ≤ 1 give |Δi|, |Δf|, |Δo| ≤ e/4, |Δc̃| ≤ e,
    |Δc'| ≤ |c|Δf + Δi + (i + Δi)Δc̃, |Δh'| ≤ Δo + (o + Δo)Δc', plus 1e-6 for the fast gates."""
    rng = _rng("lstm", group)
    I, H, T = 64, 96, 6
    W = (rng.standard_normal((4 * H, I)) * 0.3).astype(np.float32)
    R = (rng.standard_normal((4 * H, H)) * 0.3).astype(np.float32)
    B = (rng.standard_normal(8 * H) * 0.1).astype(np.float32)
    X = rng.standard_normal((T, 1, I)).astype(np.float32)
    wq, ws = quantize_int4(W, group)
    rq, rs = quantize_int4(R, group)
    layer = DynamicRNN("lstm", wq[None], ws[None], rq[None], rs[None], B[None], weight_bits=4,
                       group_size=group)
    h = np.zeros((1, 1, H), np.float32)
    c = np.zeros((1, 1, H), np.float32)
    worst = 0.0
    for t in range(T):
        _, h2, c2 = layer(X[t:t + 1], initial_h=h, initial_c=c)
        x64, h64, c64 = X[t].astype(np.float64), h[0].astype(np.float64), c[0].astype(np.float64)
        hr, cr, (i, o, f, _) = _lstm_step64(x64, h64, c64, W.astype(np.float64),
                                            R.astype(np.float64), B.astype(np.float64))
        e = _linear_bound(x64, W, wq, ws, group) + _linear_bound(h64, R, rq, rs, group) + 1e-6
        ei, eo, ef, ec = e[:, :H], e[:, H:2 * H], e[:, 2 * H:3 * H], e[:, 3 * H:]
        dc = np.abs(c64) * ef / 4 + ei / 4 + (i + ei / 4) * ec + 1e-6
        dh = eo / 4 + (o + eo / 4) * dc + 1e-6
        assert np.all(np.abs(c2[0] - cr) <= dc), t
        assert np.all(np.abs(h2[0] - hr) <= dh), t
        worst = max(worst, float((np.abs(h2[0] - hr) / dh).max()))
        h, c = h2, c2
    assert worst > 1e-3


@pytest.mark.parametrize("group", [None, 64])
def test_w4_gru_steps_within_derived_bound_of_float64(group):
    """GRU (linear_before_reset=1), step by step as for the LSTM: z, r = σ(·) with errors
    e/4, h̃ = tanh(x_h + r⊙S_h) with |Δh̃| ≤ e_xh + Δr·|S_h| + (r + Δr)·e_Sh, and
    |Δh'| ≤ Δz·(|h − h̃| + Δh̃) + (1 − z)·Δh̃."""
    rng = _rng("gru", group)
    I, H, T = 48, 80, 5
    W = (rng.standard_normal((3 * H, I)) * 0.3).astype(np.float32)
    R = (rng.standard_normal((3 * H, H)) * 0.3).astype(np.float32)
    B = (rng.standard_normal(6 * H) * 0.1).astype(np.float32)
    X = rng.standard_normal((T, 1, I)).astype(np.float32)
    wq, ws = quantize_int4(W, group)
    rq, rs = quantize_int4(R, group)
    layer = DynamicRNN("gru", wq[None], ws[None], rq[None], rs[None], B[None], weight_bits=4,
                       group_size=group, linear_before_reset=1)
    h = np.zeros((1, 1, H), np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    W64, R64, B64 = W.astype(np.float64), R.astype(np.float64), B.astype(np.float64)
    for t in range(T):
        _, h2, _ = layer(X[t:t + 1], initial_h=h)
        x64, h64 = X[t].astype(np.float64), h[0].astype(np.float64)
        gx = x64 @ W64.T + B64[:3 * H]
        S = h64 @ R64.T + B64[3 * H:]
        z, r = sig(gx[:, :H] + S[:, :H]), sig(gx[:, H:2 * H] + S[:, H:2 * H])
        ht = np.tanh(gx[:, 2 * H:] + r * S[:, 2 * H:])
        hr = (1 - z) * ht + z * h64
        ex = _linear_bound(x64, W, wq, ws, group) + 1e-6
        eS = _linear_bound(h64, R, rq, rs, group) + 1e-6
        dz = (ex[:, :H] + eS[:, :H]) / 4
        dr = (ex[:, H:2 * H] + eS[:, H:2 * H]) / 4
        dht = ex[:, 2 * H:] + dr * np.abs(S[:, 2 * H:]) + (r + dr) * eS[:, 2 * H:] + 1e-6
        dh = dz * (np.abs(h64 - ht) + dht) + (1 - z) * dht + 1e-6
        assert np.all(np.abs(h2[0] - hr) <= dh), t
        h = h2


# ---------------------------------------------------------------------------- time loop
RNN_CASES = [("lstm", "forward", 0, False, None, 1), ("lstm", "bidirectional", 0, True, 32, 3),
             ("lstm", "reverse", 0, False, 128, 5), ("gru", "forward", 0, True, 64, 2),
             ("gru", "bidirectional", 1, False, None, 4), ("gru", "reverse", 1, True, 32, 1)]


@pytest.mark.parametrize("kind,direction,lbr,per_row,group,batch", RNN_CASES)
def test_w4_rnn_bit_exact_with_numpy_definition_every_isa_and_threads(kind, direction, lbr,
                                                                       per_row, group, batch):
    rng = _rng("rnn", kind, direction, lbr, per_row, group, batch)
    G, D = (4 if kind == "lstm" else 3), (2 if direction == "bidirectional" else 1)
    I, H, T = 70, 45, 5               # H = 45: padded to 64 units inside
    W = (rng.standard_normal((D, G * H, I)) * 0.3).astype(np.float32)
    R = (rng.standard_normal((D, G * H, H)) * 0.3).astype(np.float32)
    B = (rng.standard_normal((D, 2 * G * H)) * 0.1).astype(np.float32)
    X = rng.standard_normal((T, batch, I)).astype(np.float32)
    lens = rng.integers(1, T + 1, batch) if batch > 2 else None
    q = [quantize_int4(m, group) for m in [*W, *R]]
    wq, ws = np.stack([a for a, _ in q[:D]]), np.stack([s for _, s in q[:D]])
    rq, rs = np.stack([a for a, _ in q[D:]]), np.stack([s for _, s in q[D:]])
    want = dynamic_rnn_ref(kind, X, wq, ws, rq, rs, B, lens, direction=direction,
                           linear_before_reset=lbr, per_row=per_row, group_size=group)
    for isa, threads in itertools.product(ISAS, (1, 2)):
        layer = DynamicRNN(kind, wq, ws, rq, rs, B, direction=direction, linear_before_reset=lbr,
                           per_row=per_row, isa=isa, weight_bits=4, group_size=group)
        got = layer(X, lens, nthreads=threads)
        for g_, w_ in zip(got, want):
            if w_ is not None:
                np.testing.assert_array_equal(g_, w_, err_msg=f"{isa} threads={threads}")


def test_w4_rnn_holds_half_a_byte_per_weight():
    rng = _rng("bytes")
    W = rng.standard_normal((1, 4 * 64, 256)).astype(np.float32)
    R = rng.standard_normal((1, 4 * 64, 64)).astype(np.float32)
    l8 = DynamicRNN.from_float("lstm", W, R, isa="scalar")
    l4 = DynamicRNN.from_float("lstm", W, R, isa="scalar", weight_bits=4)
    assert l4._w.data.nbytes == 4 * 64 * 256 // 2 and l4._r[0][0][0].data.nbytes == 4 * 64 * 32
    assert l4.nbytes < 0.6 * l8.nbytes


# ---------------------------------------------------------------------------- config, graphs
def test_config_validation():
    for bad in (3, 16, 4.0, True, "4"):
        with pytest.raises(ConfigError, match="weight_bits"):
            qengine.DynamicQuantConfig(weight_bits=bad)
    for bad in (16, 33, 256, 0, True, 32.0):
        with pytest.raises(ConfigError, match="group_size"):
            qengine.DynamicQuantConfig(weight_bits=4, group_size=bad)
    with pytest.raises(ConfigError, match="needs weight_bits=4"):
        qengine.DynamicQuantConfig(group_size=32)
    assert qengine.DynamicQuantConfig(weight_bits=4, group_size=128).group_size == 128


def _linear_graph(K, N, with_gemm=True):
    rng = _rng("graph", K, N)
    W = rng.standard_normal((K, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    nodes = [Node("MatMul", "mm", ("x", "W"), ("t",)), Node("Add", "add", ("t", "b"), ("y",))]
    g = Graph([ValueInfo("x", "float32", (None, K))], [ValueInfo("y", "float32", (None, N))],
              nodes, {"W": W, "b": b}, {"": 17}, "lin")
    return g, W, b


@pytest.mark.parametrize("group", GROUPS)
def test_quantize_dynamic_w4_graph_engine_file_round_trip(tmp_path, group):
    K, N = 200, 24                    # 200: not a multiple of 64 or 128 (last group padded)
    g, W, b = _linear_graph(K, N)
    cfg = qengine.DynamicQuantConfig(weight_bits=4, group_size=group, cost_model=False)
    q = qengine.quantize_dynamic(g, cfg)
    node = q.nodes[0]
    assert node.op_type == "DynamicQuantLinear" and node.attrs["weight_bits"] == 4
    assert q.initializers[node.inputs[1]].dtype == np.uint8
    assert q.initializers[node.inputs[1]].shape == (N, K // 2)
    x = _rng("gx").standard_normal((3, K)).astype(np.float32)
    y = qengine.Session(q).run({"x": x})["y"]
    wq, ws = quantize_int4(W.T, group)
    np.testing.assert_array_equal(y, linear_dynamic_int4_ref(x, wq, ws, group, b))
    path = tmp_path / "m.qe"
    qengine.save(q, path)
    _, meta = read_safetensors(path)
    assert meta["format_version"] == "2"
    np.testing.assert_array_equal(qengine.load(path).run({"x": x})["y"], y)


def test_w8_default_unchanged_and_written_as_version_1(tmp_path):
    g, _, _ = _linear_graph(64, 8)
    q8 = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    q8b = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(weight_bits=8, cost_model=False))
    assert q8.nodes[0].attrs == {"per_row": 0} == q8b.nodes[0].attrs
    assert q8.initializers[q8.nodes[0].inputs[1]].dtype == np.int8
    qengine.save(q8, tmp_path / "a.qe")
    qengine.save(q8b, tmp_path / "b.qe")
    assert (tmp_path / "a.qe").read_bytes() == (tmp_path / "b.qe").read_bytes()
    assert read_safetensors(tmp_path / "a.qe")[1]["format_version"] == "1"


def _rewrite(src, dst, *, tensors=None, graph=None, version=None):
    t, meta = read_safetensors(src)
    t = {k: np.array(v) for k, v in t.items()}
    meta = dict(meta)
    g = json.loads(meta["graph"])
    if tensors:
        tensors(t)
    if graph:
        graph(g)
    meta["graph"] = json.dumps(g)
    meta.pop("tensor_crc32")
    if version:
        meta["format_version"] = version
    write_safetensors(dst, t, meta)


def test_malformed_int4_engine_files_are_refused(tmp_path):
    g, _, _ = _linear_graph(40, 8)
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(weight_bits=4, group_size=32,
                                                               cost_model=False))
    good = tmp_path / "good.qe"
    qengine.save(q, good)
    wname = q.nodes[0].inputs[1]
    bad = tmp_path / "bad.qe"

    def minus8(t):
        t[wname][0, 0] = 0x88

    def set_attr(key, value):
        def f(g):
            g["nodes"][0]["attrs"][key] = value
        return f
    cases = [({"tensors": minus8}, "-8"),
             ({"version": "1"}, "version 1 cannot hold 4-bit"),
             ({"version": "3"}, "version '3' is not supported"),
             ({"graph": set_attr("weight_bits", 5)}, "weight_bits must be 4 or 8"),
             ({"graph": set_attr("group_size", 48)}, "group_size must be"),
             ({"graph": set_attr("in_features", 0)}, "in_features"),
             ({"graph": set_attr("in_features", 41)}, "uint8"),
             ({"graph": set_attr("group_size", 64)}, "scales of shape")]
    for kw, msg in cases:
        _rewrite(good, bad, **kw)
        with pytest.raises(ModelError, match=msg):
            qengine.load(bad)
