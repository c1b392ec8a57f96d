"""qengine quantize/dequantize against onnx.reference QuantizeLinear / DequantizeLinear
(an independent implementation of the same formula), per tensor and per channel."""
import numpy as np
import pytest

import qengine as qe

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

TP = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8, np.int16: TensorProto.INT16}


def _model(op, in_type, out_type, shape, axis):
    node = helper.make_node(op, ["x", "s", "z"], ["y"], axis=axis)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", in_type, shape),
                      helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
                      helper.make_tensor_value_info("z", out_type if op == "QuantizeLinear"
                                                    else in_type, None)],
        [helper.make_tensor_value_info("y", out_type, shape)])
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


@pytest.mark.parametrize("isa", qe.available_isas())
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("shape,axis", [((6, 7), None), ((2, 3, 4, 5), 1), ((4, 5, 6), -1),
                                        ((5, 6, 7), 0)])
def test_against_onnx_reference(isa, dtype, shape, axis):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    x.reshape(-1)[:3] = [0.5, -2.5, 1e6]                      # ties and saturation
    p = qe.choose_qparams_from_data(x * 0.8, axis=axis, dtype=dtype,
                                    symmetric=dtype is np.int16, narrow_range=False)
    q = qe.quantize(x, p.scale, p.zero_point, dtype=dtype, axis=axis, isa=isa)
    z = p.zero_point.astype(dtype)
    onnx_axis = 1 if axis is None else axis
    (ref,) = _model("QuantizeLinear", TensorProto.FLOAT, TP[dtype], shape, onnx_axis).run(
        None, {"x": x, "s": p.scale, "z": z})
    np.testing.assert_array_equal(q.data, ref)
    (deq,) = _model("DequantizeLinear", TP[dtype], TensorProto.FLOAT, shape, onnx_axis).run(
        None, {"x": q.data, "s": p.scale, "z": z})
    np.testing.assert_array_equal(q.dequantize(isa=isa), deq)
