"""Dynamic-int8 convolution (quantize_dynamic on CNNs): the compiled layer equals the NumPy
composition of the numerics' definitions bit for bit on every ISA, and a CNN quantized
dynamically stays close to its float output."""
import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine.quantized.dynamic_conv import DynamicConv2d
from qengine.quantized.weights import quantize_per_channel_symmetric
from qengine.reference.conv import qconv2d_acc_ref
from qengine.reference.gemm import dequant_epilogue_ref, quantize_activations_ref

CASES = [  # cin, cout, k, stride, pads, dilation, groups
    (3, 8, 3, 1, (1, 1, 1, 1), 1, 1), (6, 10, 3, 2, (0, 1, 1, 0), 1, 2),
    (8, 8, 3, 1, (1, 1, 1, 1), 2, 8), (5, 7, 1, 1, (0, 0, 0, 0), 1, 1),
    (3, 16, 7, 2, (3, 3, 3, 3), 1, 1)]


@pytest.mark.parametrize("case", CASES)
def test_bit_exact_with_numpy_definition_on_every_isa(case):
    cin, cout, k, s, p, d, g = case
    rng = np.random.default_rng(cin * 100 + cout)
    W = rng.standard_normal((cout, cin // g, k, k)).astype(np.float32)
    wq, ws = quantize_per_channel_symmetric(W.reshape(cout, -1))
    wq = wq.reshape(W.shape)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((2, cin, 13, 11)).astype(np.float32)
    x[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]                 # saturate / zero point
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q, sc, z = quantize_activations_ref(xh.reshape(-1, cin))
    acc = qconv2d_acc_ref(q.reshape(xh.shape), int(z), wq, (s, s), p, (d, d), g)
    want = dequant_epilogue_ref(acc.reshape(-1, cout).astype(np.int32), sc, ws, b)
    want = want.reshape(acc.shape).transpose(0, 3, 1, 2)
    for isa in _runtime.available_isas():
        for threads in (1, 2):
            got = DynamicConv2d(wq, ws, b, stride=s, padding=p, dilation=d, groups=g,
                                isa=isa)(x, nthreads=threads)
            np.testing.assert_array_equal(got, want, err_msg=f"{isa} {threads} threads")



@pytest.mark.parametrize("size", [(7, 8), (8, 7)])
def test_same_padding_follows_the_input_size(size):
    """padding='same_lower' resolves ONNX's SAME pads for each input (here odd/even sizes with
    stride 2 and a 4-wide kernel: total pad 2 or 3, the odd one at the beginning)."""
    rng = np.random.default_rng(4)
    wq, ws = quantize_per_channel_symmetric(rng.standard_normal((5, 36)).astype(np.float32))
    wq = wq.reshape(5, 3, 4, 3)
    x = rng.standard_normal((1, 3, *size)).astype(np.float32)
    pads = [(3 - 3 // 2, 3 // 2) if n % 2 else (1, 1) for n in size]   # k=4: 3 or 2, s=2
    pads[1] = (1, 1) if size[1] % 2 else (1, 0)                         # k=3: 2 or 1
    (pt, pb), (pl, pr) = pads
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q, sc, z = quantize_activations_ref(xh.reshape(-1, 3))
    acc = qconv2d_acc_ref(q.reshape(xh.shape), int(z), wq, (2, 2), (pt, pl, pb, pr))
    want = dequant_epilogue_ref(acc.reshape(-1, 5).astype(np.int32), sc, ws, None)
    want = want.reshape(acc.shape).transpose(0, 3, 1, 2)
    got = DynamicConv2d(wq, ws, stride=2, padding="same_lower")(x)
    assert got.shape == (1, 5, -(-size[0] // 2), -(-size[1] // 2))
    np.testing.assert_array_equal(got, want)

def test_quantize_dynamic_on_a_cnn():
    from qengine.engine_file import load_graph
    from pathlib import Path
    g = load_graph(Path(qengine.__file__).parent / "data" / "demo_cnn_digits.qe")
    q = qengine.quantize_dynamic(g)
    ops = [n.op_type for n in q.nodes]
    assert ops.count("DynamicQuantConv") == 3 and "Conv" not in ops
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    want = qengine.Session(g).run({"image": x})["logits"]
    got = qengine.Session(q).run({"image": x})["logits"]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.03


def test_bad_input_is_a_clear_error():
    wq = np.ones((4, 3, 3, 3), np.int8)
    layer = DynamicConv2d(wq, np.ones(4, np.float32))
    with pytest.raises(qengine.ShapeError, match="3 channels"):
        layer(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(qengine.ShapeError, match="too small"):
        layer(np.zeros((1, 3, 2, 2), np.float32))
