"""Static int8 for the decoder-side ops of issue 15: Pad and linear Resize on the codes,
ConvTranspose as an int8 convolution. Each is checked against the float op between a
dequantize and a quantize at the same qparams (what a float island computes), against
onnx.reference on the float model (SQNR), and exported to ONNX Runtime."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import qengine as qe  # noqa: E402
from qengine.reference.conv import quantize_u8_ref  # noqa: E402

RNG = np.random.default_rng(5)
F = TensorProto.FLOAT


def _model(nodes, x_shape, inits, opset=19):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, x_shape)],
                          [helper.make_tensor_value_info("y", F, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _conv(name, x, y, cin, cout, inits, k=3):
    inits[f"{name}_w"] = (RNG.standard_normal((cout, cin, k, k)) / (cin * k)).astype(np.float32)
    inits[f"{name}_b"] = (RNG.standard_normal(cout) * 0.1).astype(np.float32)
    return helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], name=name,
                            pads=[k // 2] * 4)


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def _ops(g):
    return [n.op_type for n in g.nodes]


def _quantize(m, shape, config=None, n=8):
    calib = [{"x": RNG.standard_normal(shape).astype(np.float32)} for _ in range(n)]
    x = {"x": RNG.standard_normal(shape).astype(np.float32)}
    return qe.quantize_static(qe.from_onnx(m), calib, config), x, \
        ReferenceEvaluator(m).run(None, x)[0]


def _export_runs(st, x, tmp_path, ref, floor):
    ort = pytest.importorskip("onnxruntime")
    for fmt in ("qdq", "qoperator"):
        path = tmp_path / f"m_{fmt}.onnx"
        qe.export_onnx(st, str(path), format=fmt)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, x)[0]
        assert _sqnr(got, ref) > floor, fmt


# ---------------------------------------------------------------------------------- Pad
@pytest.mark.parametrize("mode,value", [("constant", None), ("constant", 0.0), ("reflect", None),
                                        ("edge", None)])
def test_pad_moves_codes(mode, value, tmp_path):
    inits = {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    ins = ["h", "pads"]
    if value is not None:
        inits["v"] = np.array(value, np.float32)
        ins.append("v")
    nodes = [_conv("c1", "x", "h", 3, 8, inits),
             helper.make_node("Pad", ins, ["p"], name="pad", mode=mode),
             _conv("c2", "p", "y", 8, 4, inits)]
    m = _model(nodes, [1, 3, 10, 10], inits)
    st, x, ref = _quantize(m, (1, 3, 10, 10))
    assert "Pad" in _ops(st) and _ops(st).count("QConv") == 2, _ops(st)
    pad = next(n for n in st.nodes if n.op_type == "Pad")
    # the same bytes as the float Pad between a dequantize and a quantize at those qparams
    codes = RNG.integers(0, 256, (1, 8, 10, 10), dtype=np.uint8)
    from qengine.ops import get_op_class
    op = get_op_class("Pad", "pad")(pad, st.initializers)
    got = op.run(codes, *[st.initializers.get(v) for v in pad.inputs[1:]])[0]
    qin = next(n for n in st.nodes if pad.inputs[0] in n.outputs)
    s, z = next((n.attrs["y_scale"], n.attrs["y_zero_point"]) for n in st.nodes
                if n.op_type == "QConv" and n.name == "c1")
    f = np.pad(s * (codes.astype(np.float32) - z), [(0, 0), (0, 0), (1, 2), (2, 1)],
               mode=mode, **({"constant_values": value} if mode == "constant" else {}))
    np.testing.assert_array_equal(got, quantize_u8_ref(f, s, z))
    assert qin is not None
    calib = [{"x": RNG.standard_normal((1, 3, 10, 10)).astype(np.float32)} for _ in range(8)]
    st2 = qe.quantize_static(qe.from_onnx(m), calib)
    island = qe.quantize_static(qe.from_onnx(m), calib, qe.StaticQuantConfig(keep_float={"pad"}))
    codes_db, island_db = (_sqnr(qe.Session(g).run(x)["y"], ref) for g in (st2, island))
    assert codes_db > 20 and codes_db > island_db - 0.5, (codes_db, island_db)
    _export_runs(st, x, tmp_path, ref, 20)


# ------------------------------------------------------------------------------- Resize
@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "asymmetric"])
def test_linear_resize_on_codes(ctm, tmp_path):
    inits = {"scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [_conv("c1", "x", "h", 3, 8, inits),
             helper.make_node("Resize", ["h", "", "scales"], ["r"], name="up", mode="linear",
                              coordinate_transformation_mode=ctm),
             _conv("c2", "r", "y", 8, 4, inits)]
    m = _model(nodes, [1, 3, 8, 8], inits)
    st, x, ref = _quantize(m, (1, 3, 8, 8))
    assert _ops(st).count("QConv") == 2, _ops(st)
    up = next(n for n in st.nodes if n.op_type == "Resize")
    assert ".u8" in up.inputs[0], up.inputs             # it reads uint8 codes
    # within one code of the float op between a dequantize and a quantize
    from qengine.ops import get_op_class
    op = get_op_class("Resize", "up")(up, st.initializers)
    codes = RNG.integers(0, 256, (1, 8, 8, 8), dtype=np.uint8)
    got = op.run(codes, None, st.initializers[up.inputs[2]])[0]
    s, z = 0.05, 117
    fop = get_op_class("Resize", "upf")(up, {})
    f = fop.run(s * (codes.astype(np.float32) - z), None, st.initializers[up.inputs[2]])[0]
    assert np.abs(got.astype(int) - quantize_u8_ref(f, s, z).astype(int)).max() <= 1
    island = qe.quantize_static(qe.from_onnx(m), [{"x": x["x"]}],
                                qe.StaticQuantConfig(keep_float={"up"}))
    assert "Resize" in _ops(island)
    codes_db = _sqnr(qe.Session(st).run(x)["y"], ref)
    assert codes_db > 25, codes_db                              # 28–40 dB measured
    _export_runs(st, x, tmp_path, ref, 20)


def test_cubic_resize_stays_float():
    inits = {"scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [_conv("c1", "x", "h", 3, 8, inits),
             helper.make_node("Resize", ["h", "", "scales"], ["r"], name="up", mode="cubic"),
             _conv("c2", "r", "y", 8, 4, inits)]
    st, _, _ = _quantize(_model(nodes, [1, 3, 8, 8], inits), (1, 3, 8, 8))
    up = next(n for n in st.nodes if n.op_type == "Resize")
    assert ".u8" not in up.inputs[0], up.inputs


def test_nonzero_pad_value_stays_float():
    """A fill other than 0 may lie outside the input's int8 range (the output keeps the
    input's qparams): that Pad stays a float island, and the model stays accurate."""
    inits = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "v": np.array(50.0, np.float32)}
    nodes = [_conv("c1", "x", "h", 3, 8, inits),
             helper.make_node("Pad", ["h", "pads", "v"], ["p"], name="pad"),
             _conv("c2", "p", "y", 8, 4, inits)]
    m = _model(nodes, [1, 3, 6, 6], inits)
    st, x, ref = _quantize(m, (1, 3, 6, 6))
    pad = next(n for n in st.nodes if n.op_type == "Pad")
    assert ".u8" not in pad.inputs[0]
    assert _sqnr(qe.Session(st).run(x)["y"], ref) > 30


