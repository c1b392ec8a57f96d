"""qengine.qat for recurrent models: LSTM / GRU / Linear as the dynamic int8 layers run them.

The eval forward computes the dynamic kernels' integer sums exactly in torch, their float32
epilogue (a) / (c) in the engine's order and the gates with the engine's compiled gate
functions, so the converted engine equals it bit for bit — with 8-bit, 4-bit and group-wise
4-bit weights."""
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


@pytest.mark.parametrize("bits", [8, 4, "4g32"])
@pytest.mark.parametrize("mode", ["dynamic", "static"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_engine_equals_eval_forward_bit_for_bit(name, mode, bits):
    kind, kw = VARIANTS[name]
    torch.manual_seed(1)
    group = 32 if bits == "4g32" else None
    bits = 4 if group else bits
    # 40 inputs, 48 hidden units: group 32 leaves a short last group along both K
    x = torch.randn(9, 3, 40) * 2
    q = _trained(LM(kind, inp=40, hidden=48, out=40, **kw), x,
                 qat.QATConfig(mode=mode, weight_bits=bits, group_size=group))
    with torch.no_grad():
        ref = q(x).numpy()
    g = qat.convert(q)
    assert {"DynamicQuantLinear", "DynamicQuantLSTM" if kind is nn.LSTM else
            "DynamicQuantGRU"} <= {n.op_type for n in g.nodes}
    out = qengine.Session(g).run({"x": x.numpy()})[q.output_names[0]]
    np.testing.assert_array_equal(out, ref)
    for n in g.nodes:
        if n.op_type.startswith("DynamicQuant"):
            w, s = g.initializers[n.inputs[1]], g.initializers[n.inputs[2]]
            if bits == 8:
                assert w.dtype == np.int8 and np.abs(w).max() == 127
            else:                        # the engine's int4 storage: two codes per byte
                k = n.attrs.get("in_features") or n.attrs.get("input_size")
                assert n.attrs["weight_bits"] == 4 and w.dtype == np.uint8
                assert w.shape[-1] == -(-k // 2)
                assert s.shape[-1] == (1 if group is None else -(-k // group))


def test_recurrent_engine_equals_eval_forward_on_every_isa(tmp_path):
    from isa_children import first_output_bytes_per_isa
    torch.manual_seed(2)
    x = torch.randn(7, 2, 40)
    q = _trained(LM(nn.LSTM, inp=40, hidden=48, out=40, num_layers=2, bidirectional=True), x,
                 qat.QATConfig(mode="dynamic", weight_bits=4, group_size=32))
    with torch.no_grad():
        ref = q(x).numpy()
    for isa, got in first_output_bytes_per_isa(qat.convert(q), x.numpy(), tmp_path).items():
        assert got == ref.tobytes(), isa


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


class Streaming(nn.Module):
    """A language model that carries its state between chunks."""

    def __init__(self, kind, **kw):
        super().__init__()
        self.rnn = kind(12, 16, **kw)
        self.fc = nn.Linear(16 * (2 if kw.get("bidirectional") else 1), 12)

    def forward(self, x, h0, c0=None):
        if isinstance(self.rnn, nn.LSTM):
            y, (h, c) = self.rnn(x, (h0, c0))
            return self.fc(y), h, c
        y, h = self.rnn(x, h0)
        return self.fc(y), h


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_initial_states_stream_chunks_exactly(kind):
    """State in, state out: two chunks with the state carried give the final state of one run
    of the whole sequence, bit for bit (the recurrent layer's quantization never spans steps;
    the Linear head's does span its call, so the logits are compared call by call), and the
    engine equals the QAT model on every call."""
    torch.manual_seed(4)
    layers = 2
    shape = (layers, 3, 16)
    m = Streaming(kind, num_layers=layers)
    states = [torch.zeros(shape)] * (2 if kind is nn.LSTM else 1)
    x = torch.randn(10, 3, 12)
    q = qat.prepare(m, (x, *states), qat.QATConfig(mode="dynamic", weight_bits=4))
    q.train()
    opt = torch.optim.SGD(q.parameters(), 0.05)
    for _ in range(3):
        out = q(torch.randn(10, 3, 12), *[torch.randn(shape) for _ in states])
        loss = out[0].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    q.eval()
    s = qengine.Session(qat.convert(q))
    names = q.input_names

    def engine(x, st):
        res = s.run(dict(zip(names, [x.numpy(), *[t.numpy() for t in st]])))
        return [torch.from_numpy(res[n]) for n in q.output_names]

    with torch.no_grad():
        whole = q(x, *states)
        first = q(x[:4], *states)
        second = q(x[4:], *first[1:])
    e_whole = engine(x, states)
    e_first = engine(x[:4], states)
    e_second = engine(x[4:], e_first[1:])
    for a, b in zip(second[1:], whole[1:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for ours, theirs in ((e_whole, whole), (e_first, first), (e_second, second)):
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bits, group", [(8, None), (4, None), (4, 32)])
def test_export_runs_in_onnxruntime_and_imports_back(kind, bits, group, tmp_path):
    """ONNX has no int8 LSTM/GRU: they export with (INT4 when 4-bit, blocked when group-wise)
    DequantizeLinear weights and run in float there; qengine reads its export back."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    x = torch.randn(9, 3, 40)
    q = _trained(LM(kind, inp=40, hidden=48, out=40, num_layers=2, bidirectional=True), x,
                 qat.QATConfig(mode="dynamic", weight_bits=bits, group_size=group))
    m = qat.export_onnx(q, tmp_path / "m.onnx")
    int4 = sum(i.data_type == onnx.TensorProto.INT4 for i in m.graph.initializer)
    assert (int4 > 0) == (bits == 4) and (m.opset_import[0].version >= 21) == (bits == 4)
    with torch.no_grad():
        ref = q(x).numpy()
    back = qengine.Session(qengine.from_onnx(str(tmp_path / "m.onnx"))).run({"x": x.numpy()})
    # the export's LSTM runs float activations: within the dynamic quantization error
    assert np.abs(back[q.output_names[0]] - ref).max() < 0.05 * np.abs(ref).max()
    if bits == 4:       # (8-bit codes saturate ORT's u8s8 MatMulInteger on AVX2: docs/qat.md)
        sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"x": x.numpy()})[0]
        assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_converted_graph_takes_other_lengths_and_batches_than_the_example():
    """Only ranks come from the example input: a time-major LSTM's batch (dim 1) and length
    (dim 0) are free in the converted graph."""
    torch.manual_seed(0)
    q = _trained(LM(nn.LSTM), torch.randn(10, 2, 12), qat.QATConfig(mode="dynamic"))
    s = qengine.Session(qat.convert(q))
    for shape in [(33, 5, 12), (1, 1, 12)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = q(x).numpy()
        np.testing.assert_array_equal(s.run({"x": x.numpy()})[q.output_names[0]], ref)
