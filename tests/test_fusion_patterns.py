"""Graph fusions of the forms exporters write (qengine/graph/chains.py, decomposed.py):
decomposed HardSwish / HardSigmoid / GELU / SiLU chains, LayerNorm and squeeze-and-excitation
blocks, exported from PyTorch with both exporters and written by hand.

Each fusion must be exact: the fused graph equals the unfused one bit for bit (and ONNX Runtime
running the unoptimized model bit for bit where every step is an IEEE operation, within float
rounding otherwise), and a lookalike — other constants, an intermediate read elsewhere — is
never fused into what it resembles."""
import io
import warnings

import numpy as np
import pytest

import qengine
from qengine.engine_file import load_graph, save
from qengine.graph.passes import optimize

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

UNFUSED = dict(fuse_elementwise=False, fuse_squeeze_excite=False, fuse_layer_norm=False)


def _ort(model, feeds, optimized=False):
    so = ort.SessionOptions()
    if not optimized:     # run the nodes as written (ORT fuses GELU/LayerNorm itself)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def _run(g, feeds):
    s = qengine.Session(g)
    return s.run(feeds)[s.output_names[0]]


def _check(model, x, *, ieee_only):
    """Fused == unfused bit for bit; == ORT bit for bit (ieee_only) or within float rounding.
    Returns the fused graph."""
    g0 = qengine.from_onnx(model, optimize=False)
    fused, plain = optimize(g0), optimize(g0, **UNFUSED)
    name = g0.inputs[0].name
    yf, yp = _run(fused, {name: x}), _run(plain, {name: x})
    np.testing.assert_array_equal(yf, yp)
    yo = _ort(model, {name: x})
    if ieee_only:
        np.testing.assert_array_equal(yf, yo)
    else:
        np.testing.assert_allclose(yf, yo, rtol=1e-5, atol=2e-6)
    return fused


def _ops(g):
    return [n.op_type for n in g.nodes]


def _labels(g):
    return [n.attrs["pattern"] for n in g.nodes if n.op_type == "ElementwiseChain"]


# ------------------------------------------------------------------ PyTorch exports
torch = pytest.importorskip("torch")
nn = torch.nn


class _Manual(nn.Module):
    def forward(self, x):
        return x * nn.functional.relu6(x + 3) / 6


class _SE(nn.Module):
    def __init__(self, c=16, gate=None):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.c1, self.c2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.gate = gate or nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.c2(torch.relu(self.c1(self.pool(x)))))


