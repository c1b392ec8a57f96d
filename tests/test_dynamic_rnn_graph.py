"""Dynamic-int8 LSTM/GRU/Linear at graph level: torch models through ONNX (accuracy vs torch's
quantize_dynamic), streaming, engine file, Gemm/MatMul semantics, config, input validation,
concurrency, fork. Kept apart from the kernel-level tests (test_dynamic_rnn.py) because it needs
torch, which those do not (they also run under CPU emulation: scripts/test_other_cpus.sh)."""
import multiprocessing as mp
import threading

import numpy as np
import pytest

import qengine

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


class _Net(torch.nn.Module):
    """Embedding → 2-layer bidirectional LSTM (batch_first) → GRU → Linear, the shapes a text
    model has; `state` adds (h0, c0) inputs and (h_n, c_n) outputs for streaming."""

    def __init__(self, state=False):
        super().__init__()
        self.state = state
        self.emb = torch.nn.Embedding(40, 24)
        self.lstm = torch.nn.LSTM(24, 48, num_layers=2, batch_first=True,
                                  bidirectional=not state)
        self.gru = torch.nn.GRU(48 if state else 96, 32, batch_first=True)
        self.fc = torch.nn.Linear(32, 7)

    def forward(self, x, h0=None, c0=None):
        if self.state:
            y, (h, c) = self.lstm(self.emb(x), (h0, c0))
            return self.fc(self.gru(y)[0]), h, c
        y, _ = self.lstm(self.emb(x))
        return self.fc(self.gru(y)[0])


def _export(model, args, path, dynamo, names, outs, dynamic_axes=None):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=dynamo, input_names=names,
                          output_names=outs, dynamic_axes=dynamic_axes)
    return str(path)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_model_through_onnx_accuracy_vs_torch_quantize_dynamic(tmp_path, dynamo):
    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randint(0, 40, (4, 25))
    path = _export(model, (x,), tmp_path / "m.onnx", dynamo, ["x"], ["y"])
    # every layer int8, as torch's quantize_dynamic does (the keep-float rule would keep the
    # thin linear head float: int8 is slower there)
    g = qengine.quantize_dynamic(qengine.from_onnx(path),
                                 qengine.DynamicQuantConfig(cost_model=False))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("DynamicQuantLSTM") == 2 and "DynamicQuantGRU" in ops
    assert "DynamicQuantLinear" in ops and not {"LSTM", "GRU", "MatMul", "Gemm"} & set(ops)
    y = qengine.Session(g).run({"x": x.numpy()})["y"]
    tq = torch.ao.quantization.quantize_dynamic(
        model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
    assert type(tq.lstm) is not torch.nn.LSTM          # torch really quantized it
    with torch.no_grad():
        y_fp, y_tq = model(x).numpy(), tq(x).numpy()
    err, err_torch = _rel(y, y_fp), _rel(y_tq, y_fp)
    assert err < 0.02
    assert err <= 1.1 * err_torch, (err, err_torch)


def test_streaming_session_and_engine_file_round_trip(tmp_path):
    torch.manual_seed(1)
    model = _Net(state=True).eval()
    x = torch.randint(0, 40, (1, 30))
    h0, c0 = torch.zeros(2, 1, 48), torch.zeros(2, 1, 48)
    path = _export(model, (x, h0, c0), tmp_path / "s.onnx", False, ["x", "h0", "c0"],
                   ["y", "h", "c"], dynamic_axes={"x": {1: "time"}, "y": {1: "time"}})
    g = qengine.quantize_dynamic(qengine.from_onnx(path))
    qengine.save(g, tmp_path / "s.qe")
    sess = qengine.load(tmp_path / "s.qe")
    feeds = {"x": x.numpy(), "h0": h0.numpy(), "c0": c0.numpy()}
    whole = qengine.Session(g).run(feeds)
    np.testing.assert_array_equal(sess.run(feeds)["y"], whole["y"])
    # chunks, carrying the LSTM's (h, c) between calls: its final state is bit-identical
    # (this model's GRU restarts from zero state every call, so y is not compared)
    h, c = feeds["h0"], feeds["c0"]
    for a, b in [(0, 7), (7, 8), (8, 30)]:
        out = sess.run({"x": feeds["x"][:, a:b], "h0": h, "c0": c})
        h, c = out["h"], out["c"]
    np.testing.assert_array_equal(h, whole["h"])
    np.testing.assert_array_equal(c, whole["c"])


@pytest.mark.parametrize("trans_b,alpha,beta", [(0, 1.0, 1.0), (1, 0.5, 2.0)])
def test_gemm_and_matmul_are_quantized_with_their_semantics(trans_b, alpha, beta):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(trans_b)
    K, N = 64, 48
    Bm = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    C = rng.standard_normal(N).astype(np.float32)
    M2 = rng.standard_normal((N, 16)).astype(np.float32)
    bias2 = rng.standard_normal(16).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "B", "C"], ["h"], alpha=alpha, beta=beta,
                              transB=trans_b, name="gemm"),
             helper.make_node("MatMul", ["h", "M2"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "bias2"], ["y"], name="add")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
        [numpy_helper.from_array(v, n) for v, n in
         [(Bm, "B"), (C, "C"), (M2, "M2"), (bias2, "bias2")]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    int8 = qengine.DynamicQuantConfig(cost_model=False)      # the int8 ops' semantics here
    g = qengine.quantize_dynamic(qengine.from_onnx(model), int8)
    assert [n.op_type for n in g.nodes] == ["DynamicQuantLinear", "DynamicQuantLinear"]
    x = rng.standard_normal((5, K)).astype(np.float32)
    Bkn = Bm.T if trans_b else Bm
    want = (alpha * (x.astype(np.float64) @ Bkn) + beta * C) @ M2 + bias2
    got = qengine.Session(g).run({"x": x})["y"]
    assert _rel(got, want) < 0.02
    per_row = qengine.quantize_dynamic(
        qengine.from_onnx(model), qengine.DynamicQuantConfig(per_row=True, cost_model=False))
    assert _rel(qengine.Session(per_row).run({"x": x})["y"], want) < 0.02


def test_keep_float_and_config_validation(tmp_path):
    torch.manual_seed(0)
    model = _Net().eval()
    path = _export(model, (torch.randint(0, 40, (1, 5)),), tmp_path / "m.onnx", False, ["x"],
                   ["y"])
    g = qengine.from_onnx(path)
    gru = next(n.name for n in g.nodes if n.op_type == "GRU")
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(keep_float={gru}))
    assert "GRU" in [n.op_type for n in q.nodes]
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(op_types={"LSTM"}))
    assert {n.op_type for n in q.nodes} >= {"DynamicQuantLSTM", "GRU"}
    with pytest.raises(qengine.ConfigError, match="not in the graph"):
        qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(keep_float={"nope"}))
    with pytest.raises(qengine.ConfigError, match="cannot be dynamically quantized"):
        qengine.DynamicQuantConfig(op_types={"Softmax"})
    with pytest.raises(qengine.ConfigError, match="per_row"):
        qengine.DynamicQuantConfig(per_row="yes")


