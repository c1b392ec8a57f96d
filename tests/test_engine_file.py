"""Engine file round trip, safetensors interop, and hostile/corrupted files (ModelError only).
Random and structure-aware mutations at scale: tests/test_engine_fuzz.py."""
import json
import struct

import numpy as np
import pytest

import qengine
from qengine import ModelError
from qengine.engine_file import FORMAT, FORMAT_VERSION, load_graph, read_safetensors
from qengine.graph import Graph, Node, ValueInfo
from qengine.reference.rnn import lstm_ref

rng = np.random.default_rng(7)
T, I, H, O = 3, 4, 5, 2


def _graph() -> Graph:
    inits = {
        "W": (rng.standard_normal((1, 4 * H, I)) * 0.5).astype(np.float32),
        "R": (rng.standard_normal((1, 4 * H, H)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal((1, 8 * H)) * 0.5).astype(np.float32),
        "axes": np.array([1], np.int64),
        "fc_w": rng.standard_normal((H, O)).astype(np.float32),
        "fc_b": rng.standard_normal(O).astype(np.float32),
        "flag": np.array([True, False]), "small": np.arange(3, dtype=np.int8),
    }
    nodes = [Node("LSTM", "lstm", ("x", "W", "R", "B"), ("y", "yh"), {"hidden_size": H}),
             Node("Squeeze", "sq", ("y", "axes"), ("ys",)),
             Node("MatMul", "fc", ("ys", "fc_w"), ("m",)),
             Node("Add", "bias", ("m", "fc_b"), ("logits",)),
             Node("Softmax", "sm", ("logits",), ("p",), {"axis": -1})]
    return Graph([ValueInfo("x", "float32", (T, "batch", I))],
                 [ValueInfo("p", "float32", (T, "batch", O)), ValueInfo("yh")], nodes, inits,
                 {"": 17}, "tiny")


def _expected(g, x):
    y, yh, _ = lstm_ref(x, g.initializers["W"], g.initializers["R"], g.initializers["B"])
    z = y[:, 0] @ g.initializers["fc_w"] + g.initializers["fc_b"]
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True), yh


@pytest.fixture
def saved(tmp_path):
    g = _graph()
    path = tmp_path / "m.qe"
    qengine.save(g, path)
    return g, path


def test_round_trip_runs_like_the_reference(saved):
    g, path = saved
    sess = qengine.load(path)
    assert sess.input_names == ["x"] and sess.output_names == ["p", "yh"]
    x = rng.standard_normal((T, 2, I)).astype(np.float32)
    want_p, want_h = _expected(g, x)
    got = sess.run({"x": x})
    np.testing.assert_allclose(got["p"], want_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["yh"], want_h, rtol=1e-5, atol=1e-6)
    g2 = load_graph(path)
    assert g2.to_json() == g.to_json()
    for k, v in g.initializers.items():
        assert g2.initializers[k].dtype == v.dtype
        np.testing.assert_array_equal(g2.initializers[k], v)
        assert not g2.initializers[k].flags.writeable


