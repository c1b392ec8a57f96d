"""The compiled FP32 LSTM/GRU time loop (include/qengine/f32/qe_f32_rnn.h) and its row-major
GEMM (qe_f32_gemm.h).

* every ISA gives the scalar twin's bits (the GEMV/GEMM FMA chains and the gate kernels are the
  same operations in the same order on every ISA);
* batch 1 (the GEMV kernel) and the same row inside a larger batch (the pc GEMM tile) agree
  bit for bit;
* 1 and 2 threads give the same bits (whole blocks of units per thread, no split reduction);
* the FP32 op stays close to the float64 reference (tests/test_graph_ops_rnn.py covers the
  attribute combinations at small sizes) and to onnxruntime at sizes with several unit
  blocks, padding (H not a multiple of 32), sequence_lens and both directions.
"""
import numpy as np
import pytest

import qengine
from qengine import Session, _runtime
from qengine._ext import _cpu, _f32
from qengine.graph import Graph, Node, ValueInfo
from qengine.reference.rnn import gru_ref, lstm_ref

ISAS = list(_runtime.ISA_NAMES[:3])


def _isa_or_skip(name):
    if name not in _runtime.available_isas():
        pytest.skip(f"{name} not available on this CPU/build")
    return _runtime.isa_index(name)


def _graph(op, T, B, I, H, D, seed, lens=None, **attrs):
    rng = np.random.default_rng(seed)
    G = 4 if op == "LSTM" else 3
    W = (rng.standard_normal((D, G * H, I)) / np.sqrt(I)).astype(np.float32)
    R = (rng.standard_normal((D, G * H, H)) / np.sqrt(H)).astype(np.float32)
    Bi = (rng.standard_normal((D, 2 * G * H)) * 0.3).astype(np.float32)
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = (rng.standard_normal((D, B, H)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((D, B, H)) * 0.5).astype(np.float32)
    inputs = ["X", "W", "R", "B", "lens" if lens is not None else "", "h0"] + \
        (["c0"] if op == "LSTM" else [])
    feeds = {"X": X, "h0": h0}
    if op == "LSTM":
        feeds["c0"] = c0
    if lens is not None:
        feeds["lens"] = np.asarray(lens, np.int32)
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    g = Graph([ValueInfo(k, v.dtype.name, v.shape) for k, v in feeds.items()],
              [ValueInfo(o) for o in outs],
              [Node(op, "rnn", inputs, outs, dict(hidden_size=H, **attrs))],
              {"W": W, "R": R, "B": Bi})
    return g, feeds, (W, R, Bi, X, h0, c0)


def _run(g, feeds, isa=None):
    """Session output with the op's weights repacked for `isa` (default: the active one)."""
    s = Session(g)
    if isa is not None:
        op = s._executor.ops[0]
        if g.nodes[0].op_type == "LSTM":
            op.pack_compiled(g.initializers["W"], g.initializers["R"], op.bias, isa=isa)
        else:
            op.pack_compiled(g.initializers["W"], g.initializers["R"], op.bias_x, op.bias_rh,
                             isa=isa)
    return s.run(feeds)


CASES = [("LSTM", {}), ("LSTM", {"direction": "bidirectional"}),
         ("LSTM", {"direction": "reverse", "clip": 0.8}),
         ("GRU", {"linear_before_reset": 0}), ("GRU", {"linear_before_reset": 1}),
         ("GRU", {"direction": "bidirectional", "linear_before_reset": 1, "clip": 1.5})]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op,attrs", CASES, ids=str)
@pytest.mark.parametrize("batch", [1, 3, 9])
def test_isas_bit_identical_to_scalar(isa, op, attrs, batch):
    i = _isa_or_skip(isa)
    lens = None if batch == 1 else [7] + [3, 7, 5, 1, 6, 2, 7, 4][:batch - 1]
    g, feeds, _ = _graph(op, 7, batch, 11, 45, 2 if "bi" in attrs.get("direction", "") else 1,
                         seed=batch, lens=lens, **attrs)
    want = _run(g, feeds, "scalar")
    got = _run(g, feeds, isa)
    for k in want:
        np.testing.assert_array_equal(got[k].view(np.uint32), want[k].view(np.uint32))
    del i


@pytest.mark.parametrize("op,attrs", CASES, ids=str)
def test_batch_row_equals_batch_1(op, attrs):
    """Row b of a batch-5 run has the bits of a batch-1 run on row b alone (GEMV kernel vs
    the pc GEMM tile)."""
    D = 2 if "bi" in attrs.get("direction", "") else 1
    g, feeds, _ = _graph(op, 6, 5, 9, 70, D, seed=3, **attrs)
    full = Session(g).run(feeds)
    for b in (0, 3, 4):
        one = {k: (v[:, b:b + 1] if k != "X" else v[:, b:b + 1]) for k, v in feeds.items()}
        g1 = g.copy()
        g1.inputs = [ValueInfo(k, v.dtype.name, v.shape) for k, v in one.items()]
        got = Session(g1).run(one)
        np.testing.assert_array_equal(got["Y"].view(np.uint32),
                                      full["Y"][:, :, b:b + 1].view(np.uint32))


@pytest.mark.parametrize("op,attrs", [("LSTM", {}), ("GRU", {"linear_before_reset": 0}),
                                      ("GRU", {"linear_before_reset": 1})], ids=str)
@pytest.mark.parametrize("batch", [1, 4])
def test_same_bits_for_1_and_2_threads(op, attrs, batch):
    """H = 200 (7 blocks of 32 units, the last padded): large enough for two threads."""
    g, feeds, _ = _graph(op, 5, batch, 64, 200, 1, seed=4, **attrs)
    s = Session(g)
    before = qengine.get_num_threads()
    try:
        qengine.set_num_threads(1)
        one = s.run(feeds)
        qengine.set_num_threads(2)
        _cpu.max_team(reset=True)
        two = s.run(feeds)
        team = _cpu.max_team()
    finally:
        qengine.set_num_threads(before)
    if _cpu.openmp_enabled():
        assert team == 2
    for k in one:
        np.testing.assert_array_equal(one[k].view(np.uint32), two[k].view(np.uint32))


@pytest.mark.parametrize("op,attrs", CASES, ids=str)
def test_close_to_float64_reference(op, attrs):
    """T = 30 steps, H = 100 (4 blocks, 28 padded units), ragged sequence lengths."""
    D = 2 if "bi" in attrs.get("direction", "") else 1
    lens = [30, 11, 24]
    g, feeds, (W, R, B, X, h0, c0) = _graph(op, 30, 3, 20, 100, D, seed=5, lens=lens, **attrs)
    got = Session(g).run(feeds)
    f64 = [a.astype(np.float64) for a in (X, W, R, B, h0, c0)]
    if op == "LSTM":
        want = lstm_ref(f64[0], f64[1], f64[2], f64[3], np.array(lens), f64[4], f64[5], None,
                        **attrs)
    else:
        want = gru_ref(f64[0], f64[1], f64[2], f64[3], np.array(lens), f64[4], **attrs)
    for k, w in zip(("Y", "Yh", "Yc"), want):
        np.testing.assert_allclose(got[k], w, rtol=0, atol=2e-5)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_vs_onnxruntime(op):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper
    g, feeds, (W, R, B, X, h0, c0) = _graph(op, 12, 2, 33, 96, 2, seed=6, lens=[12, 5],
                                            direction="bidirectional")
    node = helper.make_node(op, list(g.nodes[0].inputs), ["Y", "Yh"], hidden_size=96,
                            direction="bidirectional")
    inputs = [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT if v.dtype == np.float32
                                            else onnx.TensorProto.INT32, v.shape)
              for k, v in feeds.items()]
    m = helper.make_model(helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
                              for o in ("Y", "Yh")],
        [numpy_helper.from_array(a, n) for n, a in (("W", W), ("R", R), ("B", B))]),
        opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    g.outputs = [ValueInfo("Y"), ValueInfo("Yh")]
    g.nodes = [g.nodes[0].replace(outputs=("Y", "Yh"))]
    got = Session(g).run(feeds)
    np.testing.assert_allclose(got["Y"], want[0], rtol=0, atol=2e-6)
    np.testing.assert_allclose(got["Yh"], want[1], rtol=0, atol=2e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 37, 19), (1, 300, 64), (2, 33, 5),
                                   (7, 64, 100), (9, 17, 3), (70, 129, 40)])
