"""4-bit weights in static PTQ: StaticQuantConfig(weight_bits=4) on the digits demo CNN.

The codes are choose_qparams's 4-bit ones (checked against choose_qparams itself), the int8
kernels run them unchanged, the QDQ export stores them as ONNX INT4 and ONNX Runtime runs it.
`digits` is tests/conftest.py's fixture."""
import numpy as np
import pytest

import qengine
from qengine.errors import ConfigError
from qengine.quant import choose_qparams


def _weights(q):
    return {n.name: q.initializers[n.inputs[1]] for n in q.nodes
            if n.op_type in ("QConv", "QGemm")}


def test_w4_codes_are_choose_qparams_4bit_codes(digits):
    g, xc, _, _ = digits
    from qengine.workflows.ptq import build_qdq, calibrate, prepare_float_graph
    cfg = qengine.StaticQuantConfig(weight_bits=4)
    fg = prepare_float_graph(g)
    graph = build_qdq(fg, calibrate(fg, {"image": xc}, cfg), cfg)
    convs = [n for n in fg.nodes if n.op_type == "Conv"]
    assert convs
    for n in convs:
        w = fg.initializers[n.inputs[1]].reshape(fg.initializers[n.inputs[1]].shape[0], -1)
        p = choose_qparams(w.min(1), w.max(1), bits=4, symmetric=True, axis=0)
        dq = next(m for m in graph.nodes if m.op_type == "DequantizeLinear" and
                  m.outputs[0] == next(c for c in graph.nodes if c.name == n.name).inputs[1])
        np.testing.assert_array_equal(graph.initializers[dq.inputs[0]].reshape(w.shape),
                                      p.quantize(w).data)
        np.testing.assert_array_equal(graph.initializers[dq.inputs[1]], p.scale)


def test_w4_static_runs_integer_only_and_loses_more_than_w8(digits):
    g, xc, x, y = digits
    fp = qengine.Session(g).run({"image": x})["logits"]
    out = {}
    for bits in (8, 4):
        q = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(weight_bits=bits))
        ws = _weights(q)
        assert ws and all(w.dtype == np.int8 for w in ws.values())
        assert max(np.abs(w).max() for w in ws.values()) == 2 ** (bits - 1) - 1
        out[bits] = qengine.Session(q).run({"image": x})["logits"]
    err = {b: np.sqrt(np.mean((o - fp) ** 2)) for b, o in out.items()}
    assert err[4] > 2 * err[8]
    acc = {b: (o.argmax(1) == y).mean() for b, o in out.items()}
    assert acc[4] > 0.8, acc                       # coarser, still a working classifier


def test_w4_export_is_int4_and_onnxruntime_agrees(digits, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g, xc, x, _ = digits
    q = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(weight_bits=4))
    m = qengine.export_onnx(q, tmp_path / "w4.onnx")
    assert m.opset_import[0].version >= 21
    assert sum(i.data_type == onnx.TensorProto.INT4 for i in m.graph.initializer) >= 2
    ours = qengine.Session(q).run({"image": x})["logits"]
    back = qengine.Session(qengine.from_onnx(str(tmp_path / "w4.onnx"))).run({"image": x})
    np.testing.assert_array_equal(back["logits"], ours)
    s = ort.InferenceSession(str(tmp_path / "w4.onnx"), providers=["CPUExecutionProvider"])
    theirs = s.run(None, {"image": x})[0]
    step = np.abs(np.diff(np.unique(ours))).min()        # the output quantization step
    assert np.abs(theirs - ours).max() <= 4 * step + 1e-6


def test_weight_bits_is_validated():
    with pytest.raises(ConfigError, match="weight_bits must be 8 or 4"):
        qengine.StaticQuantConfig(weight_bits=5)


def test_w4_engine_file_stores_two_weights_per_byte_and_loads_the_same(digits, tmp_path):
    import json

    from qengine.engine_file import read_safetensors
    g, xc, x, _ = digits
    q4 = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(weight_bits=4))
    q8 = qengine.quantize_static(g, {"image": xc})
    qengine.save(q4, tmp_path / "w4.qe")
    qengine.save(q8, tmp_path / "w8.qe")
    wbytes = sum(w.nbytes for w in _weights(q4).values())
    size4, size8 = (tmp_path / "w4.qe").stat().st_size, (tmp_path / "w8.qe").stat().st_size
    assert size8 - size4 > 0.45 * wbytes              # the int8 weights' bytes halved
    tensors, meta = read_safetensors(tmp_path / "w4.qe")[:2]
    assert meta["format_version"] == "2" and set(json.loads(meta["int4_tensors"])) >= \
        {n.inputs[1] for n in q4.nodes if n.op_type in ("QConv", "QGemm")}
    back = qengine.load(tmp_path / "w4.qe")
    for name, w in q4.initializers.items():
        np.testing.assert_array_equal(back.graph.initializers[name], w)
    np.testing.assert_array_equal(back.run({"image": x})["logits"],
                                  qengine.Session(q4).run({"image": x})["logits"])
    assert read_safetensors(tmp_path / "w8.qe")[1]["format_version"] == "1"


def test_malformed_int4_tensor_entries_are_refused(digits, tmp_path):
    import json

    from qengine.engine_file import read_safetensors, write_safetensors
    from qengine.errors import ModelError
    g, xc, _, _ = digits
    q4 = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(weight_bits=4))
    qengine.save(q4, tmp_path / "w4.qe")
    tensors, meta = read_safetensors(tmp_path / "w4.qe")[:2]
    spec = json.loads(meta["int4_tensors"])
    name = next(iter(spec))
    bad = [dict(meta, int4_tensors=json.dumps({**spec, name: [3, 3]})),       # wrong shape
           dict(meta, int4_tensors=json.dumps({**spec, "nope": [4]})),        # no such tensor
           dict(meta, int4_tensors=json.dumps([1, 2])),                       # not a map
           dict(meta, format_version="1")]                                    # v1 cannot
    for i, m in enumerate(bad):
        write_safetensors(tmp_path / f"bad{i}.qe", tensors, m)
        with pytest.raises(ModelError):
            qengine.load(tmp_path / f"bad{i}.qe", verify=False)
