"""The residual Add fused into the static-int8 convolution that produces one of its operands
(QConvAdd: qengine/quantized/conv.py QConvAdd2d, include/qengine/eltwise/qe_u8_residual.h, the
pass qengine/graph/fusion.py fuse_residual_add): bit-exact against the unfused QConv → QAdd
pair and the NumPy reference on every ISA and thread count, tile tails included; the pass
fuses what it should and nothing else; engine files keep the fused node; reports and profiles
show it."""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import ConfigError, _runtime
from qengine._ext import _conv
from qengine.graph.fusion import fuse_residual_add
from qengine.graph.ir import Graph, Node, ValueInfo
from qengine.quantized.conv import QConv2d, QConvAdd2d
from qengine.quantized.elementwise import QAdd
from qengine.reference import conv as R

ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]

# (n, h, w, cin, cout, k, stride, pads (t, l, b, r), groups, dilation); the comments say which
# path of the drivers each one reaches (MR/NR: 4x4 scalar, 4x16 AVX2, 12x32 AVX-512 VNNI)
CASES = {
    "1x1_tails": (2, 5, 7, 17, 33, 1, 1, (0, 0, 0, 0), 1, 1),      # M, N not multiples of MR/NR
    "1x1_one_pixel": (1, 1, 1, 24, 40, 1, 1, (0, 0, 0, 0), 1, 1),  # M = 1: the GEMV path
    "1x1_groups": (1, 6, 5, 12, 18, 1, 1, (0, 0, 0, 0), 2, 1),     # skip offset per group
    "3x3_s2_b3": (3, 11, 10, 17, 33, 3, 2, (1, 1, 1, 1), 1, 1),
    "3x3_g3_dil2_asym": (1, 12, 13, 12, 21, 3, 1, (0, 2, 3, 1), 3, 2),
    "1x1_s2": (1, 7, 6, 8, 5, 1, 2, (0, 0, 0, 0), 1, 1),            # 1×1 stride 2: im2col
    "3x3_parallel": (1, 28, 28, 64, 64, 3, 1, (1, 1, 1, 1), 1, 1),  # 29 M MACs: tiles shared
    "3x3_column_split": (1, 3, 3, 64, 512, 3, 1, (1, 1, 1, 1), 1, 1),  # few pixels: N split
    "1x1_column_split": (1, 7, 7, 160, 960, 1, 1, (0, 0, 0, 0), 1, 1),  # GEMM tiles of N
    "1x1_gemv_parallel": (1, 1, 1, 2048, 1040, 1, 1, (0, 0, 0, 0), 1, 1),
    "1x1_parallel_rows": (2, 30, 30, 48, 24, 1, 1, (0, 0, 0, 0), 1, 1),
}