# -------------------------------------------------------------------------- ConvTranspose
_CT = [dict(k=2, s=2, p=0, op=0, d=1), dict(k=3, s=2, p=1, op=1, d=1),
       dict(k=4, s=2, p=1, op=0, d=1), dict(k=3, s=1, p=1, op=0, d=1),
       dict(k=3, s=2, p=0, op=0, d=2), dict(k=3, s=3, p=0, op=2, d=1),
       dict(k=1, s=1, p=0, op=0, d=1)]


def _ct_reference(x, zx, sx, w, ws, b, sy, zy, c):
    """float64: ConvTranspose (torch) of the dequantized input and weights, the bias as the
    layer quantizes it (at s_x·s_w), then numerics.md's quantize of the result."""
    torch = pytest.importorskip("torch")
    xf = torch.tensor((x.astype(np.float64) - zx) * sx).permute(0, 3, 1, 2)
    wf = torch.tensor(w.transpose(1, 0, 2, 3).astype(np.float64) * ws[None, :, None, None])
    bq = np.rint(b / (np.float32(sx) * ws).astype(np.float64)) * (np.float32(sx) * ws)
    r = torch.nn.functional.conv_transpose2d(xf, wf, torch.tensor(bq), stride=c["s"],
                                             padding=c["p"], output_padding=c["op"],
                                             dilation=c["d"]).permute(0, 2, 3, 1).numpy()
    return np.clip(np.rint(r / sy) + zy, 0, 255)


