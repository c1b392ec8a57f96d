"""qengine imports the quantized files other tools write (tests/qdq_producers.py) and lowers them
fully: ONNX Runtime QDQ (U8S8, S8S8) and QOperator, TensorRT-style symmetric QDQ, NNCF's QDQ
(BatchNormalization left unfolded, MaxPool outputs unquantized, a float last layer) and PyTorch's
QAT export (Conv → Div → Add → BatchNormalization, Q → Clip(0, 127) → DQ observers).

Oracle: the same file's QDQ graph run with ONNX's float semantics (qengine's QuantizeLinear /
DequantizeLinear ops, themselves checked against onnx.reference in tests/test_qdq_lower.py).
Integer accumulation is exact where the float graph rounds, and the canonical rewrites fold
BatchNormalization into scales, so single elements may land one output step apart and such
flips travel through later layers: the bound is 2 output steps per element and 10% of elements
off by more than half a step. Accuracy is also compared with ONNX Runtime running the file."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import qdq_producers as P  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import qengine as qe  # noqa: E402
from test_qdq_producers import SHAPE, TinyCNN  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    module = TinyCNN().eval()
    with torch.no_grad():
        bn = module.stem[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("imp") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(SHAPE),), str(path), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False,
                          do_constant_folding=False)        # BN stays for NNCF to leave
    rng = np.random.default_rng(0)
    calib = {"input": rng.normal(size=(16,) + SHAPE[1:]).astype(np.float32)}
    x = rng.normal(size=(6,) + SHAPE[1:]).astype(np.float32)
    return module, path, calib, x


CASES = {
    "ort_qdq_u8s8": (P.ort_qdq, {"activation": "uint8"}),
    "ort_qdq_s8s8": (P.ort_qdq, {"activation": "int8"}),
    "ort_qdq_per_tensor": (P.ort_qdq, {"per_channel": False}),
    "ort_qoperator": (P.ort_qoperator, {}),
    "tensorrt_style": (P.tensorrt_style_qdq, {}),
    "nncf": (P.nncf_qdq, {}),
    "torch_fx_qat": (P.torch_qdq, {"method": "fx_qat"}),
    "torch_pt2e": (P.torch_qdq, {"method": "pt2e"}),     # needs torchao (optional): skips
}


def _batch1(sess_run, x):
    return np.concatenate([sess_run(x[i:i + 1]) for i in range(len(x))])


@pytest.mark.parametrize("case", sorted(CASES))
def test_files_of_other_tools_lower_fully(model, tmp_path, case):
    fn, kw = CASES[case]
    src = model[0] if fn is P.torch_qdq else model[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = fn(src, tmp_path / "q.onnx", model[2], **kw)
    except P.ProducerUnavailable as e:
        pytest.skip(e.reason)
    x = model[3]
    g_qdq = qe.from_onnx(str(path), lower=False)
    g, report = qe.qdq.lower(qe.qdq.canonicalize(g_qdq), report=True)
    assert report == [], report
    ops = {n.op_type for n in g.nodes}
    assert not ops & {"Conv", "Gemm", "MatMul", "BatchNormalization", "QuantizeLinear",
                      "DequantizeLinear"}, ops
    np.testing.assert_array_equal(                      # from_onnx does the same by itself
        _batch1(lambda v: qe.Session(qe.from_onnx(str(path))).run({"input": v})["output"], x),
        _batch1(lambda v: qe.Session(g).run({"input": v})["output"], x))
    y = _batch1(lambda v: qe.Session(g).run({"input": v})["output"], x)
    want = _batch1(lambda v: qe.Session(g_qdq).run({"input": v})["output"], x)
    m = onnx.load(str(path))
    steps = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and
             n.output[0] == "output"]
    if steps:                                            # a quantized output: in steps
        step = float(onnx.numpy_helper.to_array(next(
            t for t in m.graph.initializer if t.name == steps[0].input[1])).max())
    else:                                                # a float output: relative to range
        step = 0.02 * float(np.abs(want).max())
    d = np.abs(y - want) / step
    assert d.max() <= 2.001 and (d > 0.5).mean() <= 0.1, (d.max(), (d > 0.5).mean())
    # as accurate as ONNX Runtime on the same file (ORT's AVX2 u8×s8 kernels saturate pairs of
    # products, so on such CPUs it is the less accurate one)
    yf = _batch1(lambda v: ort.InferenceSession(str(model[1])).run(None, {"input": v})[0], x)
    yo = _batch1(lambda v: ort.InferenceSession(str(path)).run(None, {"input": v})[0], x)
    sq = lambda a: 10 * np.log10((yf ** 2).sum() / ((a - yf) ** 2).sum())  # noqa: E731
    assert sq(y) >= sq(yo) - 0.5, (sq(y), sq(yo))
