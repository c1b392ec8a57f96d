"""Dynamic-int8 LSTM/GRU/Linear kernels: the compiled layers against the NumPy definition
(bit-exact, every ISA and thread count), against float references, streaming in chunks, bad
inputs. Graph-level tests (torch models through ONNX, serving): test_dynamic_rnn_graph.py."""
import itertools
import zlib

import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine.quantized.rnn import DynamicRNN
from qengine.quantized.weights import quantize_per_channel_symmetric
from qengine.reference.dynamic_rnn import dynamic_rnn_ref
from qengine.reference.rnn import gru_ref, lstm_ref

ISAS = _runtime.available_isas()


def _weights(rng, kind, D, I, H, scale=0.3):
    G = 4 if kind == "lstm" else 3
    W = (rng.standard_normal((D, G * H, I)) * scale).astype(np.float32)
    R = (rng.standard_normal((D, G * H, H)) * scale).astype(np.float32)
    B = (rng.standard_normal((D, 2 * G * H)) * 0.1).astype(np.float32)
    return W, R, B


def _quantized(W):
    q, s = zip(*(quantize_per_channel_symmetric(w) for w in W))
    return np.stack(q), np.stack(s)


CASES = [c for c in itertools.product(["lstm", "gru"], ["forward", "reverse", "bidirectional"],
                                      [0, 1], [False, True], [False, True])
         if not (c[0] == "lstm" and c[2])]


