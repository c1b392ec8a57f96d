"""Feed malformed ONNX models to qengine and check every one ends in a clear qengine error.

A seeded generator takes small valid models (an MLP, a CNN, an LSTM, a shape-computation
chain, old-opset attribute forms) and breaks each case in one or two ways: attributes of the
wrong kind or out of range, missing or unknown attributes, wrong arity, dangling inputs,
missing initializers, cycles, duplicate names, wrong ranks, huge declared shapes (2**40),
initializers whose dims promise data they do not have, bad element types, external data that
is missing or points outside, bad opsets and domains, empty graphs — or it hands over
truncated, bit-flipped or random protobuf bytes.

In-process check: `from_onnx`, then `Session` and one run on inputs made from the declared
shapes (when they are small), then `describe` (what `qengine inspect` prints). Outcomes:
"accepted" (the damage happened to be harmless, or got repaired), "refused" (a QEngineError —
the goal for broken models), "crash" (any other exception), "hang" (over the time limit),
"died" (the worker process died: a segfault or the memory limit), "cli" (`qengine inspect` or
`qengine run`, called through `qengine.cli.main` on the same file, did not end with exit code 0,
or 2 and one `qengine: error:` line). Each case runs in a worker process with a time limit and
an address-space limit, so no case can stall or exhaust the machine. On a sample, the CLI also
runs as real subprocesses (`python -m qengine ...`), held to the same rule, no traceback.

    python scripts/fuzz_onnx.py --cases 5000 --cli 50 --seed 1
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a source checkout's in-place build

import onnx  # noqa: E402
from onnx import AttributeProto, TensorProto, helper, numpy_helper  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64
HUGE = 2 ** 40
MEMORY_LIMIT = 3 << 30  # bytes of address space per worker
RUN_MAX_ELEMENTS = 1 << 16  # declared inputs bigger than this are imported, not run


# ---- valid models to break ------------------------------------------------------------------
def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset, name="fuzz"):
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _mlp(rng):
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b1"], ["ha"], name="add"),
             helper.make_node("Relu", ["ha"], ["hr"], name="relu"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["z"], name="gemm", transB=1,
                              alpha=1.0),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)]
    inits = [("w1", _f32(rng, 8, 16)), ("b1", _f32(rng, 16)), ("w2", _f32(rng, 4, 16)),
             ("b2", _f32(rng, 4))]
    return _model(nodes, [("x", F, ["batch", 8])], [("y", F, ["batch", 4])], inits, 17)


def _cnn(rng):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3], strides=[1, 1], group=1),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["bn"],
                              name="bn", epsilon=1e-5),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("AveragePool", ["p"], ["ap"], name="avg", kernel_shape=[2, 2],
                              ceil_mode=1, count_include_pad=0),
             helper.make_node("GlobalAveragePool", ["ap"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    inits = [("w", _f32(rng, 4, 3, 3, 3)), ("b", _f32(rng, 4)), ("s", _f32(rng, 4)),
             ("bb", _f32(rng, 4)), ("m", _f32(rng, 4)), ("v", np.ones(4, np.float32)),
             ("fw", _f32(rng, 5, 4))]
    return _model(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, [1, 5])], inits, 13)


def _lstm(rng):
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["ys", "yh"], name="lstm",
                              hidden_size=6, direction="forward"),
             helper.make_node("Squeeze", ["ys", "ax"], ["sq"], name="squeeze"),
             helper.make_node("GRU", ["sq", "GW", "GR"], ["gy"], name="gru", hidden_size=3,
                              linear_before_reset=1),
             helper.make_node("ReduceMean", ["gy", "ax0"], ["y"], name="mean", keepdims=0)]
    inits = [("W", _f32(rng, 1, 24, 4)), ("R", _f32(rng, 1, 24, 6)), ("B", _f32(rng, 1, 48)),
             ("ax", np.array([1], np.int64)), ("GW", _f32(rng, 1, 9, 6)),
             ("GR", _f32(rng, 1, 9, 3)), ("ax0", np.array([0], np.int64))]
    return _model(nodes, [("x", F, [5, 2, 4])], [("y", F, None)], inits, 18)


def _shapes(rng):
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("Gather", ["shp", "i0"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["tgt"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "tgt"], ["r"], name="reshape"),
             helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[1, 0]),
             helper.make_node("Slice", ["t", "st", "en", "axs", "stp"], ["sl"], name="slice"),
             helper.make_node("Pad", ["sl", "pads", "cv"], ["pd"], name="pad", mode="constant"),
             helper.make_node("Split", ["pd"], ["s0", "s1"], name="split", axis=0,
                              num_outputs=2),
             helper.make_node("Mul", ["s0", "s1"], ["mu"], name="mul"),
             helper.make_node("Expand", ["mu", "eshape"], ["ex"], name="expand"),
             helper.make_node("Cast", ["ex"], ["ci"], name="cast", to=TensorProto.INT32),
             helper.make_node("Cast", ["ci"], ["cf"], name="cast2", to=F),
             helper.make_node("Clip", ["cf", "lo", "hi"], ["y"], name="clip")]
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    inits = [("i0", np.array(0, np.int64)), ("ax0", i64(0)), ("minus1", i64(-1)),
             ("st", i64(0)), ("en", i64(100)), ("axs", i64(1)), ("stp", i64(1)),
             ("pads", i64(1, 0, 1, 0)), ("cv", np.array(0.5, np.float32)),
             ("eshape", i64(2, 1, 1)), ("lo", np.array(-1, np.float32)),
             ("hi", np.array(2, np.float32))]
    return _model(nodes, [("x", F, [2, 3, 4])], [("y", F, None)], inits, 18)


def _old_forms(rng):
    nodes = [helper.make_node("Slice", ["x"], ["s"], name="slice", starts=[0], ends=[2],
                              axes=[1]),
             helper.make_node("Pad", ["s"], ["p"], name="pad", pads=[0, 1, 0, 1], value=0.0),
             helper.make_node("Unsqueeze", ["p"], ["u"], name="unsq", axes=[0]),
             helper.make_node("Squeeze", ["u"], ["q"], name="sq", axes=[0]),
             helper.make_node("Clip", ["q"], ["c"], name="clip", min=-1.0, max=1.0),
             helper.make_node("Softmax", ["c"], ["sm"], name="softmax", axis=1),
             helper.make_node("Split", ["sm"], ["a", "b"], name="split", axis=1, split=[2, 2]),
             helper.make_node("Sum", ["a", "b"], ["y"], name="sum")]
    return _model(nodes, [("x", F, [3, 4])], [("y", F, None)], [], 9)


BASES = {"mlp": _mlp, "cnn": _cnn, "lstm": _lstm, "shapes": _shapes, "old_forms": _old_forms}


# ---- ways to break them ---------------------------------------------------------------------
def _node(rng, m, with_attrs=False):
    nodes = [n for n in m.graph.node if n.attribute or not with_attrs]
    return rng.choice(nodes) if nodes else None


def _bad_value(rng):
    return rng.choice([0, -1, -7, 2 ** 31, -(2 ** 62), 2 ** 62, HUGE])


def attr_wrong_kind(rng, m):
    n = _node(rng, m, with_attrs=True)
    if n is None or not n.attribute:
        return "no attribute"
    a = rng.choice(list(n.attribute))
    new = rng.choice([helper.make_attribute(a.name, "text"),
                      helper.make_attribute(a.name, 1.5),
                      helper.make_attribute(a.name, [1, 2, 3]),
                      helper.make_attribute(a.name, 3),
                      helper.make_attribute(a.name, [0.5, 0.25]),
                      helper.make_attribute(a.name, ["a", "b"]),
                      helper.make_attribute(a.name, numpy_helper.from_array(np.ones(2))),
                      helper.make_attribute(a.name, helper.make_graph([], "sub", [], [])),
                      AttributeProto(name=a.name)])  # type UNDEFINED
    a.CopyFrom(new)
    return f"{n.name}.{a.name} kind"


def attr_out_of_range(rng, m):
    n = _node(rng, m, with_attrs=True)
    if n is None or not n.attribute:
        return "no attribute"
    a = rng.choice(list(n.attribute))
    if a.type == AttributeProto.INT:
        a.i = _bad_value(rng)
    elif a.type == AttributeProto.INTS and a.ints:
        a.ints[rng.randrange(len(a.ints))] = _bad_value(rng)
        if rng.random() < 0.3:
            a.ints.append(_bad_value(rng))
    elif a.type == AttributeProto.FLOAT:
        a.f = rng.choice([float("nan"), float("inf"), -1e30, 0.0, -1.0])
    elif a.type == AttributeProto.STRING:
        a.s = rng.choice([b"", b"BOGUS", b"\xff\xfe", b"x" * 1000])
    else:
        return "unchanged"
    return f"{n.name}.{a.name} value"


def attr_drop_or_add(rng, m):
    n = _node(rng, m)
    if n is None:
        return "no node"
    if n.attribute and rng.random() < 0.5:
        name = n.attribute[rng.randrange(len(n.attribute))].name
        n.attribute.remove(next(a for a in n.attribute if a.name == name))
        return f"{n.name} drops {name}"
    n.attribute.append(helper.make_attribute("bogus_attr", 1))
    return f"{n.name} unknown attribute"


def arity(rng, m):
    n = _node(rng, m)
    if n is None:
        return "no node"
    choice = rng.randrange(4)
    if choice == 0 and n.input:
        del n.input[rng.randrange(len(n.input))]
    elif choice == 1:
        n.input.append(rng.choice(list(n.input) or ["x"]))
    elif choice == 2 and n.output:
        n.output.append(f"extra_{rng.randrange(99)}")
    elif n.output:
        del n.output[-1]
    return f"{n.name} arity"


def dangling_input(rng, m):
    n = _node(rng, m)
    if n is None or not n.input:
        return "no input"
    n.input[rng.randrange(len(n.input))] = rng.choice(["nowhere", "", "y"])
    return f"{n.name} reads an undefined value"


def missing_initializer(rng, m):
    if not m.graph.initializer:
        return "no initializer"
    del m.graph.initializer[rng.randrange(len(m.graph.initializer))]
    return "initializer removed"


def cycle(rng, m):
    nodes = list(m.graph.node)
    if len(nodes) < 2:
        return "too small"
    first, last = nodes[0], nodes[rng.randrange(1, len(nodes))]
    first.input[0] = last.output[0]
    return "cycle"


def duplicate_names(rng, m):
    g = m.graph
    choice = rng.randrange(5)
    if choice == 0 and len(g.node) > 1:
        g.node[1].output[0] = g.node[0].output[0]
        return "two nodes write one value"
    if choice == 1 and g.initializer:
        g.initializer.append(g.initializer[0])
        return "initializer twice"
    if choice == 2 and g.initializer:
        g.initializer[0].name = g.input[0].name
        return "initializer named like the input (with another shape)"
    if choice == 3:
        g.input.append(g.input[0])
        return "input twice"
    if len(g.node) > 1:
        g.node[1].output[0] = g.input[0].name
    return "node output named like the input"


def wrong_rank(rng, m):
    g = m.graph
    if rng.random() < 0.5 and g.initializer:
        t = g.initializer[rng.randrange(len(g.initializer))]
        arr = numpy_helper.to_array(t)
        arr = arr.reshape(-1) if arr.ndim > 1 else arr.reshape((1,) + arr.shape + (1,))
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
        return f"initializer {t.name} rank"
    dims = g.input[0].type.tensor_type.shape.dim
    if rng.random() < 0.5 and dims:
        del dims[-1]
    else:
        dims.add().dim_value = 1
    return "input rank"


def huge_shapes(rng, m):
    g = m.graph
    choice = rng.randrange(5)
    if choice == 0:
        for d in g.input[0].type.tensor_type.shape.dim:
            d.Clear()
            d.dim_value = rng.choice([HUGE, 2 ** 31, 2 ** 62])
        return "huge input dims"
    if choice == 1 and g.initializer:  # dims promise data that is not there
        t = g.initializer[rng.randrange(len(g.initializer))]
        t.dims[:] = [HUGE, HUGE] if rng.random() < 0.5 else [HUGE]
        return f"initializer {t.name} claims {list(t.dims)}"
    if choice == 2:
        g.node.insert(0, helper.make_node("ConstantOfShape", ["big_shape"], ["big"],
                                          name="cos"))
        g.initializer.append(numpy_helper.from_array(np.array([HUGE, HUGE], np.int64),
                                                     "big_shape"))
        g.output.append(helper.make_tensor_value_info("big", F, None))
        return "ConstantOfShape of a huge shape"
    if choice == 3:
        name = g.output[0].name
        g.node.append(helper.make_node("Expand", [name, "big_shape"], ["big"], name="exp"))
        g.initializer.append(numpy_helper.from_array(np.array([HUGE, 1, 1], np.int64),
                                                     "big_shape"))
        g.output[0].name = "big"
        return "Expand to a huge shape"
    for d in g.output[0].type.tensor_type.shape.dim:
        d.Clear()
        d.dim_value = HUGE
    return "huge output dims"


def bad_dtypes(rng, m):
    g = m.graph
    bad = rng.choice([0, 8, 16, 17, 23, 99, -3, TensorProto.COMPLEX64])
    if rng.random() < 0.5:
        g.input[0].type.tensor_type.elem_type = bad
        return f"input elem_type {bad}"
    if g.initializer:
        t = g.initializer[rng.randrange(len(g.initializer))]
        t.data_type = bad if rng.random() < 0.5 else TensorProto.DOUBLE  # raw_data too short
        return f"initializer {t.name} data_type {t.data_type}"
    return "unchanged"


def bad_values(rng, m):
    """Well-typed constants with values the op cannot use: axes, shapes, pads, indices, split
    sizes or weights set to huge, negative or zero numbers; weights to NaN/inf."""
    g = m.graph
    if not g.initializer:
        return "no initializer"
    t = g.initializer[rng.randrange(len(g.initializer))]
    arr = numpy_helper.to_array(t).copy()
    if arr.size == 0:
        return "empty"
    flat = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        for _ in range(rng.randrange(1, 3)):
            flat[rng.randrange(flat.size)] = rng.choice(
                [0, -1, -2 ** 31, 2 ** 31, 2 ** 62, -(2 ** 62), 1 << 20, 3 * rng.randrange(9)])
    elif arr.dtype.kind == "f":
        flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38, 0.0])
    if rng.random() < 0.2:  # one element more or fewer
        arr = np.append(flat, flat[:1]) if rng.random() < 0.5 else flat[1:]
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return f"initializer {t.name} values"


def long_lists(rng, m):
    ints = [(n, a) for n in m.graph.node for a in n.attribute if a.type == AttributeProto.INTS]
    if not ints:
        return "no ints attribute"
    n, a = rng.choice(ints)
    a.ints.extend([1] * rng.choice([1, 5, 1000]))
    return f"{n.name}.{a.name} longer"


def retype(rng, m):
    """A well-formed tensor of a type the op does not expect (float64 weights, float shapes,
    int8 images, bool anything): reaches the ops and kernels, not just the importer."""
    g = m.graph
    dtype = rng.choice([np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8, bool])
    if rng.random() < 0.5 and g.initializer:
        t = g.initializer[rng.randrange(len(g.initializer))]
        arr = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array(arr.astype(dtype), t.name))
        return f"initializer {t.name} as {np.dtype(dtype).name}"
    vi = rng.choice(list(g.input))
    vi.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return f"input {vi.name} as {np.dtype(dtype).name}"


def external_data(rng, m):
    if not m.graph.initializer:
        return "no initializer"
    t = m.graph.initializer[rng.randrange(len(m.graph.initializer))]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    loc = rng.choice(["missing.bin", "../../../../etc/passwd", "/etc/passwd", ""])
    del t.external_data[:]
    t.external_data.add(key="location", value=loc)
    if rng.random() < 0.5:
        t.external_data.add(key="length", value=str(HUGE))
    return f"external data {loc!r}"


def bad_opset(rng, m):
    choice = rng.randrange(4)
    if choice == 0:
        del m.opset_import[:]
        return "no opset import"
    m.opset_import[0].version = rng.choice([0, 1, 6, 29, 10 ** 9, -3])
    if choice == 2:
        m.opset_import.add(domain="", version=21)  # two default-domain imports
    return f"opset {m.opset_import[0].version}"


def bad_op(rng, m):
    n = _node(rng, m)
    if n is None:
        return "no node"
    choice = rng.randrange(4)
    if choice == 0:
        n.op_type = rng.choice(["", "NoSuchOp", "QLut", "DynamicQuantLinear", "relu"])
    elif choice == 1:
        n.domain = rng.choice(["ai.onnx.ml", "com.microsoft", "bogus"])
    elif choice == 2:
        n.name = ""
        m.graph.node[0].name = n.name or "x"
    else:
        n.op_type = rng.choice(["Constant", "Identity", "Dropout", "Cast"])
    return f"{n.name} op {n.op_type}/{n.domain}"


def empty_graph(rng, m):
    g = m.graph
    choice = rng.randrange(4)
    if choice == 0:
        del g.node[:]
    elif choice == 1:
        del g.output[:]
    elif choice == 2:
        del g.input[:]
    else:
        g.output[0].name = "not_produced"
    return ["no nodes", "no outputs", "no inputs", "output not produced"][choice]


def constant_nodes(rng, m):
    g = m.graph
    choice = rng.randrange(4)
    if choice == 0:
        node = helper.make_node("Constant", [], ["k"], value_strings=["a", "b"])
    elif choice == 1:
        node = helper.make_node("Constant", [], ["k"], value_float=1.0, value_int=2)
    elif choice == 2:
        node = helper.make_node("Constant", [], ["k"])
    else:
        t = numpy_helper.from_array(np.ones(3, np.float32), "k")
        t.dims[:] = [HUGE]
        node = helper.make_node("Constant", [], ["k"], value=t)
    g.node.insert(0, node)
    g.output.append(helper.make_tensor_value_info("k", F, None))
    return "bad Constant"


MUTATIONS = [attr_wrong_kind, attr_out_of_range, attr_drop_or_add, arity, dangling_input,
             missing_initializer, cycle, duplicate_names, wrong_rank, huge_shapes, bad_dtypes,
             retype, bad_values, long_lists, external_data, bad_opset, bad_op, empty_graph, constant_nodes]


def _bytes_damage(rng, data: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(4)
    if choice == 0:
        cut = rng.randrange(len(data))
        return data[:cut], f"truncated at {cut}/{len(data)}"
    if choice == 1:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b), "bytes flipped"
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), "random bytes"
    return b"", "empty file"


@dataclass(frozen=True)
class FuzzCase:
    name: str
    data: bytes  # a serialized (possibly not parseable) model


def generate(seed: int, n: int):
    """`n` cases, the same for the same seed."""
    rng = random.Random(seed)
    bases = {k: f(np.random.default_rng(seed)).SerializeToString() for k, f in BASES.items()}
    for i in range(n):
        base = rng.choice(sorted(bases))
        if rng.random() < 0.12:
            data, what = _bytes_damage(rng, bases[base])
            yield FuzzCase(f"{i}:{base}:{what}", data)
            continue
        m = onnx.ModelProto.FromString(bases[base])
        whats = []
        for mutate in rng.sample(MUTATIONS, rng.choice([1, 1, 2])):
            try:
                what = mutate(rng, m)
            except Exception:  # noqa: BLE001 - an earlier mutation broke this one's target
                what = "nothing to break"
            whats.append(f"{mutate.__name__}({what})")
        try:
            data = m.SerializeToString()
        except Exception as e:  # noqa: BLE001 - protobuf refuses some values (huge ints)
            yield FuzzCase(f"{i}:{base}:{'+'.join(whats)} [unserializable: {e}]", b"")
            continue
        yield FuzzCase(f"{i}:{base}:{'+'.join(whats)}", data)


# ---- checking ---------------------------------------------------------------------------------
def _feeds(graph):
    rng = np.random.default_rng(0)
    feeds = {}
    for info in graph.inputs:
        shape = [2 if not isinstance(d, int) else d for d in (info.shape or ())]
        if int(np.prod(shape, dtype=np.float64)) > RUN_MAX_ELEMENTS:
            return None
        dtype = np.dtype(info.dtype)
        feeds[info.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" \
            else np.zeros(shape, dtype)
    return feeds


def check(data: bytes) -> tuple[str, str]:
    """(outcome, detail) of one model, in this process: the library, then the CLI's `inspect`
    and `run` through `qengine.cli.main` (the subprocess check is `check_cli`)."""
    with tempfile.TemporaryDirectory(prefix="qengine-fuzz-") as d:
        outcome, detail, feeds = _check_library(data, Path(d))
        if outcome in ("accepted", "refused"):
            cli = _check_cli_in_process(data, Path(d), feeds)
            if cli:
                return "cli", cli
        return outcome, detail


def _check_library(data: bytes, workdir: Path):
    from qengine import QEngineError, Session
    from qengine.frontends.onnx import from_onnx
    from qengine.tools.describe import describe
    feeds = None
    try:
        try:
            model = onnx.ModelProto.FromString(data)
        except Exception:  # noqa: BLE001 - not a model at all: go through the file path
            path = workdir / "bytes.onnx"
            path.write_bytes(data)
            from_onnx(path)
            return "accepted", "", feeds
        graph = from_onnx(model)
        describe(graph)
        sess = Session(graph)
        feeds = _feeds(graph)
        if feeds is not None:
            sess.run(feeds)
        return "accepted", "", feeds
    except QEngineError as e:
        return "refused", f"{type(e).__name__}: {e}", feeds
    except Exception as e:  # noqa: BLE001 - anything else is what we are hunting
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return ("crash", f"{type(e).__name__}: {e} (at {Path(tb.filename).name}:{tb.lineno})",
                feeds)


def _cli_args(workdir: Path, feeds) -> list[list[str]]:
    """`inspect` and `run` command lines for workdir/model.onnx (inputs from `feeds`, or one
    made-up `x` when the model could not tell)."""
    inputs = []
    for name, arr in (feeds or {"x": np.zeros((1, 8), np.float32)}).items():
        path = workdir / f"in{len(inputs)}.npy"
        np.save(path, arr)
        inputs += ["--input", f"{name}={path}"]
    model = str(workdir / "model.onnx")
    return [["inspect", model], ["run", model, *inputs, "-o", str(workdir / "out.npz")]]


def _cli_verdict(cmd: str, code, err: str) -> str:
    """"" when the CLI behaved: exit 0, or 2 with one `qengine: error:` line."""
    err = err.strip()
    if code not in (0, 2) or "Traceback" in err:
        return f"qengine {cmd}: exit {code}: {err[-500:]}"
    if code == 2 and (len(err.splitlines()) != 1 or not err.startswith("qengine: error: ")):
        return f"qengine {cmd}: stderr is not one error line: {err[-500:]}"
    return ""


def _check_cli_in_process(data: bytes, workdir: Path, feeds) -> str:
    import contextlib
    import io
    from qengine.cli import main
    (workdir / "model.onnx").write_bytes(data)
    for args in _cli_args(workdir, feeds):
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(args)
        except SystemExit as e:
            code = e.code
        except Exception as e:  # noqa: BLE001 - escaping main() is a traceback for the user
            return f"qengine {args[0]}: {type(e).__name__} escaped main(): {e}"
        bad = _cli_verdict(args[0], code, err.getvalue())
        if bad:
            return bad
    return ""


def _worker(conn):
    import resource
    import warnings
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    warnings.simplefilter("ignore")  # NumPy's overflow/NaN warnings on garbage weights
    while True:
        data = conn.recv()
        if data is None:
            return
        conn.send(check(data))


class Runner:
    """Runs checks in a worker process; a case that outlives `timeout` kills the worker."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.ctx = multiprocessing.get_context("spawn")  # no fork after OpenMP started
        self.proc = None

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # the worker inherits it: one core is plenty
        try:
            self.proc.start()
        finally:
            if saved is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        child.close()

    def check(self, data: bytes) -> tuple[str, str]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(data)
        # the first case of a worker also pays for its imports
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
            self.proc.join(1)
            return "died", f"worker exit code {self.proc.exitcode}"
        if not self.proc.is_alive():
            return "died", f"worker exit code {self.proc.exitcode}"
        self.proc.kill()
        self.proc.join()
        return "hang", f"no answer within {self.timeout} s"

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


