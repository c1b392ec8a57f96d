"""Real models exported by torch.onnx (dynamo and TorchScript exporters), imported with
from_onnx, executed in FP32 and compared with onnxruntime and with torch itself."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import qengine  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402

nn = torch.nn


class EmbLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.rnn = nn.LSTM(8, 12, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(24, 5)

    def forward(self, tokens):
        y, _ = self.rnn(self.emb(tokens))
        return torch.log_softmax(self.fc(y), dim=-1)


class LSTMStates(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 10, num_layers=2)

    def forward(self, x, h0, c0):
        y, (h, c) = self.rnn(x, (h0, c0))
        return y, h, c


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 9, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(18, 3)

    def forward(self, x, h0):
        y, h = self.rnn(x, h0)
        return torch.relu(self.fc(y)), h


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(7, 16), nn.Linear(16, 4)

    def forward(self, x):
        return torch.softmax(self.b(torch.tanh(self.a(x))), dim=-1)


def _cases():
    g = torch.Generator().manual_seed(0)
    return {
        "emb_lstm_linear": (EmbLSTM, (torch.randint(0, 30, (2, 5), generator=g),)),
        "lstm_2layer_states": (LSTMStates, (torch.randn(4, 3, 6, generator=g),
                                            torch.randn(2, 3, 10, generator=g),
                                            torch.randn(2, 3, 10, generator=g))),
        "gru_bidir_batch_first": (GRUNet, (torch.randn(2, 5, 6, generator=g),
                                           torch.randn(4, 2, 9, generator=g))),
        "mlp": (MLP, (torch.randn(3, 7, generator=g),)),
        "mlp_3d": (MLP, (torch.randn(2, 3, 7, generator=g),)),
    }


def _export(model, args, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"dynamo": dynamo}
        if dynamo:
            kw["verbose"] = False
        torch.onnx.export(model, args, str(path), **kw)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("case", list(_cases()))
def test_exported_model_matches_ort_and_torch(case, dynamo, tmp_path):
    torch.manual_seed(0)
    cls, args = _cases()[case]
    model = cls().eval()
    path = tmp_path / f"{case}.onnx"
    _export(model, args, path, dynamo)
    with torch.no_grad():
        want_torch = model(*args)
    want_torch = [t.numpy() for t in (want_torch if isinstance(want_torch, tuple)
                                      else (want_torch,))]
    feeds_np = [a.numpy() for a in args]

    graph = from_onnx(path)
    sess = qengine.Session(graph)
    got = sess.run(feeds_np)                      # positional inputs
    assert list(got) == sess.output_names
    so = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want_ort = so.run(None, {i.name: a for i, a in zip(so.get_inputs(), feeds_np)})
    for g_, o, t in zip(got.values(), want_ort, want_torch):
        np.testing.assert_allclose(g_, o, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g_, t, rtol=1e-5, atol=1e-4)
    # float64 execution of the same graph agrees too (it is the reference mode)
    got64 = qengine.Session(graph, float_dtype=np.float64).run(feeds_np)
    for g_, t in zip(got64.values(), want_torch):
        np.testing.assert_allclose(g_, t, rtol=1e-5, atol=1e-5)
    # the exporters' shape plumbing is folded away: only real compute and layout ops remain
    assert not {"Constant", "Shape", "ConstantOfShape"} & {n.op_type for n in graph.nodes}


def test_dynamic_batch_and_time_axes(tmp_path):
    torch.manual_seed(0)
    model = EmbLSTM().eval()
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randint(0, 30, (2, 5)),), str(path), dynamo=False,
                          input_names=["tokens"], output_names=["logp"],
                          dynamic_axes={"tokens": {0: "batch", 1: "time"},
                                        "logp": {0: "batch", 1: "time"}})
    sess = qengine.Session(from_onnx(path))
    assert sess.inputs[0].shape == ("batch", "time")
    for shape in ((1, 1), (3, 7)):
        tokens = torch.randint(0, 30, shape)
        with torch.no_grad():
            want = model(tokens).numpy()
        got = sess.run({"tokens": tokens.numpy()})["logp"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