def test_gemm_isas_and_bound(isa, m, n, k):
    """C = A·B + bias: the FMA-chain error bound against float64, every ISA = scalar, with and
    without bias and clamp; row strides other than k."""
    i = _isa_or_skip(isa)
    rng = np.random.default_rng(m * n + k)
    a_full = rng.standard_normal((m, k + 3)).astype(np.float32)
    a = a_full[:, :k]
    bt = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    ref = a.astype(np.float64) @ bt.T.astype(np.float64) + bias
    scale = np.abs(a).astype(np.float64) @ np.abs(bt.T).astype(np.float64) + np.abs(bias)
    outs = []
    for isa_i in (0, i):
        packed, tile = _f32.conv_pack(bt, 1, isa_i, _f32.CONV_PC)
        for b, lo, hi in ((bias, -np.inf, np.inf), (None, 0.0, 1.5)):
            c = np.full((m, n), np.nan, np.float32)
            _f32.gemm(a, packed, tile, n, b, lo, hi, c, isa_i)
            outs.append(c)
    assert np.all(np.abs(outs[0] - ref) <= (k + 1) * 2.0 ** -24 * scale)
    np.testing.assert_array_equal(outs[1], np.clip(outs[1], 0, 1.5))
    for x, y in zip(outs[:2], outs[2:]):
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))
