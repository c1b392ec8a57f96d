"""The float64 RNN reference vs independent oracles: onnx.reference and torch nn.LSTM/nn.GRU.
The FP32 ops are checked against the reference (and onnxruntime) in test_graph_ops_rnn.py."""
import numpy as np
import pytest

from qengine.reference.rnn import (gru_ref, gru_weights_from_torch, lstm_ref,
                                   lstm_weights_from_torch)

rng = np.random.default_rng(0)


def _lstm_inputs(T=4, B=3, I=5, H=6, D=1):
    return (rng.standard_normal((T, B, I)), rng.standard_normal((D, 4 * H, I)) * 0.5,
            rng.standard_normal((D, 4 * H, H)) * 0.5, rng.standard_normal((D, 8 * H)) * 0.5)


def _onnx_ref_run(op_type, inputs, n_out, **attrs):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, **attrs)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info(n, TensorProto.DOUBLE if v.dtype.kind == "f"
                                                         else TensorProto.INT32, None)
                           for n, v in zip(names, inputs) if v is not None],
                          [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in outs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    feeds = {n: v for n, v in zip(names, inputs) if v is not None}
    return ReferenceEvaluator(m).run(None, feeds)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_ref_vs_onnx_reference(direction):
    D = 2 if direction == "bidirectional" else 1
    X, W, R, B = _lstm_inputs(D=D)
    h0, c0 = rng.standard_normal((D, 3, 6)), rng.standard_normal((D, 3, 6))
    P = rng.standard_normal((D, 18)) * 0.3
    want = _onnx_ref_run("LSTM", [X, W, R, B, None, h0, c0, P], 3, hidden_size=6,
                         direction=direction)
    got = lstm_ref(X, W, R, B, None, h0, c0, P, direction=direction)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_ref_vs_onnx_reference(lbr, direction):
    D = 2 if direction == "bidirectional" else 1
    X = rng.standard_normal((4, 2, 5))
    W, R = rng.standard_normal((D, 18, 5)) * 0.5, rng.standard_normal((D, 18, 6)) * 0.5
    B, h0 = rng.standard_normal((D, 36)) * 0.5, rng.standard_normal((D, 2, 6))
    want = _onnx_ref_run("GRU", [X, W, R, B, None, h0], 2, hidden_size=6, direction=direction,
                         linear_before_reset=lbr)
    got = gru_ref(X, W, R, B, None, h0, direction=direction, linear_before_reset=lbr)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_layout1_is_a_transpose_of_layout0():
    X, W, R, B = _lstm_inputs(D=2)
    Y0, h0, c0 = lstm_ref(X, W, R, B, direction="bidirectional")
    Y1, h1, c1 = lstm_ref(np.swapaxes(X, 0, 1), W, R, B, direction="bidirectional", layout=1)
    np.testing.assert_array_equal(Y1, np.transpose(Y0, (2, 0, 1, 3)))
    np.testing.assert_array_equal(h1, np.swapaxes(h0, 0, 1))


def test_sequence_lens_match_truncated_sequences():
    X, W, R, B = _lstm_inputs(T=5, B=2, D=2)
    lens = np.array([5, 3])
    Y, Yh, Yc = lstm_ref(X, W, R, B, lens, direction="bidirectional")
    Ys, Yhs, _ = lstm_ref(X[:3, 1:], W, R, B, direction="bidirectional")
    np.testing.assert_allclose(Y[:3, :, 1:], Ys, rtol=1e-12)
    np.testing.assert_array_equal(Y[3:, :, 1], 0.0)
    np.testing.assert_allclose(Yh[:, 1:], Yhs, rtol=1e-12)


def _torch_states(mod, sd_prefix, layer, suffix):
    sd = {k: v.detach().double().numpy() for k, v in mod.state_dict().items()}
    return [sd.get(f"{n}_l{layer}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ref_vs_torch_two_layer_bidirectional(cell):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    I, H, T, Bt = 5, 7, 6, 3
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H, num_layers=2,
                                                            bidirectional=True).double()
    x = torch.randn(T, Bt, I, dtype=torch.float64)
    with torch.no_grad():
        want_y, want_state = mod(x)
    conv = lstm_weights_from_torch if cell == "lstm" else gru_weights_from_torch
    inp = x.numpy()
    finals = []
    for layer in range(2):
        parts = [conv(*_torch_states(mod, "", layer, sfx)) for sfx in ("", "_reverse")]
        W, R, B = (np.stack([p[k] for p in parts]) for k in range(3))
        if cell == "lstm":
            Y, Yh, Yc = lstm_ref(inp, W, R, B, direction="bidirectional")
            finals.append((Yh, Yc))
        else:
            Y, Yh = gru_ref(inp, W, R, B, direction="bidirectional", linear_before_reset=1)
            finals.append((Yh,))
        inp = np.transpose(Y, (0, 2, 1, 3)).reshape(T, Bt, 2 * H)
    np.testing.assert_allclose(inp, want_y.numpy(), rtol=1e-10, atol=1e-12)
    h_n = np.concatenate([f[0] for f in finals])
    np.testing.assert_allclose(h_n, (want_state[0] if cell == "lstm" else want_state).numpy(),
                               rtol=1e-10, atol=1e-12)
