"""The integer LSTM / GRU (qengine/quantized/static_rnn.py, include/qengine/rnn/qe_rnn_static.h):
bit for bit against its NumPy definition (reference/static_rnn.py) on every ISA, the tables
against their definition and float64, the dot kernels against int64, accuracy against the
float64 ONNX reference, and streaming (chunked runs equal one run)."""
import zlib

import numpy as np
import pytest

from qengine import ConfigError, ShapeError, _runtime
from qengine._ext import _rnn
from qengine.quantized.static_rnn import Params, StaticRNN, cell_exponent
from qengine.reference import rnn as F
from qengine.reference import static_rnn as S

ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]


def test_compiled_tables_are_the_definition():
    sig, tanh = _rnn.srnn_luts()
    want_sig, want_tanh = S.lut_tables()
    np.testing.assert_array_equal(sig, want_sig)
    np.testing.assert_array_equal(tanh, want_tanh)


def test_table_functions_stay_within_their_documented_error():
    """docs/numerics.md: over every Q3.12 input, |σ_q − 32768·σ| ≤ 1.0 LSB and
    |tanh_q − 32768·tanh| ≤ 1.6 LSB of Q0.15 (float64 truth)."""
    q = np.arange(-32768, 32768)
    x = q / 4096.0
    err_s = np.abs(S.sigmoid_q(q) - 32768 / (1 + np.exp(-x))).max()
    err_t = np.abs(S.tanh_q(q) - 32768 * np.tanh(x)).max()
    assert err_s <= 1.0 and err_t <= 1.6, (err_s, err_t)
    assert S.sigmoid_q(q).min() >= 0 and S.sigmoid_q(q).max() <= 32767
    assert np.all(np.diff(S.sigmoid_q(q)) >= 0) and np.all(np.diff(S.tanh_q(q)) >= 0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n,k", [(1, 32), (5, 96), (9, 544), (64, 4160)])
def test_dot_kernels_are_exact(isa, n, k):
    rng = np.random.default_rng(n * k)
    cases = [(rng.integers(-32768, 32768, k), rng.integers(-128, 128, (n, k))),
             (np.full(k, 32767), np.full((n, k), 127)),
             (np.full(k, -32768), np.full((n, k), -128)),          # 2^22 per product
             (np.full(k, -32768), np.full((n, k), 127))]
    for a, w in cases:
        a, w = a.astype(np.int16), w.astype(np.int8)
        want = w.astype(np.int64) @ a.astype(np.int64)
        np.testing.assert_array_equal(_rnn.s16s8_dot(_runtime.ISA_NAMES.index(isa), a, w), want)


def _layer(rng, kind, D, I, H, scale=0.5):
    G = 4 if kind == "lstm" else 3
    return (rng.normal(0, scale, (D, G * H, I)).astype(np.float32),
            rng.normal(0, scale, (D, G * H, H)).astype(np.float32),
            rng.normal(0, scale, (D, 2 * G * H)).astype(np.float32))


def _params(scheme, X, e_c=2):
    if scheme == "int16":
        return Params("int16", float(np.abs(X).max()) / 32767, 0, 2.0 ** -15, 0, e_c)
    lo, hi = float(X.min()), float(X.max())
    return Params("int8", (hi - lo) / 255, int(round(-lo * 255 / (hi - lo))), 2 / 255, 128, e_c)


VARIANTS = [("lstm", 0), ("gru", 0), ("gru", 1)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind,lbr", VARIANTS)
@pytest.mark.parametrize("scheme", ["int16", "int8"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_layer_equals_the_definition(isa, kind, lbr, scheme, direction):
    rng = np.random.default_rng(hash((kind, lbr, scheme, direction)) % 2**32)
    D = 2 if direction == "bidirectional" else 1
    T, nb, I, H = 7, 3, 19, 37
    W, R, B = _layer(rng, kind, D, I, H)
    X = rng.normal(0, 1, (T, nb, I)).astype(np.float32)
    lens = np.array([7, 3, 0])
    h0 = rng.uniform(-0.9, 0.9, (D, nb, H)).astype(np.float32)
    c0 = rng.normal(0, 1, (D, nb, H)).astype(np.float32) if kind == "lstm" else None
    for e_c in (0, 2, 5):
        p = _params(scheme, X, e_c)
        m = StaticRNN.from_float(kind, W, R, B, p, direction=direction,
                                 linear_before_reset=lbr, isa=isa)
        got = m(X, lens, h0, c0)
        want = S.static_rnn_ref(kind, p, X, m.Wq, m.Ws, m.Rq, m.Rs, B, lens, h0, c0,
                                direction=direction, linear_before_reset=lbr)
        for g, w in zip(got, want):
            if w is not None:
                np.testing.assert_array_equal(g, w)
        assert np.all(got[0][3:, :, 1] == 0) and np.all(got[0][:, :, 2] == 0)   # past lens
        np.testing.assert_array_equal(got[1][:, 2], S.static_rnn_ref(
            kind, p, X[:0], m.Wq, m.Ws, m.Rq, m.Rs, B, None, h0[:, 2:], None if c0 is None
            else c0[:, 2:], direction=direction, linear_before_reset=lbr)[1][:, 0])


@pytest.mark.parametrize("kind,lbr", VARIANTS)
@pytest.mark.parametrize("scheme,tol", [("int16", 0.02), ("int8", 0.05)])
def test_accuracy_against_the_float64_reference(kind, lbr, scheme, tol):
    rng = np.random.default_rng(7)
    T, nb, I, H = 30, 2, 32, 48
    W, R, B = _layer(rng, kind, 1, I, H, scale=0.25)
    X = rng.normal(0, 1, (T, nb, I)).astype(np.float32)
    if kind == "lstm":
        y, _, c = F.lstm_ref(X, W, R, B)
        e_c = cell_exponent(np.abs(c).max() * 1.5)
    else:
        y, _ = F.gru_ref(X, W, R, B, linear_before_reset=lbr)
        e_c = 0
    p = _params(scheme, X, e_c)
    if scheme == "int8":            # h's grid from its observed range, as calibration does
        lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
        p = Params("int8", p.s_x, p.z_x, (hi - lo) / 255, int(round(-lo * 255 / (hi - lo))),
                     e_c)
    got = StaticRNN.from_float(kind, W, R, B, p, linear_before_reset=lbr)(X)[0]
    rel = np.sqrt(np.mean((got - y) ** 2) / np.mean(y ** 2))
    assert rel < tol, rel


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind,lbr", VARIANTS)
def test_any_team_gives_the_same_bits(isa, kind, lbr):
    """The time loop divides the units among a team (groups of 8, one or two barriers a step):
    teams of 1, 2 and 3 (H = 61: uneven ranges, a tail of 5) equal the NumPy definition, with
    ragged lengths in both directions; 0 = automatic gives a layer this size a team of 2."""
    from qengine._ext import _cpu
    rng = np.random.default_rng(zlib.crc32(repr(("team", isa, kind, lbr)).encode()))
    T, nb, I, H = 6, 3, 20, 61
    W, R, B = _layer(rng, kind, 2, I, H, scale=0.3)
    X = rng.normal(0, 1, (T, nb, I)).astype(np.float32)
    lens = np.array([6, 4, 1])
    p = _params("int16", X, 3)
    m = StaticRNN.from_float(kind, W, R, B, p, direction="bidirectional", linear_before_reset=lbr,
                             isa=isa)
    want = S.static_rnn_ref(kind, p, X, m.Wq, m.Ws, m.Rq, m.Rs, B, lens,
                            direction="bidirectional", linear_before_reset=lbr)
    old = _runtime.get_num_threads()
    _runtime.set_num_threads(3)
    try:
        for nt in (1, 2, 3):
            _cpu.max_team(reset=True)
            got = m(X, lens, nthreads=nt)
            assert _cpu.max_team() == (nt if nt > 1 else 0), nt
            for g, w in zip(got, want):
                if w is not None:
                    np.testing.assert_array_equal(g, w, err_msg=f"team of {nt}")
        big = StaticRNN.from_float(kind, *_layer(rng, kind, 1, 8, 256, 0.05), p, isa=isa)
        _runtime.set_num_threads(2)
        _cpu.max_team(reset=True)
        big(rng.normal(0, 1, (2, 1, 8)).astype(np.float32))
        assert _cpu.max_team() == 2     # 3·256·256 MACs a step and more: worth a team
    finally:
        _runtime.set_num_threads(old)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("scheme", ["int16", "int8"])
def test_chunked_runs_equal_one_run(kind, scheme):
    rng = np.random.default_rng(11)
    T, nb, I, H = 24, 2, 10, 20
    W, R, B = _layer(rng, kind, 1, I, H)
    X = rng.normal(0, 1, (T, nb, I)).astype(np.float32)
    m = StaticRNN.from_float(kind, W, R, B, _params(scheme, X, 3))
    Y, Yh, Yc = m(X)
    h, c, ys = None, None, []
    for t0, t1 in ((0, 5), (5, 6), (6, 17), (17, 24)):
        y, h, c = m(X[t0:t1], None, h, c)
        ys.append(y)
    np.testing.assert_array_equal(np.concatenate(ys), Y)
    np.testing.assert_array_equal(h, Yh)
    if kind == "lstm":
        np.testing.assert_array_equal(c, Yc)


def test_cell_exponent_and_errors():
    assert [cell_exponent(v) for v in (0.0, 0.5, 1.0, 3.9, 4.0, 1e9)] == [0, 0, 1, 2, 3, 15]
    with pytest.raises(ConfigError, match="not finite"):
        cell_exponent(np.inf)
    with pytest.raises(ValueError, match="scheme"):
        Params("int4", 1.0, 0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="int16 scheme"):
        Params("int16", 1.0, 3, 2.0 ** -15, 0, 0)
    rng = np.random.default_rng(0)
    W, R, B = _layer(rng, "lstm", 1, 4, 8)
    m = StaticRNN.from_float("lstm", W, R, B, Params("int16", 1e-3, 0, 2.0 ** -15, 0, 1))
    with pytest.raises(ShapeError, match=r"X must be float \[T, batch, 4\]"):
        m(np.zeros((3, 1, 5), np.float32))
    with pytest.raises(ShapeError, match="sequence_lens"):
        m(np.zeros((3, 2, 4), np.float32), [1, 4])
    with pytest.raises(ShapeError, match="initial_h"):
        m(np.zeros((3, 2, 4), np.float32), None, np.zeros((1, 1, 8), np.float32))
    with pytest.raises(ShapeError, match="direction"):
        StaticRNN.from_float("lstm", W, R, B, m.params, direction="bidirectional")


# ---- in a graph: quantize_static(rnn=...), engine files, streaming -----------------------------
@pytest.fixture(scope="module")
def stream_models(tmp_path_factory):
    """A streaming LSTM (x, h0, c0) -> (y, hn, cn) and a bidirectional batch-first GRU
    classifier, exported from torch, with their torch outputs as the oracle."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("static_rnn")
    torch.manual_seed(0)

    class Stream(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(12, 40)
            self.fc = torch.nn.Linear(40, 6)

        def forward(self, x, h0, c0):
            y, (h, c) = self.lstm(x, (h0, c0))
            return self.fc(y), h, c

    class Cls(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(10, 24, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(48, 4)

        def forward(self, x):
            y, _ = self.gru(x)
            return self.fc(y[:, -1])

    rng = np.random.default_rng(0)
    s, c = Stream().eval(), Cls().eval()
    xs = rng.normal(0, 1, (60, 4, 12)).astype(np.float32)
    z = np.zeros((1, 4, 40), np.float32)
    xc = rng.normal(0, 1, (32, 15, 10)).astype(np.float32)
    torch.onnx.export(s, tuple(torch.from_numpy(a) for a in (xs[:5], z, z)), d / "stream.onnx",
                      input_names=["x", "h0", "c0"], output_names=["y", "hn", "cn"],
                      dynamic_axes={"x": {0: "t"}}, dynamo=False, opset_version=17)
    torch.onnx.export(c, (torch.from_numpy(xc[:2]),), d / "cls.onnx", input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}}, dynamo=False,
                      opset_version=17)
    with torch.no_grad():
        ys = [t.numpy() for t in s(*(torch.from_numpy(a) for a in (xs, z, z)))]
        yc = c(torch.from_numpy(xc)).numpy()
    return dict(stream=d / "stream.onnx", xs=xs, z=z, ys=ys, cls=d / "cls.onnx", xc=xc, yc=yc)


def _sqnr(y, ref):
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2))


@pytest.mark.parametrize("rnn,floor", [("int16", 38), ("int8", 33)])
def test_quantize_static_makes_integer_rnns_that_track_torch(stream_models, rnn, floor,
                                                             tmp_path):
    import qengine
    m = stream_models
    cfg = qengine.StaticQuantConfig(rnn=rnn)
    calib = [{"x": m["xs"], "h0": m["z"], "c0": m["z"]}]
    q = qengine.quantize_static(m["stream"], calib, cfg)
    ops = {n.op_type for n in q.nodes}
    assert "StaticQuantLSTM" in ops and "LSTM" not in ops
    sess = qengine.Session(q)
    out = sess.run({"x": m["xs"], "h0": m["z"], "c0": m["z"]})
    assert _sqnr(out["y"], m["ys"][0]) > floor
    assert _sqnr(out["cn"], m["ys"][2]) > floor - 5
    qengine.save(q, tmp_path / "s.qe")                   # the engine file: the same bytes
    again = qengine.load(tmp_path / "s.qe").run({"x": m["xs"], "h0": m["z"], "c0": m["z"]})
    for k in out:
        np.testing.assert_array_equal(again[k], out[k])
    # streaming: chunks with the state carried equal one run, bit for bit
    h, c, ys = m["z"], m["z"], []
    for t0, t1 in ((0, 7), (7, 8), (8, 31), (31, 60)):
        r = sess.run({"x": m["xs"][t0:t1], "h0": h, "c0": c})
        ys.append(r["y"])
        h, c = r["hn"], r["cn"]
    np.testing.assert_array_equal(np.concatenate(ys), out["y"])
    np.testing.assert_array_equal(c, out["cn"])
    qc = qengine.quantize_static(m["cls"], {"x": m["xc"]}, cfg)
    assert "StaticQuantGRU" in {n.op_type for n in qc.nodes}
    assert _sqnr(qengine.Session(qc).run({"x": m["xc"]})["y"], m["yc"]) > floor - 5


def test_calibration_merges_exactly_and_carries_state(stream_models):
    import qengine
    from qengine.calibration import RNNObserver, carry_state
    from qengine.workflows.ptq import prepare_float_graph
    from qengine.workflows.static_rnn import rnn_observers
    m = stream_models
    g = prepare_float_graph(m["stream"])
    name = next(n.name for n in g.nodes if n.op_type == "LSTM")
    whole = rnn_observers(g)[name]
    halves = [rnn_observers(g)[name] for _ in range(2)]
    for part, (t0, t1) in zip(halves, ((0, 30), (30, 60))):
        part.observe(m["xs"][t0:t1])
    whole.observe(m["xs"][:30])
    whole.observe(m["xs"][30:])
    merged = halves[0].merge(halves[1])
    assert isinstance(merged, RNNObserver)
    for scheme in ("int16", "int8"):
        assert merged.params(scheme).tuple() == whole.params(scheme).tuple()
    # carry_state hands each chunk the float model's state after the previous one
    chunks = [{"x": m["xs"][t0:t0 + 10], "h0": m["z"], "c0": m["z"]} for t0 in range(0, 60, 10)]
    feeds = list(carry_state(g, chunks, {"h0": "hn", "c0": "cn"}))
    ref = qengine.Session(g).run({"x": m["xs"][:50], "h0": m["z"], "c0": m["z"]})
    np.testing.assert_allclose(feeds[-1]["c0"], ref["cn"], rtol=1e-5, atol=1e-6)
    carried = rnn_observers(g)[name]
    for f in feeds:
        carried.observe(f["x"], None, f["h0"], f["c0"])
    assert carried.params("int16").tuple() == whole.params("int16").tuple()
    with pytest.raises(ConfigError, match="not inputs of the model"):
        list(carry_state(g, chunks, {"state": "hn"}))


def test_report_compares_the_schemes_and_warns_when_8_bit_collapses(stream_models, tmp_path):
    import json
    import subprocess
    import sys
    import qengine
    from qengine.workflows.static_rnn import rnn_report
    m = stream_models
    feeds = [{"x": m["xs"], "h0": m["z"], "c0": m["z"]}]
    (r,) = rnn_report(m["stream"], feeds)
    assert r.op == "LSTM" and not r.collapsed and r.cell_saturated == 0
    assert r.h_sqnr["int16"] > 40 and r.h_sqnr["int8"] > 25 and r.h_sqnr["dynamic"] > 30
    assert set(r.c_sqnr) == {"dynamic", "int16", "int8"}
    # one outlier frame in the calibration data stretches the 8-bit input grid until most
    # inputs round to a handful of codes: the 8-bit scheme collapses, int16 does not
    spiky = m["xs"].copy()
    spiky[0, 0] = 400.0
    with pytest.warns(qengine.QuantizationWarning, match="8-bit scheme collapses"):
        (r,) = rnn_report(m["stream"], [{**feeds[0], "x": spiky}], feeds)
    assert r.collapsed and r.h_sqnr["int16"] > 35 and r.h_sqnr["int8"] < 20
    (g,) = rnn_report(m["cls"], {"x": m["xc"]})
    assert g.op == "GRU" and g.c_sqnr == {} and g.h_sqnr["int16"] > 35
    # the CLI: qengine analyze prints the same comparison
    np.savez(tmp_path / "c.npz", x=m["xc"])
    p = subprocess.run([sys.executable, "-m", "qengine", "analyze", str(m["cls"]), "--calib",
                        str(tmp_path / "c.npz"), "--json"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)["rnn_layers"]
    assert row["op"] == "GRU" and row["int8_collapses"] is False
    assert row["h_sqnr_db"]["int16"] == pytest.approx(g.h_sqnr["int16"])


@pytest.mark.parametrize("rnn", ["int16", "int8"])
def test_export_writes_the_integer_rnn_as_qdq_around_a_float_op(stream_models, rnn, tmp_path):
    """ONNX cannot express the integer recurrence: the export is the float op with dequantized
    int8 weights and a Q/DQ pair on X (numerics.md); ONNX Runtime then runs it close to the
    engine, not equal to it."""
    import qengine
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = stream_models
    q = qengine.quantize_static(m["cls"], {"x": m["xc"]}, qengine.StaticQuantConfig(rnn=rnn))
    model = qengine.export_onnx(q, tmp_path / "g.onnx", opset=21)
    ops = [n.op_type for n in model.graph.node]
    assert "GRU" in ops and "QuantizeLinear" in ops
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    assert {a.name for a in gru.attribute} <= {"direction", "hidden_size", "layout",
                                               "linear_before_reset"}
    x_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and
               n.output[0].startswith(gru.name))
    zp = next(i for i in model.graph.initializer if i.name == x_q.input[2])
    assert zp.data_type == (onnx.TensorProto.INT16 if rnn == "int16" else onnx.TensorProto.UINT8)
    y = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, {"x": m["xc"]})[0]
    mine = qengine.Session(q).run({"x": m["xc"]})["y"]
    assert _sqnr(y, mine) > 25


def test_rnn_observer_leaves_nan_out_of_the_ranges():
    from qengine.calibration import RNNObserver
    rng = np.random.default_rng(5)
    W, R, B = _layer(rng, "lstm", 1, 6, 10)
    X = rng.normal(0, 1, (12, 2, 6)).astype(np.float32)
    clean, dirty = RNNObserver("lstm", W, R, B), RNNObserver("lstm", W, R, B)
    clean.observe(X[:, :1])
    bad = X.copy()
    bad[:, 1] = np.nan                        # one whole sequence is NaN
    dirty.observe(bad)
    for scheme in ("int16", "int8"):
        p = dirty.params(scheme)
        assert np.isfinite(p.s_x) and p.tuple() == clean.params(scheme).tuple()