def check_cli(case: FuzzCase, workdir: Path, timeout: float = 60.0) -> str:
    """`qengine inspect` and `qengine run` as subprocesses: "" when both behaved."""
    (workdir / "model.onnx").write_bytes(case.data)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for args in _cli_args(workdir, None):
        try:
            p = subprocess.run([sys.executable, "-m", "qengine", *args], capture_output=True,
                               text=True, timeout=timeout, env=env, cwd=workdir)
        except subprocess.TimeoutExpired:
            return f"qengine {args[0]}: no answer within {timeout} s"
        bad = _cli_verdict(args[0], p.returncode, p.stderr)
        if bad:
            return bad
    return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=2000, help="in-process cases")
    p.add_argument("--cli", type=int, default=20, help="of which run through the CLI too")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per case")
    p.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = p.parse_args(argv)
    cases = list(generate(args.seed, args.cases))
    runner, outcomes, bad = Runner(args.timeout), collections.Counter(), []
    try:
        for case in cases:
            outcome, detail = runner.check(case.data)
            outcomes[outcome] += 1
            if args.verbose:
                print(f"{outcome:<9} {case.name}  {detail[:160]}")
            if outcome not in ("accepted", "refused"):
                bad.append((outcome, case.name, detail))
    finally:
        runner.close()
    cli_bad = 0
    with tempfile.TemporaryDirectory(prefix="qengine-fuzz-") as d:
        sample = random.Random(args.seed).sample(cases, min(args.cli, len(cases)))
        for case in sample:
            detail = check_cli(case, Path(d))
            if detail:
                cli_bad += 1
                bad.append(("cli subprocess", case.name, detail))
    print(f"seed {args.seed}: {len(cases)} cases: " +
          ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) +
          f"; CLI subprocesses: {len(sample) - cli_bad} of {len(sample)} behaved")
    for outcome, name, detail in bad:
        print(f"  {outcome}: {name}\n      {detail[:400]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