@pytest.mark.parametrize("kind,direction,lbr,per_row,ragged", CASES)
def test_bit_exact_with_numpy_definition_on_every_isa(kind, direction, lbr, per_row, ragged):
    rng = np.random.default_rng(zlib.crc32(repr((kind, direction, lbr, per_row, ragged)).encode()))
    D = 2 if direction == "bidirectional" else 1
    I, H, T, nb = 11, 37, 6, 3                      # H not a multiple of the 32-unit block
    W, R, B = _weights(rng, kind, D, I, H)
    X = rng.standard_normal((T, nb, I)).astype(np.float32)
    lens = np.array([T, 0, 4], np.int32) if ragged else None
    h0 = (rng.standard_normal((D, nb, H)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((D, nb, H)) * 0.5).astype(np.float32) if kind == "lstm" else None
    Wq, Ws = _quantized(W)
    Rq, Rs = _quantized(R)
    want = dynamic_rnn_ref(kind, X, Wq, Ws, Rq, Rs, B, lens, h0, c0, direction=direction,
                           linear_before_reset=lbr, per_row=per_row)
    for isa in ISAS:
        layer = DynamicRNN(kind, Wq, Ws, Rq, Rs, B, direction=direction,
                           linear_before_reset=lbr, per_row=per_row, isa=isa)
        got = layer(X, lens, h0, c0)
        for g, w in zip(got, want):
            if w is None:
                assert g is None
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"isa={isa}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_threads_and_isas_give_identical_results(kind):
    rng = np.random.default_rng(7)
    W, R, B = _weights(rng, kind, 1, 64, 256, 0.1)   # big enough for the 2-thread step loop
    X = rng.standard_normal((12, 2, 64)).astype(np.float32)
    outs = [DynamicRNN.from_float(kind, W, R, B, isa=isa, linear_before_reset=1)(X, nthreads=nt)[0]
            for isa in ISAS for nt in (1, 2)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


# batch sizes around the row tiles of the batched step (12-row kernel + remainders: 16 = 12 + 4,
# 32 = 12 + 12 + 8) and the thread-sharing threshold (QE_RNN_SHARE_MIN_B = 4)
BATCHES = [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33]


@pytest.mark.parametrize("kind,lbr", [("lstm", 0), ("gru", 1), ("gru", 0)])
def test_batched_step_rows_bit_exact(kind, lbr):
    """The batched recurrent step (fused dequantizing kernels, per-block cells) for every batch
    size around 8/16/32, hidden sizes that are not a multiple of the 32-unit block, ragged
    lengths and per-row quantization: equal to the NumPy definition on every ISA."""
    rng = np.random.default_rng(zlib.crc32(repr(("rows", kind, lbr)).encode()))
    for i, nb in enumerate(BATCHES):
        H = (37, 45, 70)[i % 3]
        I, T = 9, 3
        per_row = bool(i % 2)
        W, R, B = _weights(rng, kind, 1, I, H)
        Wq, Ws = _quantized(W)
        Rq, Rs = _quantized(R)
        X = rng.standard_normal((T, nb, I)).astype(np.float32)
        lens = rng.integers(0, T + 1, nb).astype(np.int32) if i % 4 == 1 else None
        h0 = (rng.standard_normal((1, nb, H)) * 0.5).astype(np.float32)
        c0 = (rng.standard_normal((1, nb, H)) * 0.5).astype(np.float32) if kind == "lstm" else None
        want = dynamic_rnn_ref(kind, X, Wq, Ws, Rq, Rs, B, lens, h0, c0,
                               linear_before_reset=lbr, per_row=per_row)
        for isa in ISAS:
            got = DynamicRNN(kind, Wq, Ws, Rq, Rs, B, linear_before_reset=lbr, per_row=per_row,
                             isa=isa)(X, lens, h0, c0)
            for g, w in zip(got, want):
                if w is not None:
                    np.testing.assert_array_equal(g, w, err_msg=f"isa={isa} batch={nb} H={H}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_extremes_bit_exact(kind):
    """Saturated gates (pre-activations far beyond the exp clamp), weights at ±127, inputs of
    1e4 and of exactly 0, h constant per row (degenerate quantization ranges), batch 16."""
    rng = np.random.default_rng(17)
    I, H, T, nb = 8, 40, 4, 16
    G = 4 if kind == "lstm" else 3
    W = np.where(rng.random((1, G * H, I)) < 0.5, -1.0, 1.0).astype(np.float32) * 3.0
    R = np.where(rng.random((1, G * H, H)) < 0.5, -1.0, 1.0).astype(np.float32)
    B = np.full((1, 2 * G * H), 50.0, np.float32)
    B[0, ::3] = -50.0
    Wq, Ws = _quantized(W)
    Rq, Rs = _quantized(R)
    assert np.abs(Rq).max() == 127
    X = np.zeros((T, nb, I), np.float32)
    X[0, ::2] = 1e4
    X[1, 1::2] = -1e4
    X[2] = rng.standard_normal((nb, I)).astype(np.float32) * 100
    h0 = np.repeat(np.linspace(-1, 1, nb, dtype=np.float32)[:, None], H, axis=1)[None]
    for per_row in (False, True):
        want = dynamic_rnn_ref(kind, X, Wq, Ws, Rq, Rs, B, None, h0, None, per_row=per_row,
                               linear_before_reset=1)
        for isa in ISAS:
            got = DynamicRNN(kind, Wq, Ws, Rq, Rs, B, per_row=per_row, linear_before_reset=1,
                             isa=isa)(X, None, h0)
            for g, w in zip(got, want):
                if w is not None:
                    np.testing.assert_array_equal(g, w, err_msg=f"isa={isa} per_row={per_row}")


@pytest.fixture
def two_threads():
    old = qengine.get_num_threads()
    qengine.set_num_threads(2)
    yield
    qengine.set_num_threads(old)


@pytest.mark.parametrize("kind,lbr", [("lstm", 0), ("gru", 1), ("gru", 0)])
def test_one_and_two_threads_identical(kind, lbr, two_threads):
    """Batch 1-3 (fixed ranges and a barrier per stage) and batch ≥ 4 (threads share the blocks
    of each stage) on 1 and 2 threads: identical bits, and equal to the NumPy definition. The
    hidden size gives 7 blocks, so the ranges are uneven."""
    from qengine._ext import _cpu
    rng = np.random.default_rng(zlib.crc32(repr(("threads", kind, lbr)).encode()))
    I, H, T = 24, 200, 5
    W, R, B = _weights(rng, kind, 1, I, H, 0.1)
    Wq, Ws = _quantized(W)
    Rq, Rs = _quantized(R)
    for nb in (1, 3, 4, 16, 33):
        X = rng.standard_normal((T, nb, I)).astype(np.float32)
        lens = np.maximum(T - np.arange(nb) % 3, 0).astype(np.int32) if nb > 1 else None
        want = dynamic_rnn_ref(kind, X, Wq, Ws, Rq, Rs, B, lens, linear_before_reset=lbr)
        for isa in ISAS:
            layer = DynamicRNN(kind, Wq, Ws, Rq, Rs, B, linear_before_reset=lbr, isa=isa)
            outs = []
            for nt in (1, 2):
                _cpu.max_team(reset=True)
                outs.append(layer(X, lens, nthreads=nt))
                if nb <= 16:    # the input projection stays on one thread: the time loop ran 2
                    assert _cpu.max_team() == (2 if nt == 2 else 0), (nb, nt)
            for g1, g2, w in zip(*outs, want):
                if w is not None:
                    np.testing.assert_array_equal(g1, w, err_msg=f"isa={isa} batch={nb}")
                    np.testing.assert_array_equal(g2, w, err_msg=f"isa={isa} batch={nb}")


@pytest.mark.parametrize("direction,per_row,ragged",
                         [("forward", False, False), ("forward", True, True),
                          ("reverse", False, False), ("bidirectional", True, False),
                          ("bidirectional", False, True)])
def test_fused_projection_bit_exact(direction, per_row, ragged, two_threads, monkeypatch):
    """Batched LSTM (B ≥ FUSE_MIN_B): each block projects its step's x into an L1 tile instead
    of reading the up-front gx. Same bits as the up-front projection and as the NumPy
    definition, on every ISA, 1 and 2 threads, batches around the row tiles; inputs span u8
    0..255 (±1e4 against 0) with weights at ±127, padded hidden units and odd K."""
    from qengine._ext import _rnn
    from qengine.quantized import rnn as rnn_mod
    projections = []

    class Counting:                                          # counts up-front projections
        def __getattr__(self, name):
            if name == "project":
                return lambda *a, **k: projections.append(1) or _rnn.project(*a, **k)
            return getattr(_rnn, name)
    monkeypatch.setattr(rnn_mod, "_rnn", Counting())
    rng = np.random.default_rng(zlib.crc32(repr(("fused", direction, per_row, ragged)).encode()))
    D = 2 if direction == "bidirectional" else 1
    I, H, T = 33, 45, 4
    W, R, B = _weights(rng, "lstm", D, I, H)
    W[:, ::5] = np.sign(W[:, ::5]) * 3.0                  # rows at ±127 after quantization
    Wq, Ws = _quantized(W)
    Rq, Rs = _quantized(R)
    assert np.abs(Wq).max() == 127
    for nb in (_rnn.FUSE_MIN_B - 1, _rnn.FUSE_MIN_B, 8, 9, 16, 17, 32):
        X = rng.standard_normal((T, nb, I)).astype(np.float32)
        X[0, 0] = 1e4
        X[0, 1, ::2] = -1e4                                  # u8 0 and 255 in one step
        X[1, 2] = 0.0
        lens = rng.integers(0, T + 1, nb).astype(np.int32) if ragged else None
        h0 = (rng.standard_normal((D, nb, H)) * 0.5).astype(np.float32)
        c0 = (rng.standard_normal((D, nb, H)) * 0.5).astype(np.float32)
        want = dynamic_rnn_ref("lstm", X, Wq, Ws, Rq, Rs, B, lens, h0, c0, direction=direction,
                               per_row=per_row)
        for isa in ISAS:
            layer = DynamicRNN("lstm", Wq, Ws, Rq, Rs, B, direction=direction, per_row=per_row,
                               isa=isa)
            for nt in (1, 2):
                projections.clear()
                fused = layer(X, lens, h0, c0, nthreads=nt)
                # ragged reverse directions gather gx, so they keep the up-front projection
                assert len(projections) == (nb < _rnn.FUSE_MIN_B or (ragged and D == 2)), nb
                layer._fuse_min_b = 1 << 30
                upfront = layer(X, lens, h0, c0, nthreads=nt)
                del layer._fuse_min_b
                ctx = f"isa={isa} batch={nb} threads={nt}"
                for f, u, w in zip(fused, upfront, want):
                    np.testing.assert_array_equal(f, u, err_msg=ctx)
                    np.testing.assert_array_equal(f, w, err_msg=ctx)


@pytest.mark.parametrize("kind,direction,lbr", [("lstm", "forward", 0), ("lstm", "bidirectional", 0),
                                                ("gru", "forward", 1), ("gru", "reverse", 0)])
def test_close_to_float64_reference(kind, direction, lbr):
    rng = np.random.default_rng(3)
    D = 2 if direction == "bidirectional" else 1
    W, R, B = _weights(rng, kind, D, 40, 96, 0.15)
    X = rng.standard_normal((30, 2, 40)).astype(np.float32)
    lens = np.array([30, 17])
    if kind == "lstm":
        ref = lstm_ref(X, W, R, B, lens, direction=direction)
    else:
        ref = gru_ref(X, W, R, B, lens, direction=direction, linear_before_reset=lbr)
    got = DynamicRNN.from_float(kind, W, R, B, direction=direction,
                                linear_before_reset=lbr)(X, lens)
    err = np.linalg.norm(got[0] - ref[0]) / np.linalg.norm(ref[0])
    assert err < 0.02, err


def test_streaming_in_chunks_equals_one_call():
    rng = np.random.default_rng(5)
    for kind, per_row in [("lstm", False), ("gru", True)]:
        W, R, B = _weights(rng, kind, 1, 16, 40)
        layer = DynamicRNN.from_float(kind, W, R, B, linear_before_reset=1, per_row=per_row)
        X = rng.standard_normal((23, 2, 16)).astype(np.float32)
        Y, h, c = layer(X)
        ys, hs, cs = [], None, None
        for a, b in [(0, 1), (1, 9), (9, 10), (10, 23)]:
            y, hs, cs = layer(X[a:b], None, hs, cs)
            ys.append(y)
        np.testing.assert_array_equal(np.concatenate(ys), Y)
        np.testing.assert_array_equal(hs, h)
        if kind == "lstm":
            np.testing.assert_array_equal(cs, c)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    W, R, B = _weights(rng, "lstm", 1, 8, 16)
    layer = DynamicRNN.from_float("lstm", W, R, B)
    X = rng.standard_normal((5, 2, 8)).astype(np.float32)
    with pytest.raises(qengine.ShapeError, match=r"\[seq, batch, 8\]"):
        layer(X[..., :7])
    with pytest.raises(qengine.ShapeError, match="initial_h"):
        layer(X, None, np.zeros((1, 3, 16), np.float32))
    with pytest.raises(qengine.ShapeError, match="sequence_lens"):
        layer(X, np.array([6, 1]))
    with pytest.raises(qengine.ShapeError, match="sequence_lens"):
        layer(X, np.array([1.5, 1.0]))
    with pytest.raises(qengine.ShapeError):
        DynamicRNN.from_float("lstm", W[:, :10], R, B)
    with pytest.raises(qengine.ConfigError, match="direction"):
        DynamicRNN.from_float("lstm", W, R, B, direction="sideways")
