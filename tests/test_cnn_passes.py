"""CNN graph passes preserve outputs: each rewritten graph against onnxruntime on the ONNX
model it came from (and the unoptimized qengine execution), plus the cases a pass must refuse."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qengine import Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.graph import (fold_batch_norm, fuse_activations, infer_shapes, optimize,  # noqa: E402
                           remove_identities)

rng = np.random.default_rng(21)
F = TensorProto.FLOAT


def _r(*shape, lo=None):
    if lo is not None:
        return rng.uniform(lo, lo + 1, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _model(nodes, x_shape, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, x_shape)],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _bn(name, c, inp, out):
    inits = {f"{name}_s": _r(c, lo=0.5), f"{name}_b": _r(c), f"{name}_m": _r(c),
             f"{name}_v": _r(c, lo=0.5)}
    node = helper.make_node("BatchNormalization", [inp, *inits], [out], epsilon=1e-3)
    return node, inits


def _check_pass(m, x, pass_fn):
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})
    raw = from_onnx(m, optimize=False)
    new = pass_fn(raw)
    new.verify()
    for g in (raw, new):
        got = Session(g).run({"x": x})
        for w, name in zip(want, g.output_names):
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)
    return new


def _types(g):
    return [n.op_type for n in g.nodes]


def test_fold_bn_into_conv_with_and_without_bias():
    x = _r(2, 3, 8, 8)
    bn1, i1 = _bn("bn1", 4, "c1", "b1")
    bn2, i2 = _bn("bn2", 6, "c2", "b2")
    nodes = [helper.make_node("Conv", ["x", "w1", "cb1"], ["c1"], pads=[1, 1, 1, 1]), bn1,
             helper.make_node("Conv", ["b1", "w2"], ["c2"], group=2, strides=[2, 2]), bn2]
    inits = {"w1": _r(4, 3, 3, 3), "cb1": _r(4), "w2": _r(6, 2, 1, 1), **i1, **i2}
    g = _check_pass(_model(nodes, [2, 3, 8, 8], ["b2"], inits), x, fold_batch_norm)
    assert _types(g) == ["Conv", "Conv"]
    assert g.output_names == ["b2"] and g.nodes[-1].outputs == ("b2",)


def test_fold_conv_then_per_channel_mul_add_caffe2_scale():
    x = _r(1, 3, 6, 6)
    bn, i = _bn("bn", 4, "c", "b")
    nodes = [helper.make_node("Conv", ["x", "w", "cb"], ["c"]), bn,
             helper.make_node("Mul", ["b", "s"], ["m"]),
             helper.make_node("Add", ["t", "m"], ["a"]),   # constant on the left
             helper.make_node("Relu", ["a"], ["y"])]
    inits = {"w": _r(4, 3, 3, 3), "cb": _r(4), "s": _r(4, 1, 1), "t": _r(1, 4, 1, 1), **i}
    g = _check_pass(_model(nodes, [1, 3, 6, 6], ["y"], inits), x,
                    lambda g: fuse_activations(fold_batch_norm(g)))
    assert _types(g) == ["Conv"] and g.nodes[0].attrs["fused_activation"] == "Relu"


def test_fold_refuses_shared_or_non_channel_cases():
    x = _r(1, 3, 5, 5)
    bn, i = _bn("bn", 4, "c", "b")
    # conv output also read by another node: folding would change what that node sees
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), bn,
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Mul", ["c", "full"], ["m"])]  # non per-channel constant
    inits = {"w": _r(4, 3, 3, 3), "full": _r(4, 3, 3), **i}
    g = _check_pass(_model(nodes, [1, 3, 5, 5], ["b", "s", "m"], inits), x, fold_batch_norm)
    assert "BatchNormalization" in _types(g) and "Mul" in _types(g)
    # conv output is itself a graph output
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), bn]
    g = _check_pass(_model(nodes, [1, 3, 5, 5], ["c", "b"], {"w": _r(4, 3, 3, 3), **i}), x,
                    fold_batch_norm)
    assert "BatchNormalization" in _types(g)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c", ["none", "vector", "scalar", "row"])
def test_fold_bn_into_gemm(trans_b, c):
    x = _r(5, 6)
    w = _r(4, 6) if trans_b else _r(6, 4)
    bn, i = _bn("bn", 4, "g", "y")
    cin = {"none": None, "vector": _r(4), "scalar": _r(1), "row": _r(1, 4)}[c]
    ins = ["x", "w"] + ([] if cin is None else ["c"])
    nodes = [helper.make_node("Gemm", ins, ["g"], transB=trans_b, alpha=0.7, beta=1.3), bn]
    inits = {"w": w, **i, **({} if cin is None else {"c": cin})}
    g = _check_pass(_model(nodes, [5, 6], ["y"], inits), x, fold_batch_norm)
    assert _types(g) == ["Gemm"]


def test_fold_bn_into_gemm_refuses_full_matrix_c():
    x = _r(5, 6)
    bn, i = _bn("bn", 4, "g", "y")
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["g"]), bn]
    g = _check_pass(_model(nodes, [5, 6], ["y"], {"w": _r(6, 4), "c": _r(5, 4), **i}), x,
                    fold_batch_norm)
    assert _types(g) == ["Gemm", "BatchNormalization"]


@pytest.mark.parametrize("act,kind,params", [
    ("Relu", "Relu", []), ("Clip06", "Clip", [0.0, 6.0]), ("ClipMin0", "Relu", []),
    ("ClipNeg", "Clip", [-1.0, 0.5]), ("LeakyRelu", "LeakyRelu", [0.2]),
    ("ClipOpen", None, None), ("Sigmoid", None, None)])
@pytest.mark.parametrize("producer", ["Conv", "Gemm"])
def test_fuse_activations(act, kind, params, producer):
    if producer == "Conv":
        x, shape = _r(1, 2, 6, 6) * 3, [1, 2, 6, 6]
        prod = helper.make_node("Conv", ["x", "w", "b"], ["p"], pads=[1, 1, 1, 1])
        inits = {"w": _r(3, 2, 3, 3), "b": _r(3)}
    else:
        x, shape = _r(4, 5) * 3, [4, 5]
        prod = helper.make_node("Gemm", ["x", "w", "b"], ["p"], transB=1)
        inits = {"w": _r(3, 5), "b": _r(3)}
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    act_node = {
        "Relu": helper.make_node("Relu", ["p"], ["y"]),
        "Clip06": helper.make_node("Clip", ["p", "lo", "hi"], ["y"]),
        "ClipMin0": helper.make_node("Clip", ["p", "zero"], ["y"]),
        "ClipNeg": helper.make_node("Clip", ["p", "m1", "half"], ["y"]),
        "LeakyRelu": helper.make_node("LeakyRelu", ["p"], ["y"], alpha=0.2),
        "ClipOpen": helper.make_node("Clip", ["p", "", "hi"], ["y"]),  # no lower bound
        "Sigmoid": helper.make_node("Sigmoid", ["p"], ["y"]),
    }[act]
    inits.update(lo=f32(0), hi=f32(6), zero=f32(0), m1=f32(-1), half=f32(0.5))
    g = _check_pass(_model([prod, act_node], shape, ["y"], inits), x, fuse_activations)
    if kind is None:
        assert len(g.nodes) == 2
    else:
        assert len(g.nodes) == 1
        assert g.nodes[0].attrs["fused_activation"] == kind
        assert g.nodes[0].attrs["fused_activation_params"] == pytest.approx(params)


def test_fuse_refuses_when_producer_output_is_read_elsewhere():
    x = _r(1, 2, 5, 5)
    nodes = [helper.make_node("Conv", ["x", "w"], ["p"]), helper.make_node("Relu", ["p"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"])]  # Relu of a fused Relu: not a Conv
    g = _check_pass(_model(nodes, [1, 2, 5, 5], ["p", "z"], {"w": _r(3, 2, 3, 3)}), x,
                    fuse_activations)
    assert _types(g) == ["Conv", "Relu", "Relu"]


def test_remove_identities_and_dropout():
    x = _r(2, 3)
    nodes = [helper.make_node("Identity", ["x"], ["i1"]),
             helper.make_node("Relu", ["i1"], ["r"]),
             helper.make_node("Dropout", ["r"], ["d"]),
             helper.make_node("Identity", ["d"], ["y"]),     # graph output: producer renamed
             helper.make_node("Identity", ["x"], ["xo"])]    # output aliasing an input: kept
    g = _check_pass(_model(nodes, [2, 3], ["y", "xo"], {}, opset=11), x, remove_identities)
    assert _types(g) == ["Relu", "Identity"]


def test_optimize_pipeline_and_shape_inference():
    x = _r(2, 3, 17, 16)
    bn, i = _bn("bn", 8, "c", "b")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
             bn, helper.make_node("Clip", ["b", "lo", "hi"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                              ceil_mode=1),
             helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], pads=[1, 0, 0, 1]),
             helper.make_node("LRN", ["a"], ["l"], size=3),
             helper.make_node("GlobalAveragePool", ["l"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w": _r(8, 3, 3, 3), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
             "fw": _r(4, 8), "fb": _r(4), **i}
    m = _model(nodes, [2, 3, 17, 16], ["y"], inits)
    g = _check_pass(m, x, lambda g: optimize(g, fuse_activations=True))
    assert _types(g) == ["Conv", "MaxPool", "AveragePool", "LRN", "GlobalAveragePool",
                         "Flatten", "Gemm"]
    # every intermediate's static shape matches onnx's own shape inference
    ref = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    ref_shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
                  for v in ref.graph.value_info}
    inferred = infer_shapes(from_onnx(m, optimize=False)).value_info
    for name in ("c", "b", "r", "p", "a", "l", "gp", "f", "y"):
        want = ref_shapes.get(name) or (2, 4)
        assert inferred[name].shape == want, name