def _layers(case, isa, seed=0, conv_act=None, add_act="relu"):
    n, h, w, cin, cout, k, s, pads, g, d = CASES[case]
    rng = np.random.default_rng(seed)
    wt = rng.integers(-127, 128, (cout, cin // g, k, k), dtype=np.int8)
    ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    conv = QConv2d(wt, bias, weight_scale=ws, input_scale=0.05, input_zero_point=121,
                   output_scale=0.6, output_zero_point=97, stride=s, padding=pads,
                   dilation=d, groups=g, activation=conv_act, isa=isa)
    add = QAdd(0.6, 97, 0.09, 33, 0.7, 88, activation=add_act, isa=isa)
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    skip = rng.integers(0, 256, conv.output_shape(x.shape), dtype=np.uint8)
    return conv, add, x, skip


def _reference(conv, add, x, skip):
    _, h, w, _ = x.shape
    yc = R.qconv2d_ref(x, conv.input_zero_point, conv.weight_int8, conv.bias_int32,
                       conv.multiplier, conv.output_zero_point, conv.lo, conv.hi, conv.stride,
                       conv.pads(h, w), conv.dilation, conv.groups)
    return R.qadd_ref(yc, conv.output_scale, conv.output_zero_point, skip, add.b_scale,
                      add.b_zero_point, add.output_scale, add.output_zero_point, add.lo, add.hi)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_layer_is_bit_exact_with_the_unfused_pair_and_the_reference(case, isa):
    conv, add, x, skip = _layers(case, isa)
    f = QConvAdd2d(conv, add)
    assert f.fused and conv.algorithm in ("1x1", "im2col")
    want = _reference(conv, add, x, skip)
    assert np.array_equal(add(conv(x, nthreads=1), skip, nthreads=1), want)
    out_shape, call = f.prepare_call(x.shape, skip.shape)
    for nthreads in (1, 2):
        assert np.array_equal(f(x, skip, nthreads=nthreads), want), nthreads
    y = np.full(out_shape, 7, np.uint8)
    call(x, skip, y)                       # the graph op's steady-state call (default threads)
    assert np.array_equal(y, want)


@pytest.mark.parametrize("isa", ISAS)
def test_clamps_of_both_conv_and_add_are_kept(isa):
    """A conv clamp (ReLU6 before the add) and the add's own (ReLU after it) both apply."""
    for conv_act, add_act in (("relu6", None), (("clip", -1.0, 2.5), "relu"), (None, "relu6")):
        conv, add, x, skip = _layers("3x3_s2_b3", isa, 1, conv_act, add_act)
        assert (conv.lo, conv.hi) != (0, 255) or conv_act is None
        got = QConvAdd2d(conv, add)(x, skip)
        assert np.array_equal(got, _reference(conv, add, x, skip)), (conv_act, add_act)


def test_every_isa_gives_the_same_fused_bytes():
    """ISAs compared with each other too, at 2 threads, on shapes whose tiles are split."""
    outs = {}
    for isa in _runtime.available_isas():
        for case in ("3x3_column_split", "1x1_column_split", "3x3_parallel"):
            conv, add, x, skip = _layers(case, isa, 3)
            outs.setdefault(case, []).append(QConvAdd2d(conv, add)(x, skip, nthreads=2))
    for case, ys in outs.items():
        assert all(np.array_equal(y, ys[0]) for y in ys), case


def test_depthwise_and_broadcast_skips_run_unfused_with_the_same_bytes():
    rng = np.random.default_rng(5)
    dw = QConv2d(rng.integers(-127, 128, (16, 1, 3, 3), dtype=np.int8), None,
                 weight_scale=0.01, input_scale=0.05, input_zero_point=121, output_scale=0.6,
                 output_zero_point=97, padding=1, groups=16)
    add = QAdd(0.6, 97, 0.09, 33, 0.7, 88, activation="relu")
    f = QConvAdd2d(dw, add)
    assert dw.algorithm == "dw" and not f.fused
    assert f.prepare_call((1, 6, 6, 16), (1, 6, 6, 16)) is None
    x = rng.integers(0, 256, (2, 6, 6, 16), dtype=np.uint8)
    skip = rng.integers(0, 256, (2, 6, 6, 16), dtype=np.uint8)
    assert np.array_equal(f(x, skip), add(dw(x), skip))
    conv, add, x, _ = _layers("1x1_tails", None)
    f = QConvAdd2d(conv, add)
    row = rng.integers(0, 256, (1, 1, 1, 33), dtype=np.uint8)      # broadcast over pixels
    assert f.prepare_call(x.shape, row.shape) is None
    assert np.array_equal(f(x, row), add(conv(x), row))


def test_an_output_buffer_that_is_the_skip_is_not_written_while_it_is_read():
    conv, add, x, skip = _layers("3x3_parallel", None)
    want = _reference(conv, add, x, skip)
    got = QConvAdd2d(conv, add)(x, skip, out=skip)
    assert got is not skip and np.array_equal(got, want)


def test_bad_arguments():
    conv, _, x, skip = _layers("1x1_tails", None)
    with pytest.raises(ConfigError, match="operand a must be the conv output"):
        QConvAdd2d(conv, QAdd(0.5, 97, 0.09, 33, 0.7, 88))
    with pytest.raises(ConfigError, match="takes a QConv2d and a QAdd"):
        QConvAdd2d(conv, conv)
    add = QAdd(0.6, 97, 0.09, 33, 0.7, 88)
    with pytest.raises(qengine.ShapeError):
        QConvAdd2d(conv, add)(x, skip.astype(np.int16))
    # the kernel wrapper checks what reaches it
    _, call = conv.prepare_call_add(x.shape, (97, 33, 88, 0, 255, 1.0, 0.15))
    y = np.empty(skip.shape, np.uint8)
    with pytest.raises(ValueError, match="output's shape"):
        call(x, skip[:, :2].copy(), y)
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        call(x, skip.astype(np.int8), y)
    with pytest.raises(ValueError, match="inconsistent"):       # the add's lo > hi
        _conv.conv1x1(conv._isa, x, x.size // x.shape[3], x.shape[3], conv._packs, conv._bias,
                      conv._mult, 97, 0, 255, y, y.shape[3], 0, skip,
                      (97, 33, 88, 200, 100, 1.0, 0.1))


# ---------------------------------------------------------------------------- graphs
def _residual_graph():
    """A ResNet / MobileNetV2 mix, each block testing one rule of the pass:
    add1  identity block, Add(conv, skip) → Relu            fused, relu kept
    add2  downsampling block, Add(conv, conv)               the conv computed last is fused
    add3  MobileNetV2 1x1 projection, Add(skip, conv)       fused (operand b)
    add4  Add(depthwise conv, skip)                         not fused: depthwise
    add5  Add(c5, skip) where c5 is also concatenated       not fused: two readers
    """
    rng = np.random.default_rng(0)

    def w(*shape, s=0.25):
        return (rng.standard_normal(shape) * s).astype(np.float32)
    inits = {"w0": w(16, 3, 3, 3), "b0": w(16, s=0.1), "w1": w(16, 16, 3, 3, s=0.1),
             "w2": w(16, 16, 3, 3, s=0.1), "b2": w(16, s=0.1), "w3": w(24, 16, 3, 3, s=0.1),
             "w4": w(24, 24, 3, 3, s=0.1), "wd": w(24, 16, 1, 1), "we": w(48, 24, 1, 1),
             "wdw": w(48, 1, 3, 3), "wp": w(24, 48, 1, 1, s=0.15), "wdw2": w(24, 1, 3, 3),
             "w5": w(24, 24, 1, 1, s=0.15), "fc": w(48, 10, s=0.1),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
             "shape": np.array([0, -1], np.int64)}
    p1 = {"pads": [1, 1, 1, 1]}
    nodes = [
        Node("Conv", "c0", ("x", "w0", "b0"), ("c0",), p1),
        Node("Relu", "r0", ("c0",), ("r0",)),
        Node("Conv", "c1", ("r0", "w1"), ("c1",), p1),
        Node("Relu", "r1", ("c1",), ("r1",)),
        Node("Conv", "c2", ("r1", "w2", "b2"), ("c2",), p1),
        Node("Add", "add1", ("c2", "r0"), ("add1",)),
        Node("Relu", "r2", ("add1",), ("r2",)),
        Node("Conv", "c3", ("r2", "w3"), ("c3",), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        Node("Relu", "r3", ("c3",), ("r3",)),
        Node("Conv", "c4", ("r3", "w4"), ("c4",), p1),
        Node("Conv", "ds", ("r2", "wd"), ("ds",), {"strides": [2, 2]}),
        Node("Add", "add2", ("ds", "c4"), ("add2",)),
        Node("Relu", "r4", ("add2",), ("r4",)),
        Node("Conv", "e", ("r4", "we"), ("e",)),
        Node("Clip", "e6", ("e", "lo", "hi"), ("e6",)),
        Node("Conv", "d", ("e6", "wdw"), ("d",), {"pads": [1, 1, 1, 1], "group": 48}),
        Node("Clip", "d6", ("d", "lo", "hi"), ("d6",)),
        Node("Conv", "p", ("d6", "wp"), ("p",)),
        Node("Add", "add3", ("r4", "p"), ("add3",)),
        Node("Conv", "dw2", ("add3", "wdw2"), ("dw2",), {"pads": [1, 1, 1, 1], "group": 24}),
        Node("Add", "add4", ("dw2", "add3"), ("add4",)),
        Node("Conv", "c5", ("add4", "w5"), ("c5",)),
        Node("Add", "add5", ("c5", "add4"), ("add5",)),
        Node("Concat", "cat", ("add5", "c5"), ("cat",), {"axis": 1}),
        Node("GlobalAveragePool", "gap", ("cat",), ("gap",)),
        Node("Reshape", "flat", ("gap", "shape"), ("flat",)),
        Node("MatMul", "fc", ("flat", "fc"), ("y",)),
    ]
    return Graph([ValueInfo("x", "float32", ("N", 3, 11, 13))],
                 [ValueInfo("y", "float32", None)], nodes, inits)


@pytest.fixture(scope="module")
def quantized():
    g = _residual_graph()
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((32, 3, 11, 13)).astype(np.float32)
    fused = qengine.quantize_static(g, {"x": calib})
    unfused = qengine.quantize_static(g, {"x": calib},
                                      qengine.StaticQuantConfig(fuse_residual=False))
    x = rng.standard_normal((3, 3, 11, 13)).astype(np.float32)
    return g, fused, unfused, x


def _sqnr(y, ref):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) /
                         np.sum((y.astype(np.float64) - ref) ** 2))


def test_the_pass_fuses_residual_blocks_and_nothing_else(quantized):
    g, q, u, x = quantized
    fused = {tuple(n.attrs["fused_nodes"]): n for n in q.nodes if n.op_type == "QConvAdd"}
    assert set(fused) == {("c2", "add1"), ("ds", "add2"), ("p", "add3")}
    assert sorted(n.name for n in q.nodes if n.op_type == "QAdd") == ["add4", "add5"]
    assert sum(n.op_type == "QAdd" for n in u.nodes) == 5
    assert "QConvAdd" not in {n.op_type for n in u.nodes}
    assert {n.name for n in q.nodes} >= {"c2+add1", "ds+add2", "p+add3", "c4", "dw2", "c5"}
    # the Relu after add1 / add2 stays the add's clamp; add3 has none
    assert fused[("c2", "add1")].attrs["activation"] == "relu"
    assert fused[("ds", "add2")].attrs["activation"] == "relu"
    assert fused[("p", "add3")].attrs["activation"] == ""
    # operand a of the add is the conv output, b the skip, whatever the Add's order
    by_name = {n.name: n for n in u.nodes}
    for (conv, add), node in fused.items():
        a = by_name[add]
        side = "a" if a.inputs[0] == by_name[conv].outputs[0] else "b"
        other = "b" if side == "a" else "a"
        assert node.attrs["conv_scale"] == a.attrs[f"{side}_scale"]
        assert node.attrs["skip_scale"] == a.attrs[f"{other}_scale"]
        assert node.attrs["skip_zero_point"] == a.attrs[f"{other}_zero_point"]
        assert node.inputs[1] == a.inputs[1 if side == "a" else 0]
        assert node.inputs[2:] == by_name[conv].inputs[1:]
    # the fused graph computes the unfused graph's bytes (twice: the op's prepared fast path)
    sq, su = qengine.Session(q), qengine.Session(u)
    want = su.run({"x": x})["y"]
    for _ in range(2):
        assert np.array_equal(sq.run({"x": x})["y"], want)
    assert _sqnr(want, qengine.Session(g).run({"x": x})["y"]) > 20


@pytest.mark.parametrize("cfg", [dict(symmetric_activations=True), dict(per_channel=False),
                                 dict(bias_correction=True)])
def test_other_configs_fuse_with_the_same_bytes(quantized, cfg):
    g, _, _, x = quantized
    calib = np.random.default_rng(2).standard_normal((16, 3, 11, 13)).astype(np.float32)
    q = qengine.quantize_static(g, {"x": calib}, qengine.StaticQuantConfig(**cfg))
    u = qengine.quantize_static(g, {"x": calib},
                                qengine.StaticQuantConfig(**cfg, fuse_residual=False))
    assert sum(n.op_type == "QConvAdd" for n in q.nodes) == 3
    assert np.array_equal(qengine.Session(q).run({"x": x})["y"],
                          qengine.Session(u).run({"x": x})["y"])


def test_fuse_residual_config_is_checked():
    with pytest.raises(ConfigError, match="fuse_residual"):
        qengine.StaticQuantConfig(fuse_residual=1)


def _int8_pair(*, conv_reads_twice=False, conv_is_output=False, mismatch=False):
    """QuantizeU8 → QConv → QAdd(conv, skip) → DequantizeU8, built by hand."""
    rng = np.random.default_rng(3)
    inits = {"W": rng.integers(-127, 128, (8, 4, 3, 3), dtype=np.int8),
             "S": np.full(8, 0.01, np.float32)}
    conv_attrs = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                      dilations=[1, 1], group=1, x_scale=0.05, x_zero_point=120, y_scale=0.5,
                      y_zero_point=90, activation="")
    add_attrs = dict(a_scale=0.5 if not mismatch else 0.25, a_zero_point=90, b_scale=0.1,
                     b_zero_point=20, y_scale=0.6, y_zero_point=80, activation="")
    nodes = [
        Node("QuantizeU8", "qx", ("x",), ("xq",), dict(scale=0.05, zero_point=120, to_nhwc=1)),
        Node("QuantizeU8", "qs", ("s",), ("sq",), dict(scale=0.1, zero_point=20, to_nhwc=1)),
        Node("QConv", "conv", ("xq", "W", "S"), ("cq",), conv_attrs),
        Node("QAdd", "add", ("cq", "sq"), ("yq",), add_attrs),
        Node("DequantizeU8", "dq", ("yq",), ("y",), dict(scale=0.6, zero_point=80,
                                                         from_nhwc=1)),
    ]
    outputs = [ValueInfo("y", "float32", None)]
    if conv_reads_twice:
        nodes.append(Node("DequantizeU8", "dq2", ("cq",), ("y2",),
                          dict(scale=0.5, zero_point=90, from_nhwc=1)))
        outputs.append(ValueInfo("y2", "float32", None))
    if conv_is_output:
        outputs.append(ValueInfo("cq", "uint8", None))
    return Graph([ValueInfo("x", "float32", (2, 4, 6, 5)), ValueInfo("s", "float32", (2, 8, 6, 5))],
                 outputs, nodes, inits)