class _Affine(nn.Module):
    """A conv, then a decomposed HardSwish with a learnt ·a + b after it (PaddleOCR)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return (y * nn.functional.relu6(y + 3) / 6) * 0.75 + 0.125


def _export(module, shape, dynamo, opset):
    torch.manual_seed(0)
    module = module.eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(shape),), f, dynamo=dynamo,
                          opset_version=opset, **({} if dynamo else {"input_names": ["x"]}))
    return onnx.load_from_string(f.getvalue())


EXPORTERS = [pytest.param(False, 13, id="torchscript-13"), pytest.param(True, 18, id="dynamo-18")]


def _x(shape, seed=0, scale=4.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * np.float32(scale)
    x.reshape(-1)[:4] = [-3.0, 3.0, -0.0, 0.0]         # HardSwish's corners, signed zeros
    return x


@pytest.mark.parametrize("dynamo, opset", EXPORTERS)
def test_torch_hardswish_decompositions(dynamo, opset):
    m = _export(_Manual(), (2, 8, 5, 5), dynamo, opset)
    g = _check(m, _x((2, 8, 5, 5)), ieee_only=True)
    assert _ops(g) == ["ElementwiseChain"] and _labels(g) == ["HardSwish"]
    if not dynamo:                   # nn.Hardswish below opset 14: HardSigmoid · x
        m = _export(nn.Hardswish(), (2, 8, 5, 5), dynamo, opset)
        g = _check(m, _x((2, 8, 5, 5)), ieee_only=True)
        assert _ops(g) == ["ElementwiseChain"] and _labels(g) == ["HardSwish"]


@pytest.mark.parametrize("dynamo, opset", EXPORTERS)
def test_torch_gelu_and_silu(dynamo, opset):
    m = _export(nn.GELU(), (2, 7, 33), dynamo, opset)
    g = _check(m, _x((2, 7, 33)), ieee_only=False)
    assert _ops(g) == ["ElementwiseChain"] and _labels(g) == ["GELU"]
    m = _export(nn.SiLU(), (2, 7, 33), dynamo, opset)
    g = _check(m, _x((2, 7, 33)), ieee_only=False)
    assert _ops(g) == ["ElementwiseChain"] and _labels(g) == ["SiLU"]


@pytest.mark.parametrize("dynamo, opset", EXPORTERS + [pytest.param(False, 17, id="ts-17")])
def test_torch_layer_norm(dynamo, opset):
    ln = nn.LayerNorm(24)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    m = _export(ln, (2, 5, 24), dynamo, opset)
    g = _check(m, _x((2, 5, 24)), ieee_only=False)
    assert _ops(g) == ["LayerNormalization"]
    # the decomposed export computes D / StdDev, the ONNX op D · (1 / StdDev)
    assert g.nodes[0].attrs.get("divide", 0) == (1 if opset < 17 else 0)


@pytest.mark.parametrize("dynamo, opset", EXPORTERS)
@pytest.mark.parametrize("gate", ["hardsigmoid", "sigmoid"])
def test_torch_squeeze_excite(dynamo, opset, gate):
    se = _SE(gate=nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid())
    m = _export(se, (2, 16, 6, 7), dynamo, opset)
    g = _check(m, _x((2, 16, 6, 7)), ieee_only=False)
    assert _ops(g) == ["SqueezeExcite"]


def test_conv_then_hardswish_and_affine_is_one_chain_and_runs_int8_as_a_lut():
    m = _export(_Affine(), (1, 4, 9, 9), False, 13)
    x = _x((1, 4, 9, 9), scale=1.0)
    g = _check(m, x, ieee_only=False)
    assert _ops(g) == ["Conv", "ElementwiseChain"]
    assert _labels(g) == ["HardSwish+affine"]
    calib = np.random.default_rng(1).standard_normal((8, 4, 9, 9)).astype(np.float32)
    q = qengine.quantize_static(qengine.from_onnx(m), {"x": calib})
    assert "QLut" in _ops(q) and "ElementwiseChain" not in _ops(q)
    lut = next(n for n in q.nodes if n.op_type == "QLut")
    assert lut.attrs["function"] == "chain"
    # the int8 graph tracks the float one (a table per value, not an approximation of it)
    y8, yf = _run(q, {"x": x}), _run(g, {"x": x})
    sqnr = 10 * np.log10(np.sum(yf.astype(np.float64) ** 2) / np.sum((y8 - yf) ** 2.0))
    assert sqnr > 30, sqnr


def test_lut_of_a_chain_equals_the_table_reference():
    """QLut(function='chain') maps every byte as quantize(chain_f64(dequantize(q)))."""
    from qengine.ops.chain import chain_ref
    from qengine.quantized.elementwise import QLookupTable
    from qengine.reference.conv import activation_table_ref
    steps = [("add", -1, 3.0), ("max", -1, 0.0), ("min", -1, 6.0), ("mul", 0, 0.0),
             ("div", -1, 6.0), ("mul", -1, 0.75), ("add", -1, 0.125)]
    qp = dict(x_scale=0.05, x_zero_point=117, y_scale=0.03, y_zero_point=9)
    node = helper  # noqa: F841  (keeps the import local to this module's use of onnx)
    from qengine.graph.ir import Graph, Node, ValueInfo
    from qengine.ops.chain import chain_attrs
    attrs = {k: v for k, v in chain_attrs(steps).items() if k != "pattern"}
    g = Graph([ValueInfo("q", "uint8", (256,))], [ValueInfo("y", "uint8", (256,))],
              [Node("QLut", "l", ("q",), ("y",), dict(function="chain", **attrs, **qp))])
    y = qengine.Session(g).run({"q": np.arange(256, dtype=np.uint8)})["y"]
    want = activation_table_ref(lambda r: chain_ref(r, steps), 0.05, 117, 0.03, 9)
    np.testing.assert_array_equal(y, want)
    assert QLookupTable  # the class the op builds


def test_fused_nodes_survive_the_engine_file(tmp_path):
    models = [_export(_Manual(), (1, 8, 4, 4), False, 13),
              _export(nn.LayerNorm(8), (1, 3, 8), False, 13),
              _export(_SE(), (1, 16, 4, 4), False, 13)]
    for i, m in enumerate(models):
        g = qengine.from_onnx(m)
        assert {n.op_type for n in g.nodes} & {"ElementwiseChain", "LayerNormalization",
                                               "SqueezeExcite"}
        save(g, tmp_path / f"m{i}.qe")
        g2 = load_graph(tmp_path / f"m{i}.qe")
        x = _x(tuple(d if isinstance(d, int) else 1 for d in g.inputs[0].shape))
        name = g.inputs[0].name
        np.testing.assert_array_equal(_run(g2, {name: x}), _run(g, {name: x}))


# ------------------------------------------------------------------ hand-written graphs
def _model(nodes, inits, shape=(2, 6, 5), out_shape=None):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape or shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f"
                                            else np.int64), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _hswish(tail="div6", order="xc", relu6="clip", three=3.0, six=6.0, extra_out=None):
    n = [helper.make_node("Add", ["x", "three"], ["t"])]
    if relu6 == "clip":
        n.append(helper.make_node("Clip", ["t", "zero", "six"], ["r"]))
    else:
        n += [helper.make_node("Max", ["t", "zero"], ["m"]),
              helper.make_node("Min", ["m", "six"], ["r"])]
    n.append(helper.make_node("Mul", ["x", "r"] if order == "xc" else ["r", "x"], ["p"]))
    if tail == "div6":
        n.append(helper.make_node("Div", ["p", "six"], ["y"]))
    else:
        n.append(helper.make_node("Mul", ["sixth", "p"], ["y"]))
    inits = {"three": [three], "zero": 0.0, "six": six, "sixth": np.float32(1 / 6)}
    m = _model(n, inits)
    if extra_out:
        m.graph.output.append(helper.make_tensor_value_info(extra_out, TensorProto.FLOAT,
                                                            [2, 6, 5]))
    return m


@pytest.mark.parametrize("tail", ["div6", "mul_sixth"])
@pytest.mark.parametrize("order", ["xc", "cx"])
@pytest.mark.parametrize("relu6", ["clip", "maxmin"])
def test_handwritten_hardswish_forms(tail, order, relu6):
    g = _check(_hswish(tail, order, relu6), _x((2, 6, 5)), ieee_only=True)
    assert _ops(g) == ["ElementwiseChain"] and _labels(g) == ["HardSwish"]


@pytest.mark.parametrize("three, six", [(2.5, 6.0), (3.0, 5.0)])
def test_lookalike_hardswish_with_other_constants_is_not_hardswish(three, six):
    """Fused (it is an elementwise chain), computing its own function exactly, never labelled
    or tabulated as HardSwish."""
    g = _check(_hswish(three=three, six=six), _x((2, 6, 5)), ieee_only=True)
    assert _ops(g) == ["ElementwiseChain"] and _labels(g) == [""]


def test_intermediate_read_elsewhere_is_not_swallowed():
    """x + 3 is also a graph output: the chain may not hide it; what remains cannot be one
    single-input chain (it reads x and x + 3), so it stays as it was."""
    m = _hswish(extra_out="t")
    g0 = qengine.from_onnx(m, optimize=False)
    g = optimize(g0)
    assert "t" in {o for n in g.nodes for o in n.outputs}
    assert "Add" in _ops(g)
    x = _x((2, 6, 5))
    s, s0 = qengine.Session(g), qengine.Session(optimize(g0, **UNFUSED))
    for k, v in s.run({"x": x}).items():
        np.testing.assert_array_equal(v, s0.run({"x": x})[k])


def test_gelu_variants_and_hardsigmoid_decomposition():
    gelu = [helper.make_node("Mul", ["x", "half"], ["h"]),
            helper.make_node("Mul", ["x", "rsqrt2"], ["s"]),
            helper.make_node("Erf", ["s"], ["e"]),
            helper.make_node("Add", ["one", "e"], ["p"]),
            helper.make_node("Mul", ["h", "p"], ["y"])]
    g = _check(_model(gelu, {"half": 0.5, "rsqrt2": 1 / np.sqrt(2), "one": 1.0}),
               _x((2, 6, 5)), ieee_only=False)
    assert _ops(g) == ["ElementwiseChain"]          # a two-branch DAG over x: registers
    hsig = [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Add", ["m", "b"], ["t"]),
            helper.make_node("Clip", ["t", "zero", "one"], ["y"])]
    g = _check(_model(hsig, {"a": 0.2, "b": 0.5, "zero": 0.0, "one": 1.0}), _x((2, 6, 5)),
               ieee_only=True)
    assert _ops(g) == ["ElementwiseChain"]


def _layer_norm_nodes(sq="pow", axes=(-1,), exponent=2.0, gamma=True, beta=True):
    n = [helper.make_node("ReduceMean", ["x"], ["m"], axes=list(axes)),
         helper.make_node("Sub", ["x", "m"], ["d"])]
    n.append(helper.make_node("Pow", ["d", "two"], ["q"]) if sq == "pow"
             else helper.make_node("Mul", ["d", "d"], ["q"]))
    n += [helper.make_node("ReduceMean", ["q"], ["v"], axes=list(axes)),
          helper.make_node("Add", ["v", "eps"], ["ve"]),
          helper.make_node("Sqrt", ["ve"], ["s"]),
          helper.make_node("Div", ["d", "s"], ["nrm" if gamma or beta else "y"])]
    if gamma:
        n.append(helper.make_node("Mul", ["nrm", "gamma"], ["g" if beta else "y"]))
    if beta:
        n.append(helper.make_node("Add", ["g" if gamma else "nrm", "beta"], ["y"]))
    inits = {"two": exponent, "eps": np.float32(1e-5),
             "gamma": np.linspace(0.5, 1.5, 5), "beta": np.linspace(-1, 1, 5)}
    return n, inits


@pytest.mark.parametrize("sq", ["pow", "mul"])
@pytest.mark.parametrize("gamma, beta", [(True, True), (True, False), (False, False)])
def test_handwritten_layer_norm(sq, gamma, beta):
    nodes, inits = _layer_norm_nodes(sq, gamma=gamma, beta=beta)
    g = _check(_model(nodes, inits), _x((2, 6, 5)), ieee_only=False)
    assert _ops(g) == ["LayerNormalization"]


@pytest.mark.parametrize("change", ["cube", "middle_axis", "d_read_elsewhere"])
def test_layer_norm_lookalikes_are_left_alone(change):
    nodes, inits = _layer_norm_nodes(exponent=3.0 if change == "cube" else 2.0,
                                     axes=(1,) if change == "middle_axis" else (-1,))
    if change == "middle_axis":
        inits["gamma"], inits["beta"] = np.linspace(0.5, 1.5, 6)[:, None], np.zeros((6, 1))
    m = _model(nodes, inits)
    if change == "d_read_elsewhere":
        m.graph.output.append(helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 6, 5]))
    g = optimize(qengine.from_onnx(m, optimize=False))
    assert "LayerNormalization" not in _ops(g)
    g0 = qengine.from_onnx(m, optimize=False)
    x = _x((2, 6, 5))
    np.testing.assert_array_equal(_run(g, {"x": x}), _run(optimize(g0, **UNFUSED), {"x": x}))


def test_squeeze_excite_lookalikes_are_left_alone():
    """The pooled value read a second time, and a gate multiplying something other than the
    block's input, are not squeeze-and-excitation blocks."""
    for variant in ("pool_read_twice", "other_operand"):
        se = _export(_SE(), (1, 16, 4, 4), False, 13)
        gr = se.graph
        mul = next(n for n in gr.node if n.op_type == "Mul")
        if variant == "pool_read_twice":
            pool = next(n for n in gr.node if n.op_type == "GlobalAveragePool")
            gr.output.append(helper.make_tensor_value_info(pool.output[0], TensorProto.FLOAT,
                                                           [1, 16, 1, 1]))
        else:
            gr.node.insert(0, helper.make_node("Neg", [gr.input[0].name], ["negx"]))
            mul.input[list(mul.input).index(gr.input[0].name)] = "negx"
        g = qengine.from_onnx(se)
        assert "SqueezeExcite" not in _ops(g), variant
