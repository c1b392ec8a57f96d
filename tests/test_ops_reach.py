"""Issue 15's FP32 ops beyond onnx's node cases (tests/test_onnx_backend.py runs those): random
inputs of the shapes the model families use (attention Einsums, keyword-spotting and
segmentation normalizations), ties and extremes, against onnx.reference; and the errors."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import qengine  # noqa: E402

rng = np.random.default_rng(15)
F = TensorProto.FLOAT


def _model(node, inputs, n_out=1, inits=(), opset=18):
    """One node; its outputs' element types from onnx's own shape inference."""
    g = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                    v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, F, None) for o in node.output[:n_out]],
        [numpy_helper.from_array(v, k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    g.ClearField("output")
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    for o in node.output[:n_out]:
        t = inferred[o].type.tensor_type.elem_type if o in inferred else F
        g.output.append(helper.make_tensor_value_info(o, t, None))
    return m


def _check(node, inputs, inits=(), opset=18, rtol=1e-5, atol=1e-6, n_out=1):
    m = _model(node, inputs, n_out, inits, opset)
    want = ReferenceEvaluator(m).run(None, inputs)
    got = qengine.Session(qengine.from_onnx(m)).run(inputs)
    for o, w in zip(node.output[:n_out], want):
        assert got[o].dtype == w.dtype and got[o].shape == w.shape, (got[o].dtype, w.dtype)
        np.testing.assert_allclose(got[o], w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("eq,shapes", [
    ("bhqd,bhkd->bhqk", [(2, 4, 7, 16), (2, 4, 9, 16)]),       # attention scores
    ("bhqk,bhkd->bhqd", [(2, 4, 7, 9), (2, 4, 9, 16)]),        # scores times values
    ("bld,hd->blh", [(3, 5, 8), (6, 8)]),                       # a projection
    ("...ij,...jk", [(2, 3, 4, 5), (2, 3, 5, 6)]),              # implicit output, ellipsis
    ("ii->i", [(5, 5)]), ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)])])
def test_einsum_patterns(eq, shapes):
    xs = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    _check(helper.make_node("Einsum", list(xs), ["y"], equation=eq), xs, rtol=1e-4, atol=1e-5)


def test_einsum_equation_must_fit():
    x = {"a": np.ones((2, 3), np.float32), "b": np.ones((4, 5), np.float32)}
    with pytest.raises(qengine.QEngineError, match="2 operands, the node 1"):
        qengine.from_onnx(_model(helper.make_node("Einsum", ["a"], ["y"], equation="ij,jk"),
                                 {"a": x["a"]}))
    s = qengine.Session(qengine.from_onnx(_model(
        helper.make_node("Einsum", ["a", "b"], ["y"], equation="ij,jk->ik"), x)))
    with pytest.raises(qengine.QEngineError, match="does not fit the inputs"):
        s.run(x)


@pytest.mark.parametrize("largest,k", [(1, 3), (0, 4), (1, 0)])
def test_topk_ties_keep_the_lower_index(largest, k):
    x = rng.integers(0, 4, (3, 10)).astype(np.float32)      # many ties
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    _check(node, {"x": x}, [("k", np.array([k], np.int64))], n_out=2)


def test_topk_k_attribute_of_opset_9_and_bad_k():
    x = rng.standard_normal((4, 6)).astype(np.float32)
    _check(helper.make_node("TopK", ["x"], ["v", "i"], k=2), {"x": x}, opset=9, n_out=2)
    m = _model(helper.make_node("TopK", ["x", "k"], ["v", "i"]), {"x": x},
               inits=[("k", np.array([7], np.int64))])
    with pytest.raises(qengine.QEngineError, match=r"K must be one value in \[0, 6\]"):
        qengine.Session(qengine.from_onnx(m)).run({"x": x})


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_over_time(exclusive, reverse):
    x = rng.standard_normal((2, 50, 3)).astype(np.float32)
    node = helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=exclusive, reverse=reverse)
    _check(node, {"x": x}, [("a", np.array(-2, np.int64))], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args", [(0, 10, 3), (10, 4, -2), (5, 5, 1), (0.5, 2.25, 0.5)])
def test_range(args):
    dt = np.float32 if isinstance(args[-1], float) else np.int64
    inits = [(n, np.array(v, dt)) for n, v in zip(("s", "l", "d"), args)]
    node = helper.make_node("Range", ["s", "l", "d"], ["y"])
    m = _model(node, {}, inits=inits)
    want = ReferenceEvaluator(m).run(None, {})[0]
    got = qengine.Session(qengine.from_onnx(m, optimize=False)).run({})["y"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_range_refuses_a_zero_delta():
    m = _model(helper.make_node("Range", ["s", "l", "d"], ["y"]), {},
               inits=[("s", np.array(0, np.int64)), ("l", np.array(3, np.int64)),
                      ("d", np.array(0, np.int64))])
    with pytest.raises(qengine.QEngineError, match="delta is 0"):
        qengine.Session(qengine.from_onnx(m, optimize=False)).run({})


def test_instance_norm_reduce_l2_argmax_tile_on_feature_maps():
    x = (rng.standard_normal((2, 6, 9, 11)) * 3 + 1).astype(np.float32)
    inits = [("s", rng.standard_normal(6).astype(np.float32)),
             ("b", rng.standard_normal(6).astype(np.float32))]
    _check(helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3),
           {"x": x}, inits, rtol=1e-4, atol=1e-5)
    _check(helper.make_node("ReduceL2", ["x", "ax"], ["y"], keepdims=0), {"x": x},
           [("ax", np.array([2, 3], np.int64))], rtol=1e-5)
    _check(helper.make_node("ReduceLogSumExp", ["x", "ax"], ["y"]), {"x": x * 40},
           [("ax", np.array([1], np.int64))], rtol=1e-5)     # exp(120) overflows float32
    _check(helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0), {"x": x})
    _check(helper.make_node("ArgMin", ["x"], ["y"], axis=-1, select_last_index=1),
           {"x": np.round(x)})
    _check(helper.make_node("Tile", ["x", "r"], ["y"]), {"x": x},
           [("r", np.array([1, 2, 1, 3], np.int64))])


@pytest.mark.parametrize("mode,coord", [("nearest", "asymmetric"), ("nearest", "half_pixel"),
                                        ("linear", "half_pixel"), ("linear", "align_corners"),
                                        ("linear", "pytorch_half_pixel"),
                                        ("cubic", "half_pixel"), ("linear", "half_pixel_symmetric")])
@pytest.mark.parametrize("how", ["scales", "sizes", "down"])
def test_resize_feature_maps(mode, coord, how):
    """The decoder's upsampling (x2 by scales, to a size) and a downscale, on [N, C, H, W]."""
    x = rng.standard_normal((2, 3, 7, 10)).astype(np.float32)
    inits = [("roi", np.zeros(0, np.float32))]
    if how == "scales":
        inits.append(("scales", np.array([1, 1, 2, 2], np.float32)))
    elif how == "sizes":
        inits += [("scales", np.zeros(0, np.float32)), ("sizes", np.array([2, 3, 15, 19],
                                                                           np.int64))]
    else:
        inits.append(("scales", np.array([1, 1, 0.6, 0.45], np.float32)))
    node = helper.make_node("Resize", ["x"] + [k for k, _ in inits], ["y"], mode=mode,
                            coordinate_transformation_mode=coord)
    _check(node, {"x": x}, inits, opset=19, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs,wshape", [
    ({"strides": [2, 2]}, (6, 4, 2, 2)),                             # U-Net's up-convolution
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (6, 4, 3, 3)),
    ({"strides": [2, 1], "dilations": [1, 2]}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "output_shape": [15, 21]}, (6, 4, 3, 3))])