def test_a_conv_output_read_twice_or_returned_or_requantized_is_not_fused():
    g = _int8_pair()
    f = fuse_residual_add(g)
    assert [n.op_type for n in f.nodes] == ["QuantizeU8", "QuantizeU8", "QConvAdd",
                                            "DequantizeU8"]
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((2, 4, 6, 5)).astype(np.float32),
             "s": rng.standard_normal((2, 8, 6, 5)).astype(np.float32)}
    assert np.array_equal(qengine.Session(f).run(feeds)["y"], qengine.Session(g).run(feeds)["y"])
    for kw in ("conv_reads_twice", "conv_is_output", "mismatch"):
        g = _int8_pair(**{kw: True})
        f = fuse_residual_add(g)
        assert [n.op_type for n in f.nodes] == [n.op_type for n in g.nodes], kw
    g = _int8_pair()
    same = g.copy()
    same.nodes = [n.replace(inputs=("cq", "cq")) if n.op_type == "QAdd" else n
                  for n in g.nodes]                 # Add(conv, conv): read twice by one node
    assert "QConvAdd" not in {n.op_type for n in fuse_residual_add(same).nodes}


def test_engine_file_round_trip_keeps_the_fused_node(quantized, tmp_path):
    _, q, u, x = quantized
    qengine.save(q, tmp_path / "q.qe")
    back = qengine.load_graph(tmp_path / "q.qe")
    assert [(n.op_type, n.name, n.inputs, n.attrs) for n in back.nodes] == \
        [(n.op_type, n.name, n.inputs, n.attrs) for n in q.nodes]
    want = qengine.Session(u).run({"x": x})["y"]
    assert np.array_equal(qengine.load(tmp_path / "q.qe").run({"x": x})["y"], want)
    from qengine.tools.describe import describe
    rows = describe(back)["qparams"]
    assert {r["node"] for r in rows if r["op"] == "QConvAdd"} == {"c2+add1", "ds+add2",
                                                                  "p+add3"}