@pytest.mark.parametrize("isa", qe.available_isas())
@pytest.mark.parametrize("c", _CT, ids=lambda c: "k{k}s{s}p{p}op{op}d{d}".format(**c))
def test_qconv_transpose_layer(isa, c):
    from qengine.quantized.conv import QConvTranspose2d
    cin, cout = 5, 7
    x = RNG.integers(0, 256, (2, 6, 5, cin), dtype=np.uint8)
    x[0, 0, 0] = 255                                             # extremes: 255 × −127
    w = RNG.integers(-127, 128, (cout, cin, c["k"], c["k"])).astype(np.int8)
    w[:, :, 0, 0] = -127
    ws = RNG.uniform(0.01, 0.02, cout).astype(np.float32)
    b = RNG.standard_normal(cout).astype(np.float32)
    kw = dict(input_scale=0.05, input_zero_point=3, output_scale=0.4, output_zero_point=100,
              weight_scale=ws, stride=c["s"], padding=c["p"], output_padding=c["op"],
              dilation=c["d"], isa=isa)
    layer = QConvTranspose2d(w, b, **kw)
    y = layer(x)
    ref = _ct_reference(x, 3, 0.05, w, ws, b, 0.4, 100, c)
    assert y.shape == ref.shape
    # exact sums; the requantize's float32 multiply may round a tie the other way
    assert np.abs(y.astype(int) - ref).max() <= 1
    assert np.mean(y != ref) < 0.01
    if layer.gemm is not None:            # the GEMM + pixel shuffle path: the same bytes
        layer.gemm = None
        np.testing.assert_array_equal(layer(x), y)


def test_qconv_transpose_bad_config():
    from qengine.quantized.conv import QConvTranspose2d
    w = np.zeros((2, 3, 3, 3), np.int8)
    kw = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0,
              weight_scale=np.ones(2, np.float32))
    with pytest.raises(qe.ConfigError, match="pads"):
        QConvTranspose2d(w, None, padding=3, **kw)
    with pytest.raises(qe.ConfigError, match="output_padding"):
        QConvTranspose2d(w, None, stride=2, output_padding=2, **kw)
    with pytest.raises(qe.errors.ShapeError, match="int8"):
        QConvTranspose2d(w.astype(np.float32), None, **kw)


def _ct_model(inits, **attrs):
    cin, cout, k = 8, 6, attrs.pop("k", 2)
    g = attrs.get("group", 1)
    inits["ct_w"] = (RNG.standard_normal((cin, cout // g, k, k)) / (cin * k)).astype(np.float32)
    inits["ct_b"] = (RNG.standard_normal(cout) * 0.1).astype(np.float32)
    nodes = [_conv("c1", "x", "h", 3, cin, inits),
             helper.make_node("ConvTranspose", ["h", "ct_w", "ct_b"], ["u"], name="up", **attrs),
             helper.make_node("Relu", ["u"], ["r"]),
             _conv("c2", "r", "y", cout, 4, inits)]
    return _model(nodes, [1, 3, 8, 8], inits)


@pytest.mark.parametrize("attrs", [dict(k=2, strides=[2, 2]),
                                   dict(k=3, strides=[2, 2], pads=[1, 1, 1, 1],
                                        output_padding=[1, 1])])
def test_static_conv_transpose(attrs, tmp_path):
    m = _ct_model({}, **attrs)
    st, x, ref = _quantize(m, (1, 3, 8, 8))
    ops = _ops(st)
    assert ops.count("QConvTranspose") == 1 and "ConvTranspose" not in ops, ops
    assert "Relu" not in ops                          # absorbed as the output clamp
    assert _sqnr(qe.Session(st).run(x)["y"], ref) > 30
    _export_runs(st, x, tmp_path, ref, 30)
    path = tmp_path / "rt.qe"                          # the engine file round trip
    qe.save(st, str(path))
    np.testing.assert_array_equal(qe.load(str(path)).run(x)["y"], qe.Session(st).run(x)["y"])


@pytest.mark.parametrize("attrs", [dict(k=2, strides=[2, 2], group=2),
                                   dict(k=3, strides=[2, 2], auto_pad="SAME_UPPER")])
def test_conv_transpose_without_int8_form_stays_float(attrs):
    ort = pytest.importorskip("onnxruntime")         # (onnx.reference has no grouped one)
    m = _ct_model({}, **attrs)
    calib = [{"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
    x = {"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    ref = ort.InferenceSession(m.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, x)[0]
    st = qe.quantize_static(qe.from_onnx(m), calib)
    assert "ConvTranspose" in _ops(st) and "QConvTranspose" not in _ops(st)
    assert _sqnr(qe.Session(st).run(x)["y"], ref) > 25
