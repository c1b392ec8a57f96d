"""from_torch_state_dict vs torch itself, from a dict, .npz and .safetensors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import qengine  # noqa: E402
from qengine import ConfigError, ModelError  # noqa: E402
from qengine.frontends.torch_state_dict import from_torch_state_dict  # noqa: E402

nn = torch.nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 8)
        self.rnn = nn.LSTM(8, 10, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(20, 6)

    def forward(self, x):
        return torch.log_softmax(self.fc(self.rnn(self.emb(x))[0]), -1)


SPEC = [("embedding", "emb", {}), ("lstm", "rnn", {"batch_first": True, "num_layers": 2}),
        ("linear", "fc", {}), ("log_softmax", None, {"dim": -1})]


def _sd(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("fmt", ["dict", "npz", "safetensors"])
def test_embedding_lstm_linear(fmt, tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    sd = _sd(model)
    if fmt == "npz":
        src = tmp_path / "sd.npz"
        np.savez(src, **sd)
    elif fmt == "safetensors":
        st = pytest.importorskip("safetensors.numpy")
        src = tmp_path / "sd.safetensors"
        st.save_file(sd, str(src))
    else:
        src = model.state_dict()
    graph = from_torch_state_dict(src, SPEC)
    sess = qengine.Session(graph)
    x = torch.randint(0, 40, (3, 7))
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run({"input": x.numpy()})["output"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the engine file round trip keeps it
    qengine.save(graph, tmp_path / "m.qe")
    np.testing.assert_allclose(qengine.load(tmp_path / "m.qe").run([x.numpy()])["output"], want,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_stateful_streaming_matches_one_long_call(cell):
    torch.manual_seed(1)
    rnn = (nn.GRU if cell == "gru" else nn.LSTM)(5, 7, num_layers=2, bias=cell == "gru")
    fc = nn.Linear(7, 3)
    sd = {**{f"rnn.{k}": v for k, v in _sd(rnn).items()}, **{f"fc.{k}": v for k, v in _sd(fc).items()}}
    graph = from_torch_state_dict(sd, [(cell, "rnn", {"stateful": True}), ("linear", "fc", {}),
                                       ("tanh", None, {})])
    sess = qengine.Session(graph)
    x = torch.randn(6, 2, 5)
    with torch.no_grad():
        y, state = rnn(x)
        want = torch.tanh(fc(y)).numpy()
    names = ["rnn.h0"] + (["rnn.c0"] if cell == "lstm" else [])
    states = {n: np.zeros((2, 2, 7), np.float32) for n in names}
    outs = []
    for chunk in (x[:2], x[2:3], x[3:]):       # carry the state between calls
        r = sess.run({"input": chunk.numpy(), **states})
        outs.append(r["output"])
        states = {n: r[n.replace("0", "_n")] for n in names}
    np.testing.assert_allclose(np.concatenate(outs), want, rtol=1e-5, atol=1e-5)
    h_final = state if cell == "gru" else state[0]
    np.testing.assert_allclose(states["rnn.h0"], h_final.numpy(), rtol=1e-5, atol=1e-5)


def test_spec_errors():
    torch.manual_seed(0)
    sd = _sd(Tagger())
    with pytest.raises(ConfigError, match="num_layers"):
        from_torch_state_dict(sd, [("embedding", "emb", {}), ("lstm", "rnn", {"num_layers": 3}),
                                   ("linear", "fc", {})])
    with pytest.raises(ModelError, match="not used"):
        from_torch_state_dict(sd, SPEC[:2])
    with pytest.raises(ModelError, match="no 'nope.weight'"):
        from_torch_state_dict(sd, SPEC[:2] + [("linear", "nope", {})])
    with pytest.raises(ConfigError, match="unknown layer kind"):
        from_torch_state_dict(sd, [("conv", "x", {})])
    bad = dict(sd)
    bad["fc.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ModelError, match="Linear"):
        from_torch_state_dict(bad, SPEC)