def test_a_bad_fused_node_in_an_engine_file_is_refused(quantized, tmp_path):
    _, q, _, _ = quantized
    bad = q.copy()
    bad.nodes = [n.replace(attrs=dict(n.attrs, conv_activation="gelu"))
                 if n.op_type == "QConvAdd" else n for n in q.nodes]
    qengine.save(bad, tmp_path / "bad.qe")
    with pytest.raises(qengine.ModelError, match="conv_activation"):
        qengine.load(tmp_path / "bad.qe")
    short = q.copy()
    short.nodes = [n.replace(inputs=n.inputs[:3]) if n.op_type == "QConvAdd" else n
                   for n in q.nodes]
    with pytest.raises(qengine.ModelError, match="expected 4..5 inputs"):
        short.verify()


def test_profile_and_quantize_report_show_the_fused_node(quantized):
    g, q, _, x = quantized
    _, (prof,) = qengine.Session(q).profile({"x": x})
    kinds = {name: op for name, op, _ in prof.nodes}
    assert kinds["c2+add1"] == kinds["ds+add2"] == kinds["p+add3"] == "QConvAdd"
    assert "QConvAdd" in prof.by_op_type
    from qengine.tools.quantize import STATIC_REPORTED, quantization_report
    from qengine.workflows.ptq import prepare_float_graph
    rows = {r["node"]: r for r in quantization_report(prepare_float_graph(g), q,
                                                      STATIC_REPORTED)}
    for conv, add in (("c2", "add1"), ("ds", "add2"), ("p", "add3")):
        assert rows[conv]["quantized"] and rows[conv]["new_op"] == "QConvAdd"
        assert rows[add]["quantized"] and rows[add]["new_op"] == "QConvAdd"
        assert rows[conv]["bytes_after"] > 0 and rows[add]["bytes_after"] == 0
    assert all(r["quantized"] for r in rows.values())