def test_conv_transpose_decoder_shapes(attrs, wshape):
    x = rng.standard_normal((2, 6, 7, 10)).astype(np.float32)
    inits = [("w", (rng.standard_normal(wshape) * 0.3).astype(np.float32)),
             ("b", rng.standard_normal(wshape[1] * attrs.get("group", 1)).astype(np.float32))]
    _check(helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs), {"x": x}, inits,
           rtol=1e-4, atol=1e-5)


def test_conv_transpose_groups_against_torch():
    """onnx.reference has no groups for ConvTranspose: torch's conv_transpose2d is the oracle."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 6, 7, 10)).astype(np.float32)
    w = (rng.standard_normal((6, 2, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 1],
                            dilations=[1, 2], pads=[1, 0, 0, 2], group=3)
    m = _model(node, {"x": x}, inits=[("w", w), ("b", b)])
    got = qengine.Session(qengine.from_onnx(m)).run({"x": x})["y"]
    full = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=(2, 1),
        dilation=(1, 2), groups=3).numpy()
    np.testing.assert_allclose(got, full[:, :, 1:, :full.shape[3] - 2], rtol=1e-4, atol=1e-5)


def test_ops_that_make_data_refuse_absurd_sizes_clearly():
    """A malformed model asking for billions of elements gets a ShapeError naming the size,
    not a MemoryError (or a machine out of memory)."""
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    cases = [
        (helper.make_node("Tile", ["x", "r"], ["y"]), [("r", np.array([1, 1, 70000, 70000],
                                                                       np.int64))]),
        (helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[100000, 100000]),
         [("w", np.ones((2, 1, 2, 2), np.float32))]),
        (helper.make_node("Resize", ["x", "", "", "s"], ["y"]),
         [("s", np.array([1, 2, 60000, 60000], np.int64))])]
    for node, inits in cases:
        s = qengine.Session(qengine.from_onnx(_model(node, {"x": x}, inits=inits, opset=19),
                                              optimize=False))
        with pytest.raises(qengine.QEngineError, match="elements, more than"):
            s.run({"x": x})
    m = _model(helper.make_node("Range", ["a", "b", "c"], ["y"]), {},
               inits=[("a", np.array(0, np.int64)), ("b", np.array(1 << 40, np.int64)),
                      ("c", np.array(1, np.int64))])
    with pytest.raises(qengine.QEngineError, match="elements, more than"):
        qengine.Session(qengine.from_onnx(m, optimize=False)).run({})
    m = _model(helper.make_node("ConvTranspose", ["x", "w"], ["y"], pads=[5, 5, 5, 5]),
               {"x": x}, inits=[("w", np.ones((2, 1, 2, 2), np.float32))])
    with pytest.raises(qengine.QEngineError, match="crop more than"):
        qengine.Session(qengine.from_onnx(m, optimize=False)).run({"x": x})


@pytest.mark.parametrize("dims", [1, 3])
def test_conv_transpose_stride_equal_to_kernel_in_1d_and_3d(dims):
    """stride = kernel runs as one interleaving copy (no sums): 1-D and 3-D too, and with
    output_padding (the extra row/column is not covered by the tiling: the summing path)."""
    k = [2, 3, 2][:dims]
    x = rng.standard_normal((2, 4) + (5, 4, 3)[:dims]).astype(np.float32)
    inits = [("w", (rng.standard_normal((4, 3, *k)) * 0.3).astype(np.float32)),
             ("b", rng.standard_normal(3).astype(np.float32))]
    _check(helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=k), {"x": x},
           inits, rtol=1e-4, atol=1e-5)
    _check(helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=k,
                            output_padding=[1] * dims), {"x": x}, inits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", ["half_pixel", "align_corners", "asymmetric",
                                   "pytorch_half_pixel"])
@pytest.mark.parametrize("extra", [{}, {"exclude_outside": 1}, {"antialias": 1}])
def test_resize_compiled_axis_equals_the_numpy_loop_bit_for_bit(monkeypatch, mode, coord, extra):
    """qe_f32_resize.h promises the NumPy path's products and sums, in its order."""
    from qengine.ops import resize
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    for scales in ([1, 1, 2.0, 2.0], [1, 1, 0.5, 0.7], [1, 1.5, 1.7, 3.1]):
        g = qengine.Graph([qengine.ValueInfo("x", "float32", x.shape)], [qengine.ValueInfo("y")],
                          [qengine.Node("Resize", "r", ("x", "", "s"), ("y",),
                                        {"mode": mode, "coordinate_transformation_mode": coord,
                                         **extra})],
                          {"s": np.array(scales, np.float32)})
        s = qengine.Session(g)
        monkeypatch.setattr(resize, "COMPILED", True)
        got = s.run({"x": x})["y"]
        monkeypatch.setattr(resize, "COMPILED", False)
        np.testing.assert_array_equal(got, s.run({"x": x})["y"])