def _lstm_session(tmp_path):
    torch.manual_seed(2)
    model = _Net().eval()
    x = torch.randint(0, 40, (2, 20))
    path = _export(model, (x,), tmp_path / "t.onnx", False, ["x"], ["y"])
    return qengine.Session(qengine.quantize_dynamic(qengine.from_onnx(path))), x.numpy()


def test_session_inputs_are_validated(tmp_path):
    sess, x = _lstm_session(tmp_path)
    with pytest.raises(qengine.ShapeError, match="x"):
        sess.run({"x": x.astype(np.float32)})
    with pytest.raises(qengine.ShapeError):
        sess.run({"x": x[0]})
    with pytest.raises(qengine.ShapeError):
        sess.run({})
    with pytest.raises(qengine.ShapeError):
        sess.run({"x": x, "extra": x})


def test_concurrent_runs_equal_serial_runs(tmp_path):
    sess, x = _lstm_session(tmp_path)
    inputs = [np.roll(x, i, axis=1) for i in range(6)]
    serial = [sess.run({"x": v})["y"] for v in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(3):
            results[i] = sess.run({"x": inputs[i]})["y"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def _child_run(sess, x, q):
    q.put(sess.run({"x": x})["y"])


def test_forked_child_still_runs(tmp_path):
    sess, x = _lstm_session(tmp_path)
    qengine.set_num_threads(2)
    y = sess.run({"x": x})["y"]                        # the OpenMP pool exists now
    qengine.quantize(np.ones(300_000, np.float32), 0.1, 0)   # and the quantizer's too
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_run, args=(sess, x, q))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("forked child hung in OpenMP")
    assert p.exitcode == 0
    np.testing.assert_array_equal(q.get(timeout=5), y)