def test_safetensors_interop(saved, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    g, path = saved
    theirs = st.load_file(str(path))           # we write, they read
    assert sorted(theirs) == sorted(g.initializers)
    for k, v in theirs.items():
        np.testing.assert_array_equal(v, g.initializers[k])
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    other = tmp_path / "theirs.qe"             # they write, we read
    st.save_file({k: np.ascontiguousarray(v) for k, v in g.initializers.items()}, str(other),
                 metadata=meta)
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    np.testing.assert_allclose(qengine.load(other).run([x])["p"], _expected(g, x)[0], rtol=1e-5)
    tensors, meta2 = read_safetensors(other)
    assert meta2 == meta


def test_truncated_files_are_rejected(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    cuts = sorted(set(range(0, 8 + n + 16)) | set(range(8 + n, len(data), 7)))
    bad = tmp_path / "cut.qe"
    for cut in cuts:
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelError):
            qengine.load(bad)


def _write(path, header, data=b"", length=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _meta(graph_json=None, **over):
    g = graph_json if graph_json is not None else {
        "name": "g", "opset": {"": 17}, "inputs": [{"name": "x", "dtype": "float32",
                                                    "shape": [2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": None}],
        "nodes": [{"op_type": "Relu", "name": "r", "inputs": ["x"], "outputs": ["y"],
                   "attrs": {}}], "initializers": []}
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "producer": "test",
         "graph": json.dumps(g)}
    m.update(over)
    return m


def test_minimal_handwritten_file_loads(tmp_path):
    sess = qengine.load(_write(tmp_path / "ok.qe", {"__metadata__": _meta()}))
    np.testing.assert_array_equal(sess.run([np.array([-1.0, 2.0])])["y"], [0.0, 2.0])


def _graph_with(**changes):
    g = json.loads(_meta()["graph"])
    g.update(changes)
    return g


HOSTILE = {
    "empty": (b"", None, b""),
    "huge_length": ({"__metadata__": _meta()}, 2 ** 63, b""),
    "length_past_eof": ({"__metadata__": _meta()}, 10_000, b""),
    "not_json": (b"{not json", None, b""),
    "not_utf8": (b"\xff\xfe{}", None, b""),
    "json_array": (b"[1, 2]", None, b""),
    "deep_json": (b"[" * 100_000 + b"]" * 100_000, None, b""),
    "duplicate_key": (b'{"a": 1, "a": 2}', None, b""),
    "nan": (b'{"__metadata__": {}, "t": {"dtype": "F32", "shape": [NaN], "data_offsets": [0,4]}}',
            None, b"\0" * 4),
    "unknown_dtype": ({"__metadata__": _meta(), "t": {"dtype": "BF16", "shape": [1],
                                                      "data_offsets": [0, 2]}}, None, b"\0\0"),
    "negative_shape": ({"__metadata__": _meta(), "t": {"dtype": "U8", "shape": [-1],
                                                       "data_offsets": [0, 1]}}, None, b"\0"),
    "size_mismatch": ({"__metadata__": _meta(), "t": {"dtype": "F32", "shape": [3],
                                                      "data_offsets": [0, 8]}}, None, b"\0" * 8),
    "huge_shape": ({"__metadata__": _meta(), "t": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40],
                                                   "data_offsets": [0, 8]}}, None, b"\0" * 8),
    "negative_offset": ({"__metadata__": _meta(), "t": {"dtype": "U8", "shape": [1],
                                                        "data_offsets": [-1, 0]}}, None, b"\0"),
    "offset_past_end": ({"__metadata__": _meta(), "t": {"dtype": "U8", "shape": [8],
                                                        "data_offsets": [0, 8]}}, None, b"\0"),
    "overlap": ({"__metadata__": _meta(), "a": {"dtype": "U8", "shape": [2],
                                                "data_offsets": [0, 2]},
                 "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, None, b"\0" * 3),
    "trailing_garbage": ({"__metadata__": _meta()}, None, b"junk"),
    "metadata_not_strings": ({"__metadata__": {"format": 1}}, None, b""),
    "not_engine": ({"__metadata__": {"format": "something"}}, None, b""),
    "future_version": ({"__metadata__": _meta(format_version="99")}, None, b""),
    "graph_not_json": ({"__metadata__": _meta(graph="{oops")} and
                       {"__metadata__": {**_meta(), "graph": "{oops"}}, None, b""),
    "unknown_op": ({"__metadata__": _meta(_graph_with(nodes=[
        {"op_type": "RunShellCommand", "name": "r", "inputs": ["x"], "outputs": ["y"],
         "attrs": {}}]))}, None, b""),
    "bad_attr": ({"__metadata__": _meta(_graph_with(nodes=[
        {"op_type": "Softmax", "name": "r", "inputs": ["x"], "outputs": ["y"],
         "attrs": {"axis": "zero"}}]))}, None, b""),
    "nested_attr": ({"__metadata__": _meta(_graph_with(nodes=[
        {"op_type": "Transpose", "name": "r", "inputs": ["x"], "outputs": ["y"],
         "attrs": {"perm": [[0]]}}]))}, None, b""),
    "undefined_value": ({"__metadata__": _meta(_graph_with(nodes=[
        {"op_type": "Relu", "name": "r", "inputs": ["nope"], "outputs": ["y"], "attrs": {}}]))},
        None, b""),
    "extra_graph_key": ({"__metadata__": _meta(_graph_with(evil=1))}, None, b""),
    "bad_dim": ({"__metadata__": _meta(_graph_with(inputs=[
        {"name": "x", "dtype": "float32", "shape": [-3]}]))}, None, b""),
    "bad_dtype_name": ({"__metadata__": _meta(_graph_with(inputs=[
        {"name": "x", "dtype": "object", "shape": [2]}]))}, None, b""),
    "missing_tensor": ({"__metadata__": _meta(_graph_with(initializers=["w"]))}, None, b""),
    "weights_wrong_shape": ({"__metadata__": _meta(_graph_with(
        nodes=[{"op_type": "LSTM", "name": "l", "inputs": ["x", "W", "R"], "outputs": ["y"],
                "attrs": {}}], initializers=["R", "W"])),
        "W": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "R": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, None, b"\0" * 8),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_headers_raise_model_error(case, tmp_path):
    header, length, data = HOSTILE[case]
    with pytest.raises(ModelError):
        qengine.load(_write(tmp_path / "bad.qe", header, data, length))


def test_missing_file_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot open"):
        qengine.load(tmp_path / "nope.qe")


# ---- checksums and NaN weights ----------------------------------------------------------------
def _tensor_span(path, name):
    """(start, end) byte offsets of tensor `name` in the file."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8:8 + n])[name]["data_offsets"]
    return 8 + n + begin, 8 + n + end


def test_a_corrupted_weight_is_refused(tmp_path):
    from qengine.workflows.dynamic import quantize_dynamic
    g = quantize_dynamic(_graph())
    path = tmp_path / "q.qe"
    qengine.save(g, path)
    int8 = next(k for k, a in g.initializers.items() if a.dtype == np.int8 and a.size > 16)
    lo, hi = _tensor_span(path, int8)
    data = bytearray(path.read_bytes())
    data[lo:hi] = bytes(b ^ 0xFF for b in data[lo:hi])        # XOR every byte of the weight
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=rf"tensor '{int8}' is corrupted"):
        qengine.load(path)
    # the documented opt-out loads it (and the outputs then differ from the intact model's)
    x = rng.standard_normal((T, 2, I)).astype(np.float32)
    bad = qengine.load(path, verify=False).run({"x": x})["p"]
    assert not np.array_equal(bad, qengine.Session(g).run({"x": x})["p"])


def test_nan_weights_are_refused(tmp_path):
    g = _graph()
    path = tmp_path / "m.qe"
    qengine.save(g, path)
    lo, _ = _tensor_span(path, "fc_b")
    data = bytearray(path.read_bytes())
    data[lo:lo + 4] = np.float32(np.nan).tobytes()             # a NaN into the float bias
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupted"):          # the checksum sees it first
        qengine.load(path)
    g.initializers["fc_b"] = g.initializers["fc_b"].copy()
    g.initializers["fc_b"][1] = np.nan
    with pytest.raises(ModelError, match=r"'fc_b' holds 1 NaN value\(s\) \(first at index \(1,\)\)"):
        qengine.save(g, tmp_path / "n.qe")                      # and nobody writes one
    # a file with a NaN weight and a matching checksum (another writer) is refused at load
    meta = {"format": "qengine.engine", "format_version": "1",
            "graph": json.dumps(g.to_json())}
    from qengine.engine_file import write_safetensors
    write_safetensors(tmp_path / "w.qe", g.initializers, meta)
    with pytest.raises(ModelError, match="'fc_b' holds 1 NaN"):
        qengine.load(tmp_path / "w.qe")
