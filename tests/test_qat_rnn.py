"""qengine.qat for recurrent models: LSTM / GRU / Linear as the dynamic int8 layers run them.

The eval forward computes the dynamic kernels' integer sums exactly and their float32
epilogue in the engine's order; only the gate functions differ (torch's sigmoid/tanh vs the
engine's gate kernels, ~1 float32 ulp), so the engine agrees with it to float32 rounding."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import qengine  # noqa: E402
import qengine.qat as qat  # noqa: E402
from qengine.errors import ConfigError  # noqa: E402
from qengine.quantized.weights import quantize_per_channel_symmetric  # noqa: E402

torch.set_num_threads(1)


class LM(nn.Module):
    def __init__(self, kind=nn.LSTM, inp=12, hidden=16, out=12, **kw):
        super().__init__()
        self.rnn = kind(inp, hidden, **kw)
        self.fc = nn.Linear(hidden * (2 if kw.get("bidirectional") else 1), out)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


def _trained(model, x, config, steps=4):
    q = qat.prepare(model, x, config)
    q.train()
    opt = torch.optim.SGD(q.parameters(), 0.05)
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        loss = q(torch.randn(x.shape, generator=g)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return q.eval()


VARIANTS = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "lstm_2layer_bidirectional": (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    "gru_2layer_batch_first": (nn.GRU, {"num_layers": 2, "batch_first": True}),
}


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("mode", ["dynamic", "static"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_engine_equals_eval_forward_to_float32_rounding(name, mode, bits):
    kind, kw = VARIANTS[name]
    torch.manual_seed(1)
    x = torch.randn(9, 3, 12) * 2
    q = _trained(LM(kind, **kw), x, qat.QATConfig(mode=mode, weight_bits=bits))
    with torch.no_grad():
        ref = q(x).numpy()
    g = qat.convert(q)
    assert {"DynamicQuantLinear", "DynamicQuantLSTM" if kind is nn.LSTM else
            "DynamicQuantGRU"} <= {n.op_type for n in g.nodes}
    out = qengine.Session(g).run({"x": x.numpy()})[q.output_names[0]]
    # one float32 ulp in a gate may move one activation code of a later step by one
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    for n in g.nodes:
        if n.op_type.startswith("DynamicQuant"):
            w = g.initializers[n.inputs[1]]
            assert w.dtype == np.int8 and np.abs(w).max() == 2 ** (bits - 1) - 1


def test_untrained_convert_has_the_weights_quantize_dynamic_would_choose():
    torch.manual_seed(0)
    m = LM(nn.LSTM)
    q = qat.prepare(m, torch.randn(5, 2, 12), qat.QATConfig(mode="dynamic")).eval()
    g = qat.convert(q)
    lin = next(n for n in g.nodes if n.op_type == "DynamicQuantLinear")
    wq, ws = quantize_per_channel_symmetric(m.fc.weight.detach().numpy())
    np.testing.assert_array_equal(g.initializers[lin.inputs[1]], wq)
    np.testing.assert_array_equal(g.initializers[lin.inputs[2]], ws)
    lstm = next(n for n in g.nodes if n.op_type == "DynamicQuantLSTM")
    H = 16
    onnx_rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in (0, 3, 1, 2)])
    wq, ws = quantize_per_channel_symmetric(m.rnn.weight_hh_l0.detach().numpy()[onnx_rows])
    np.testing.assert_array_equal(g.initializers[lstm.inputs[3]][0], wq)
    np.testing.assert_array_equal(g.initializers[lstm.inputs[4]][0], ws)


def test_qat_trains_a_recurrent_model():
    """A delayed-copy task: the QAT model's loss falls, and the converted engine keeps it."""
    torch.manual_seed(0)
    V, T, B = 6, 12, 16
    m = LM(nn.GRU, inp=V, hidden=24, out=V)
    q = qat.prepare(m, torch.zeros(T, B, V), qat.QATConfig(mode="dynamic", weight_bits=4))
    opt = torch.optim.Adam(q.parameters(), 0.02)
    g = torch.Generator().manual_seed(1)

    def batch():
        ids = torch.randint(0, V, (T, B), generator=g)
        return nn.functional.one_hot(ids, V).float(), torch.roll(ids, 1, 0)

    q.train()
    losses = []
    for _ in range(60):
        x, y = batch()
        loss = nn.functional.cross_entropy(q(x)[1:].reshape(-1, V), y[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.log(V), losses[::10]
    q.eval()
    x, y = batch()
    logits = qengine.Session(qat.convert(q)).run({"x": x.numpy()})[q.output_names[0]]
    acc = (logits[1:].argmax(-1) == y[1:].numpy()).mean()
    assert acc > 0.9


def test_dynamic_mode_refuses_convolutions_by_name():
    m = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Flatten(), nn.Linear(48, 2))
    with pytest.raises(ConfigError, match="mode='dynamic' quantizes Linear, LSTM and GRU"):
        qat.prepare(m, torch.randn(1, 3, 4, 4), qat.QATConfig(mode="dynamic"))


def test_initial_state_is_refused_clearly():
    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5)

        def forward(self, x, h):
            return self.rnn(x, h)[0]

    with pytest.raises(ConfigError, match="initial state"):
        qat.prepare(WithState(), (torch.randn(3, 1, 4), torch.zeros(1, 1, 5)))