_CHILD = """
import sys, numpy as np, qengine
qengine.set_num_threads(int(sys.argv[3]))
x = np.load(sys.argv[2])
assert qengine.active_isa() == sys.argv[4]
for path in sys.argv[1].split(","):
    sys.stdout.buffer.write(qengine.load(path).run({"x": x})["y"].tobytes())
"""


def test_fused_and_unfused_graphs_agree_on_every_isa_and_thread_count(quantized, tmp_path):
    """Child processes (QENGINE_ISA picks the ISA at import): the fused and the unfused engine
    file give one set of bytes on every ISA at 1 and 2 threads, batch large enough for the
    convolutions to run in parallel."""
    _, q, u, _ = quantized
    qengine.save(q, tmp_path / "q.qe")
    qengine.save(u, tmp_path / "u.qe")
    x = np.random.default_rng(6).standard_normal((48, 3, 11, 13)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    paths = f"{tmp_path / 'q.qe'},{tmp_path / 'u.qe'}"
    results = {}
    for isa in _runtime.available_isas():
        for threads in ("1", "2"):
            env = dict(os.environ, QENGINE_ISA=isa,
                       PYTHONPATH=str(Path(qengine.__file__).parents[1]))
            r = subprocess.run([sys.executable, "-c", _CHILD, paths, str(tmp_path / "x.npy"),
                                threads, isa], capture_output=True, env=env, timeout=300)
            assert r.returncode == 0, r.stderr.decode()[-800:]
            fused, unfused = r.stdout[:len(r.stdout) // 2], r.stdout[len(r.stdout) // 2:]
            assert len(fused) == 48 * 10 * 4 and fused == unfused, (isa, threads)
            results[(isa, threads)] = fused
    first = next(iter(results.values()))
    assert all(v == first for v in results.values()), list(results)
    assert np.array_equal(np.frombuffer(first, np.float32).reshape(48, 10),
                          qengine.Session(u).run({"x": x})["y"])


def test_resnet_and_mobilenet_style_onnx_models_fuse_every_residual_add(tmp_path):
    """On torch-exported blocks (what bench/compare_cnn.py quantizes): every residual Add of a
    torchvision-style BasicBlock and InvertedResidual is fused, and the outputs are the
    unfused graph's bytes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class Inverted(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, 4 * c, 1), nn.ReLU6(),
                                      nn.Conv2d(4 * c, 4 * c, 3, 1, 1, groups=4 * c),
                                      nn.ReLU6(), nn.Conv2d(4 * c, c, 1))

        def forward(self, x):
            return x + self.body(x)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), Basic(16, 16, 1),
                          Basic(16, 24, 2), Inverted(24), Inverted(24),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 5)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "res.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 16, 16), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    g = qengine.from_onnx(str(path))
    q = qengine.quantize_static(g, {"x": calib})
    u = qengine.quantize_static(g, {"x": calib}, qengine.StaticQuantConfig(fuse_residual=False))
    assert sum(n.op_type == "QAdd" for n in u.nodes) == 4
    assert sum(n.op_type == "QConvAdd" for n in q.nodes) == 4
    assert "QAdd" not in {n.op_type for n in q.nodes}
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(qengine.Session(q).run({"x": x})["y"],
                          qengine.Session(u).run({"x": x})["y"])
