"""Structure-aware fuzzing of engine files: the loader, the op constructors, the kernels, the CLI.

Used by tests/test_engine_fuzz.py (a slice in the default suite) and scripts/fuzz_engine.py (the
full run). The contract under test (DESIGN.md, "Engine file"): whatever the bytes, loading and
running either works or raises a `QEngineError`; and through the CLI, it ends with exit code 0
or 2, an error being one line ``qengine: error: ...`` on stderr. Never a crash, a hang, another
exception type or a traceback.

A case is (seed, index): its base file (one of a small corpus: a dynamic-int8 LSTM/GRU, static
int8 CNNs, float graphs) and its 1-3 mutations are drawn from `random.Random(f"{seed}/{index}")`,
so any case can be replayed alone. Mutations know the format: the safetensors header (dtypes,
shapes, offsets; consistent re-layouts that keep the file valid so that the graph checks and op
constructors are reached), the metadata, the graph JSON (op types, attributes of the right kind
with extreme values, edges, cycles, graph inputs/outputs, opset), tensor values (NaN, Inf,
integer extremes in weights and scales), raw byte flips, truncation and the header length.

Cases run in a worker subprocess (`python tests/engine_fuzz.py --worker`), which loads the
mutant, runs it twice on the base file's inputs (the second run reuses the memory plan's
buffers) and calls the CLI's `inspect` and `run` in-process; the parent enforces a time bound
per case and restarts the worker after a crash. A sample of cases also runs the real CLI in a
subprocess (`python -m qengine ...`).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FAILURES = ("bad_exception", "crash", "hang", "cli_bad")


# ---- the corpus -------------------------------------------------------------------------------
@dataclass
class Base:
    """An engine file to mutate and the inputs it runs on."""
    name: str
    data: bytes
    inputs: dict[str, Path]          # input name → .npy file (the CLI's --input NAME=FILE)


def _float_lstm_graph(rng):
    from qengine.graph import Graph, Node, ValueInfo
    T, I, H, O = 3, 4, 5, 2
    f32 = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)  # noqa: E731
    inits = {"W": f32(1, 4 * H, I), "R": f32(1, 4 * H, H), "B": f32(1, 8 * H),
             "Wg": f32(2, 3 * H, I), "Rg": f32(2, 3 * H, H), "Bg": f32(2, 6 * H),
             "axes": np.array([1], np.int64), "fc_w": f32(H, O), "fc_b": f32(O),
             "flag": np.array([True, False]), "small": np.arange(3, dtype=np.int8)}
    nodes = [Node("LSTM", "lstm", ("x", "W", "R", "B"), ("y", "yh"), {"hidden_size": H}),
             Node("Squeeze", "sq", ("y", "axes"), ("ys",)),
             Node("MatMul", "fc", ("ys", "fc_w"), ("m",)),
             Node("Add", "bias", ("m", "fc_b"), ("logits",)),
             Node("Softmax", "sm", ("logits",), ("p",), {"axis": -1}),
             Node("GRU", "gru", ("x", "Wg", "Rg", "Bg"), ("yg",),
                  {"hidden_size": H, "direction": "bidirectional", "linear_before_reset": 1})]
    return Graph([ValueInfo("x", "float32", (T, "batch", I))],
                 [ValueInfo("p", "float32", (T, "batch", O)), ValueInfo("yh"), ValueInfo("yg")],
                 nodes, inits, {"": 17}, "tiny_rnn"), {"x": f32(T, 2, I)}


def _float_cnn_graph(rng):
    """A small CNN touching every static int8 op: conv (dense, 1x1, depthwise), add, mul,
    concat, LUT activations, max/average/global pooling, gemm."""
    from qengine.graph import Graph, Node, ValueInfo
    f32 = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    inits = {"w1": f32(8, 3, 3, 3), "b1": f32(8), "w2": f32(8, 8, 1, 1), "b2": f32(8),
             "wd": f32(16, 1, 3, 3), "bd": f32(16), "fw": f32(16, 10), "fb": f32(10)}
    nodes = [Node("Conv", "c1", ("x", "w1", "b1"), ("c1",), {"pads": [1, 1, 1, 1]}),
             Node("Relu", "r1", ("c1",), ("r1",)),
             Node("Conv", "c2", ("r1", "w2", "b2"), ("c2",)),
             Node("Add", "add", ("r1", "c2"), ("a",)),
             Node("Sigmoid", "sig", ("a",), ("s",)),
             Node("Mul", "mul", ("a", "s"), ("m",)),
             Node("AveragePool", "ap", ("m",), ("ap",), {"kernel_shape": [2, 2],
                                                        "strides": [2, 2]}),
             Node("MaxPool", "mp", ("m",), ("mp",), {"kernel_shape": [2, 2], "strides": [2, 2]}),
             Node("Concat", "cat", ("ap", "mp"), ("cat",), {"axis": 1}),
             Node("Conv", "dw", ("cat", "wd", "bd"), ("dw",), {"group": 16,
                                                               "pads": [1, 1, 1, 1]}),
             Node("HardSwish", "hs", ("dw",), ("hs",)),
             Node("GlobalAveragePool", "gap", ("hs",), ("g",)),
             Node("Flatten", "fl", ("g",), ("f",)),
             Node("Gemm", "fc", ("f", "fw", "fb"), ("logits",))]
    return Graph([ValueInfo("x", "float32", ("batch", 3, 8, 8))],
                 [ValueInfo("logits", "float32", ("batch", 10))], nodes, inits, {"": 17},
                 "tiny_cnn"), {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}


def build_corpus(directory) -> list[Base]:
    """Write the base engine files and their inputs into `directory`; deterministic."""
    import qengine
    from qengine.tools.demo_cnn import load_cnn_demo
    from qengine.workflows.dynamic import quantize_dynamic
    from qengine.workflows.ptq import StaticQuantConfig, quantize_static
    directory = Path(directory)
    rng = np.random.default_rng(20240607)
    rnn, rnn_x = _float_lstm_graph(rng)
    cnn, cnn_x = _float_cnn_graph(rng)
    digits, calib, test_x, _ = load_cnn_demo()
    digits_x = {"image": test_x[:2]}
    cnn_calib = {"x": rng.standard_normal((16, 3, 8, 8)).astype(np.float32)}
    graphs = {
        "rnn_dynamic": (quantize_dynamic(rnn), rnn_x),           # DynamicQuantLSTM/GRU/Linear
        "digits_static": (quantize_static(digits, {"image": calib[:32]},
                                          StaticQuantConfig(method="minmax")), digits_x),
        "cnn_static": (quantize_static(cnn, cnn_calib), cnn_x),  # QAdd, QMul, QConcat, QLut...
        "cnn_dynamic": (quantize_dynamic(cnn), cnn_x),           # DynamicQuantConv
        "rnn_float": (rnn, rnn_x),
        "digits_float": (digits, digits_x),
    }
    corpus = []
    for name, (graph, feeds) in graphs.items():
        path = directory / f"{name}.qe"
        qengine.save(graph, path)
        inputs = {}
        for k, v in feeds.items():
            inputs[k] = directory / f"{name}.{k}.npy"
            np.save(inputs[k], v, allow_pickle=False)
        corpus.append(Base(name, path.read_bytes(), inputs))
    return corpus


# ---- the file as structure --------------------------------------------------------------------
DELETE = object()  # in an entry patch: drop that key


@dataclass
class Doc:
    """A parsed engine file that mutators edit; `blob()` writes it back.

    Tensors keep their bytes, so a mutation that changes a shape or dtype *together with* the
    bytes yields a valid safetensors file (offsets are recomputed), reaching the graph checks.
    `patch` holds deliberate inconsistencies applied after the layout: {tensor: {key: value or
    callable(old value) or DELETE}}.
    """
    tensors: dict[str, dict]         # name → {"dtype": tag, "shape": list, "bytes": bytes}
    meta: dict
    graph: Any                       # parsed graph JSON; serialised into meta["graph"]
    patch: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    graph_text: str | None = None    # replaces the serialised graph when set
    json_inf: bool = False           # write float infinities as 1e999 (valid JSON, parses to inf)

    @classmethod
    def parse(cls, data: bytes) -> "Doc":
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        meta = header.pop("__metadata__")
        body = data[8 + n:]
        tensors = {}
        for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            b, end = e["data_offsets"]
            tensors[name] = {"dtype": e["dtype"], "shape": list(e["shape"]),
                             "bytes": bytes(body[b:end])}
        return cls(tensors, meta, json.loads(meta["graph"]))

    def _dumps(self, obj) -> str:
        text = json.dumps(obj, allow_nan=True)
        if self.json_inf:
            text = text.replace("-Infinity", "-1e999").replace("Infinity", "1e999")
        return text

    def blob(self) -> bytes:
        entries, chunks, off = {}, [], 0
        for name, t in self.tensors.items():
            entries[name] = {"dtype": t["dtype"], "shape": t["shape"],
                             "data_offsets": [off, off + len(t["bytes"])]}
            chunks.append(t["bytes"])
            off += len(t["bytes"])
        for name, changes in self.patch.items():
            e = entries.setdefault(name, {})
            for k, v in changes.items():
                if v is DELETE:
                    e.pop(k, None)
                elif callable(v):        # an edit of the computed offsets
                    if isinstance(e.get(k), list) and len(e[k]) == 2:
                        e[k] = v(e[k])
                else:
                    e[k] = v
        meta = dict(self.meta)
        if "graph" in meta:
            meta["graph"] = self.graph_text if self.graph_text is not None else \
                self._dumps(self.graph)
        header = {"__metadata__": meta, **entries, **self.extra}
        raw = self._dumps(header).encode("utf-8", "surrogatepass")
        raw += b" " * (-(8 + len(raw)) % 8)
        return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


# ---- interesting values -----------------------------------------------------------------------
INTS = [0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, -128, 127, 2 ** 15, 2 ** 31 - 1, 2 ** 31,
        -2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 62, 2 ** 63 - 1, 2 ** 63, -2 ** 63, 2 ** 64, 10 ** 30]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 1e-38, 1e-8, 1e38, 3.4e38, 1e300, math.inf,
          -math.inf, math.nan, 255.0, 2.0 ** 31]
STRINGS = ["", "relu", "clip", "forward", "reverse", "bidirectional", "NOTSET", "SAME_UPPER",
           "VALID", "constant", "reflect", "float32", "uint8", "int64", "bool", "x" * 300,
           "\u0000", "\u00f1", "\ud800", "Relu"]
JUNK = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [[0]], {"a": 1}, 2 ** 64, "a" * 1000,
        [None], [1.5, "x"]]
SAFETENSORS_TAGS = ["F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64",
                    "BOOL"]
TAG_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
             "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "u1"}


def _int(r: random.Random):
    return r.choice(INTS) if r.random() < 0.5 else r.randint(-3, 12)


def _value_of_kind(r: random.Random, kind: str):
    """A value of an op attribute kind (base.ATTRS), usually extreme; sometimes of the wrong
    kind."""
    if r.random() < 0.15:
        return r.choice(JUNK)
    one = {"int": lambda: _int(r), "float": lambda: r.choice(FLOATS),
           "string": lambda: r.choice(STRINGS)}
    if kind in one:
        return one[kind]()
    elem = one[kind[:-1]]
    return [elem() for _ in range(r.choice([0, 1, 2, 2, 3, 4, 4, 6, 9]))]


def _fill(r: random.Random, tag: str, count: int) -> bytes:
    """`count` elements of dtype `tag`: zeros, random bytes, or extremes of the dtype."""
    dt = np.dtype(TAG_DTYPE[tag])
    style = r.choice(["zeros", "random", "extremes", "small"])
    if style == "zeros" or count == 0:
        return bytes(count * dt.itemsize)
    if style == "random":
        return r.randbytes(count * dt.itemsize)
    rng = np.random.default_rng(r.getrandbits(32))
    if dt.kind == "f":
        pool = np.array([0, -0.0, 1, -1, np.nan, np.inf, -np.inf, 1e-45, 65504, 3.4e38, 1e-8],
                        np.float64)
        if style == "small":
            return rng.standard_normal(count).astype(dt).tobytes()
        with np.errstate(over="ignore"):
            return rng.choice(pool, count).astype(dt).tobytes()
    info = np.iinfo(dt)
    if style == "small":
        return rng.integers(max(info.min, -4), min(info.max, 4), count, endpoint=True) \
            .astype(dt).tobytes()
    return rng.choice(np.array([info.min, info.max, 0, 1], dt), count).tobytes()


# ---- mutators: each edits a Doc, returns a short description ----------------------------------
def _tensor(doc: Doc, r: random.Random) -> str | None:
    return r.choice(sorted(doc.tensors)) if doc.tensors else None


def _nodes(doc: Doc):
    g = doc.graph
    return g.get("nodes") if isinstance(g, dict) and isinstance(g.get("nodes"), list) else []


def _all_values(doc: Doc) -> list[str]:
    vals = set(doc.tensors)
    g = doc.graph if isinstance(doc.graph, dict) else {}
    for key in ("inputs", "outputs"):
        for v in g.get(key) or []:
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                vals.add(v["name"])
    for n in _nodes(doc):
        if isinstance(n, dict):
            for key in ("inputs", "outputs"):
                vals.update(x for x in n.get(key) or [] if isinstance(x, str))
    return sorted(vals)


def m_tensor_dtype(doc, r):
    """Header: a tensor's dtype tag changes, the bytes do not (size mismatch or reinterpret)."""
    t = _tensor(doc, r)
    if t is None:
        return None
    tag = r.choice(SAFETENSORS_TAGS + ["BF16", "F8_E4M3", "f32", "", 5, None])
    doc.patch.setdefault(t, {})["dtype"] = tag
    return f"dtype of {t!r} -> {tag!r}"


def m_tensor_shape(doc, r):
    """Header: a tensor's shape changes, its offsets do not (huge, negative, junk dims)."""
    t = _tensor(doc, r)
    if t is None:
        return None
    shape = list(doc.tensors[t]["shape"])
    how = r.choice(["dim", "dim", "append", "drop", "junk", "rank33", "huge"])
    if how == "dim" and shape:
        shape[r.randrange(len(shape))] = _int(r)
    elif how == "append":
        shape.append(_int(r))
    elif how == "drop" and shape:
        shape.pop(r.randrange(len(shape)))
    elif how == "junk":
        shape = r.choice(JUNK + [[1.0], [True], ["3"], [-1]])
    elif how == "rank33":
        shape = [1] * 33
    else:
        shape = [2 ** 40, 2 ** 40] if r.random() < 0.5 else [2 ** 62, 4]
    doc.patch.setdefault(t, {})["shape"] = shape
    return f"shape of {t!r} -> {str(shape)[:60]}"


def m_tensor_offsets(doc, r):
    """Header: data_offsets shifted, swapped, huge, negative or junk."""
    t = _tensor(doc, r)
    if t is None:
        return None
    k = r.choice([1, -1, 2, 8, -8, 2 ** 32, 2 ** 63, 10 ** 20])
    edits = {"shift_begin": lambda o: [o[0] + k, o[1]],
             "shift_end": lambda o: [o[0], o[1] + k],
             "shift_both": lambda o: [o[0] + k, o[1] + k],
             "swap": lambda o: [o[1], o[0]],
             "huge": lambda o: [o[0], 2 ** 64 + o[1]],
             "three": lambda o: [o[0], o[1], o[1]],
             "float": lambda o: [float(o[0]), float(o[1])],
             "junk": lambda o: r.choice(JUNK),
             "delete": DELETE}
    how = r.choice(sorted(edits))
    doc.patch.setdefault(t, {})["data_offsets"] = edits[how]
    return f"data_offsets of {t!r}: {how} ({k})"


def m_tensor_entry(doc, r):
    """Header: an extra key in a tensor entry, a dropped key, a non-object entry or junk at the
    top level."""
    how = r.choice(["extra_key", "drop_key", "not_object", "top_junk"])
    t = _tensor(doc, r)
    if how == "top_junk" or t is None:
        doc.extra[r.choice(["__metadata2__", "x", ""])] = r.choice(JUNK)
        return "junk entry in the header"
    if how == "extra_key":
        doc.patch.setdefault(t, {})[r.choice(["offsets", "Dtype", "quant"])] = r.choice(JUNK)
    elif how == "drop_key":
        doc.patch.setdefault(t, {})[r.choice(["dtype", "shape", "data_offsets"])] = DELETE
    else:
        doc.patch[t] = {}
        doc.extra[t] = r.choice(JUNK)
    return f"entry of {t!r}: {how}"


def m_tensor_resize(doc, r):
    """Consistent: a tensor gets another shape and matching bytes (valid safetensors), so the op
    constructors' weight-shape checks and the kernels see it."""
    t = _tensor(doc, r)
    if t is None:
        return None
    shape = list(doc.tensors[t]["shape"])
    how = r.choice(["grow", "shrink", "zero", "permute", "drop", "add", "scalar"])
    if how == "grow" and shape:
        shape[r.randrange(len(shape))] += r.choice([1, 3, 16])
    elif how == "shrink" and shape:
        i = r.randrange(len(shape))
        shape[i] = max(0, shape[i] - r.choice([1, 2]))
    elif how == "zero" and shape:
        shape[r.randrange(len(shape))] = 0
    elif how == "permute":
        r.shuffle(shape)
    elif how == "drop" and shape:
        shape.pop(r.randrange(len(shape)))
    elif how == "add":
        shape.insert(r.randrange(len(shape) + 1), r.choice([1, 2]))
    else:
        shape = []
    count = math.prod(shape)
    if count > 1 << 20:
        return None
    tag = doc.tensors[t]["dtype"]
    doc.tensors[t]["shape"] = shape
    doc.tensors[t]["bytes"] = _fill(r, tag, count)
    return f"resize {t!r} -> {shape} ({how})"


def m_tensor_retype(doc, r):
    """Consistent: a tensor gets another dtype (same shape, new bytes): int8 weights as uint8 or
    float, float scales as ints..."""
    t = _tensor(doc, r)
    if t is None:
        return None
    tag = r.choice(SAFETENSORS_TAGS)
    doc.tensors[t]["dtype"] = tag
    doc.tensors[t]["bytes"] = _fill(r, tag, math.prod(doc.tensors[t]["shape"]))
    return f"retype {t!r} -> {tag}"


def m_tensor_values(doc, r):
    """Consistent: some elements of a tensor become NaN/Inf/denormal/extremes (scales, weights,
    biases, shape constants)."""
    cands = [k for k, t in doc.tensors.items() if t["bytes"]]
    if not cands:
        return None
    t = r.choice(sorted(cands))
    tag = doc.tensors[t]["dtype"]
    dt = np.dtype(TAG_DTYPE[tag])
    arr = np.frombuffer(bytearray(doc.tensors[t]["bytes"]), dt)
    if dt.kind == "f":
        pool = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 1e-38, 3.4e38, -3.4e38, 1e-12, 1e12,
                65504.0]
    elif tag == "BOOL":
        pool = [0, 1, 2, 255]             # a bool byte that is neither 0 nor 1
    else:
        info = np.iinfo(dt)
        pool = [info.min, info.max, 0, -1 if info.min < 0 else 1, 2 ** 31 - 1
                if info.max >= 2 ** 31 else info.max]
    k = r.choice([1, 1, 2, arr.size])
    idx = [r.randrange(arr.size) for _ in range(k)] if k < arr.size else range(arr.size)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in idx:
            arr[i] = r.choice(pool)
    doc.tensors[t]["bytes"] = arr.tobytes()
    return f"values of {t!r}: {k} element(s)"


def m_tensor_drop_add(doc, r):
    """A tensor disappears (or one is added), with or without the graph's initializer list."""
    g = doc.graph if isinstance(doc.graph, dict) else {}
    inits = g.get("initializers") if isinstance(g.get("initializers"), list) else None
    if r.random() < 0.5 and doc.tensors:
        t = _tensor(doc, r)
        del doc.tensors[t]
        if inits is not None and t in inits and r.random() < 0.7:
            inits.remove(t)
        return f"drop tensor {t!r}"
    name = r.choice(["extra", "x", "W"] + sorted(doc.tensors)[:3])
    tag = r.choice(SAFETENSORS_TAGS)
    shape = r.choice([[], [1], [3], [2, 2]])
    doc.tensors[name + ("" if r.random() < 0.3 else "_new")] = {
        "dtype": tag, "shape": shape, "bytes": _fill(r, tag, math.prod(shape))}
    if inits is not None and r.random() < 0.7:
        inits.append(name)
    return f"add tensor {name!r}"


def m_tensor_rename(doc, r):
    """A tensor is renamed in the header only, or in the header and the graph's list."""
    t = _tensor(doc, r)
    if t is None:
        return None
    new = r.choice(["", t + "_", t.upper(), "__metadata__x", "\u00e9", t * 2])
    doc.tensors[new] = doc.tensors.pop(t)
    g = doc.graph if isinstance(doc.graph, dict) else {}
    if isinstance(g.get("initializers"), list) and t in g["initializers"] and r.random() < 0.5:
        g["initializers"] = [new if x == t else x for x in g["initializers"]]
    return f"rename tensor {t!r} -> {new!r}"


def m_metadata(doc, r):
    """Metadata: format, version, producer and graph deleted, changed or of the wrong type."""
    key = r.choice(["format", "format_version", "format_version", "producer", "graph", "extra"])
    how = r.choice(["delete", "string", "junk"])
    if how == "delete":
        doc.meta.pop(key, None)
    elif how == "string":
        doc.meta[key] = r.choice(["", "0", "2", "1.0", " 1", "1\u0000", "qengine.engine",
                                  "safetensors", "{}", "[]", "null"])
        if key == "graph":
            doc.graph_text = doc.meta[key]
    else:
        doc.meta[key] = r.choice(JUNK)
    return f"metadata {key}: {how}"


def m_node_op_type(doc, r):
    """A node becomes another registered op (its inputs/attributes then rarely fit) or an
    unknown one."""
    from qengine.ops import registered_ops
    nodes = _nodes(doc)
    if not nodes:
        return None
    n = r.choice(nodes)
    if not isinstance(n, dict):
        return None
    new = r.choice(registered_ops()) if r.random() < 0.85 else r.choice(
        ["", "relu", "Custom", "__import__", 7, None])
    n["op_type"] = new
    return f"op_type of {n.get('name')!r} -> {new!r}"


def m_node_attr(doc, r):
    """An attribute of a node set to an extreme value of its kind (from the op class's ATTRS),
    removed, or an unknown one added."""
    from qengine.ops import get_op_class, is_registered
    nodes = [n for n in _nodes(doc) if isinstance(n, dict) and isinstance(n.get("attrs"), dict)]
    if not nodes:
        return None
    n = r.choice(nodes)
    spec = dict(get_op_class(n["op_type"]).ATTRS) if isinstance(n["op_type"], str) and \
        is_registered(n["op_type"]) else {}
    how = r.choice(["set", "set", "set", "set", "remove", "unknown"])
    if how == "remove" and n["attrs"]:
        key = r.choice(sorted(n["attrs"]))
        del n["attrs"][key]
        return f"remove attr {key!r} of {n['name']!r}"
    if how == "unknown" or not spec:
        key = r.choice(["bogus", "alpha", "axis", ""])
        n["attrs"][key] = r.choice(JUNK + INTS)
        return f"attr {key!r} added to {n['name']!r}"
    key = r.choice(sorted(spec))
    n["attrs"][key] = _value_of_kind(r, spec[key][0])
    if isinstance(n["attrs"][key], float) and math.isinf(n["attrs"][key]):
        doc.json_inf = True
    return f"attr {key!r} of {n['name']!r} -> {str(n['attrs'][key])[:50]}"


def m_node_attr_nudge(doc, r):
    """An attribute nudged to a nearby plausible value (stride 1 -> 2, pads +1, axis -1 -> 2,
    a flag flipped, a scale halved...), so that the mutant often still builds and runs and the
    kernels see geometries and parameters the corpus does not have."""
    from qengine.ops import get_op_class, is_registered
    nodes = [n for n in _nodes(doc) if isinstance(n, dict) and isinstance(n.get("attrs"), dict)
             and isinstance(n.get("op_type"), str) and is_registered(n["op_type"])]
    if not nodes:
        return None
    n = r.choice(nodes)
    spec = get_op_class(n["op_type"]).ATTRS
    if not spec:
        return None
    key = r.choice(sorted(spec))
    kind, default = spec[key]
    old = n["attrs"].get(key, default)

    def nudge_int(v):
        return v + r.choice([-2, -1, 1, 2]) if r.random() < 0.7 else r.choice([0, 1, 2, 3, -1])

    def nudge_float(v):
        return v * r.choice([0.5, 2.0, 0.0, -1.0, 1e-6, 1e6]) if r.random() < 0.8 else \
            r.choice([0.0, 1.0, 6.0, 1e-3])
    if kind == "int":
        new = nudge_int(old if isinstance(old, int) else 0)
    elif kind == "float":
        new = nudge_float(old if isinstance(old, (int, float)) else 1.0)
    elif kind == "string":
        new = r.choice(STRINGS[:13])
    elif isinstance(old, list) and old:
        new = list(old)
        i = r.randrange(len(new))
        new[i] = nudge_int(new[i]) if kind == "ints" else nudge_float(new[i]) \
            if kind == "floats" else r.choice(STRINGS[:13])
    else:
        new = [r.choice([1, 2, 3])] * r.choice([1, 2, 4]) if kind == "ints" else \
            [r.choice([0.5, 1.0])] * r.choice([1, 2]) if kind == "floats" else ["relu"]
    n["attrs"][key] = new
    return f"attr {key!r} of {n['name']!r}: {str(old)[:30]} -> {str(new)[:30]}"


def m_node_io(doc, r):
    """A node's inputs/outputs: swapped for another value, emptied, added, dropped, duplicated."""
    nodes = [n for n in _nodes(doc) if isinstance(n, dict)]
    if not nodes:
        return None
    n = r.choice(nodes)
    key = r.choice(["inputs", "inputs", "outputs"])
    vals = n.get(key)
    if not isinstance(vals, list):
        return None
    how = r.choice(["other", "other", "empty", "new", "drop", "add", "dup", "junk"])
    names = _all_values(doc)
    i = r.randrange(len(vals)) if vals else None
    if how == "other" and vals:
        vals[i] = r.choice(names)
    elif how == "empty" and vals:
        vals[i] = ""
    elif how == "new" and vals:
        vals[i] = "undefined_value"
    elif how == "drop" and vals:
        vals.pop(i)
    elif how == "add":
        vals.append(r.choice(names + [""]))
    elif how == "dup" and vals:
        vals.append(vals[i])
    elif how == "junk" and vals:
        vals[i] = r.choice(JUNK)
    return f"{key} of {n.get('name')!r}: {how}"


def m_edge_cycle(doc, r):
    """Graph edges: node i reads the output of a node at or after it (a cycle or an
    out-of-order read)."""
    nodes = [n for n in _nodes(doc) if isinstance(n, dict) and n.get("inputs")
             and isinstance(n.get("inputs"), list)]
    if len(nodes) < 1:
        return None
    i = r.randrange(len(nodes))
    later = [o for n in nodes[i:] for o in (n.get("outputs") or []) if isinstance(o, str) and o]
    if not later:
        return None
    n = nodes[i]
    n["inputs"][r.randrange(len(n["inputs"]))] = r.choice(later)
    return f"{n.get('name')!r} reads a later node's output"


def m_node_list(doc, r):
    """Node list: swap two nodes, duplicate, drop, rename (to a duplicate name) or reverse."""
    nodes = _nodes(doc)
    if not nodes:
        return None
    how = r.choice(["swap", "dup", "drop", "rename", "reverse", "junk"])
    if how == "swap" and len(nodes) > 1:
        i, j = r.sample(range(len(nodes)), 2)
        nodes[i], nodes[j] = nodes[j], nodes[i]
    elif how == "dup":
        nodes.insert(r.randrange(len(nodes) + 1), json.loads(json.dumps(r.choice(nodes))))
    elif how == "drop":
        nodes.pop(r.randrange(len(nodes)))
    elif how == "rename" and len(nodes) > 1 and isinstance(nodes[0], dict):
        nodes[0]["name"] = r.choice([nodes[-1].get("name") if isinstance(nodes[-1], dict)
                                     else "", "", None, 1])
    elif how == "reverse":
        nodes.reverse()
    else:
        nodes[r.randrange(len(nodes))] = r.choice(JUNK)
    return f"node list: {how}"


def m_graph_io(doc, r):
    """Graph inputs/outputs: dtype, shape (huge, negative, symbolic, junk dims), name; dropped,
    added (an intermediate value as an output), duplicated."""
    g = doc.graph
    if not isinstance(g, dict):
        return None
    key = r.choice(["inputs", "outputs"])
    vis = g.get(key)
    if not isinstance(vis, list) or not vis:
        return None
    i = r.randrange(len(vis))
    v = vis[i]
    how = r.choice(["dtype", "shape", "dim", "name", "drop", "add", "dup", "junk"])
    if how == "dtype" and isinstance(v, dict):
        v["dtype"] = r.choice(["float32", "float64", "float16", "int64", "int8", "uint8",
                               "bool", "object", "str", "", None])
    elif how == "shape" and isinstance(v, dict):
        v["shape"] = r.choice([None, [], [1], ["batch"], [2 ** 40], [-1, 3], [None, None, None],
                               [1.5], "x", [2 ** 63, 2 ** 63], [0, 0, 0, 0]])
    elif how == "dim" and isinstance(v, dict) and isinstance(v.get("shape"), list) and v["shape"]:
        v["shape"][r.randrange(len(v["shape"]))] = r.choice(
            [0, 1, 2, 3, 2 ** 31, 2 ** 62, -1, "batch", "other", None, 1.0, True, [1]])
    elif how == "name" and isinstance(v, dict):
        v["name"] = r.choice(_all_values(doc) + ["", "nope", None, 3])
    elif how == "drop":
        vis.pop(i)
    elif how == "add":
        vis.append({"name": r.choice(_all_values(doc)), "dtype": "float32", "shape": None})
    elif how == "dup":
        vis.append(json.loads(json.dumps(v)))
    else:
        vis[i] = r.choice(JUNK)
    return f"graph {key}[{i}]: {how}"


def m_graph_fields(doc, r):
    """Graph: name, opset, initializer list: junk, deleted keys, extra keys."""
    g = doc.graph
    if not isinstance(g, dict):
        return None
    how = r.choice(["opset", "opset", "name", "inits", "delete", "extra", "top_junk"])
    if how == "opset":
        g["opset"] = r.choice([{"": 1}, {"": 0}, {"": -1}, {"": 2 ** 63}, {"": "17"},
                               {"": 17, "com.microsoft": 1}, {"": True}, {}, [], None])
    elif how == "name":
        g["name"] = r.choice(JUNK)
    elif how == "inits":
        g["initializers"] = r.choice([[], g.get("initializers", [])[:1],
                                      (g.get("initializers") or []) * 2, None, "W", [1]])
    elif how == "delete" and g:
        g.pop(r.choice(sorted(g)))
    elif how == "extra":
        g[r.choice(["evil", "value_info", "version"])] = r.choice(JUNK)
    else:
        doc.graph = r.choice(JUNK + [[g]])
    return f"graph fields: {how}"


def m_json_deep(doc, r):
    """Any value anywhere in the graph JSON replaced by junk of another type."""
    paths = []

    def walk(x, path):
        paths.append(path)
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, path + (k,))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, path + (i,))
    walk(doc.graph, ())
    path = r.choice(paths[1:] or [()])
    if not path:
        doc.graph = r.choice(JUNK)
        return "graph JSON replaced"
    parent = doc.graph
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = r.choice(JUNK)
    return f"graph JSON at {list(path)[:6]} -> junk"


def m_graph_text(doc, r):
    """The graph string itself: a character inserted, deleted or replaced (JSON syntax
    errors, escapes, deep nesting)."""
    text = doc._dumps(doc.graph)
    i = r.randrange(len(text) + 1)
    ins = r.choice(["{", "}", "[", "]", ",", ":", '"', "\\", "\\u0000", "\\ud800", "1e999",
                    "NaN", "-", "0", "\u00ff", "[" * 3000])
    how = r.choice(["insert", "delete", "replace"])
    if how == "insert":
        text = text[:i] + ins + text[i:]
    elif how == "delete":
        text = text[:i] + text[i + r.randint(1, 8):]
    else:
        text = text[:i] + ins + text[i + len(ins):]
    doc.graph_text = text
    return f"graph text: {how} at {i}"


DOC_MUTATORS: dict[str, Callable] = {
    "tensor_dtype": m_tensor_dtype, "tensor_shape": m_tensor_shape,
    "tensor_offsets": m_tensor_offsets, "tensor_entry": m_tensor_entry,
    "tensor_resize": m_tensor_resize, "tensor_retype": m_tensor_retype,
    "tensor_values": m_tensor_values, "tensor_drop_add": m_tensor_drop_add,
    "tensor_rename": m_tensor_rename, "metadata": m_metadata, "node_op_type": m_node_op_type,
    "node_attr": m_node_attr, "node_attr_nudge": m_node_attr_nudge, "node_io": m_node_io,
    "edge_cycle": m_edge_cycle, "node_list": m_node_list, "graph_io": m_graph_io,
    "graph_fields": m_graph_fields, "json_deep": m_json_deep, "graph_text": m_graph_text,
}
# how often each is drawn: the consistent tensor edits and attributes reach deepest
WEIGHTS = {"tensor_values": 4, "tensor_resize": 3, "node_attr": 4, "node_attr_nudge": 5,
           "tensor_retype": 2, "node_io": 2, "graph_io": 2}


def _raw(data: bytes, r: random.Random) -> tuple[bytes, str]:
    """Byte-level mutations of the serialised file."""
    if len(data) < 16:
        return data + r.randbytes(8), "bytes appended"
    b = bytearray(data)
    # an earlier raw edit may have made the length field lie: keep n inside the file
    n = max(1, min(struct.unpack("<Q", data[:8])[0], len(b) - 8))
    how = r.choice(["flip_header", "flip_header", "flip_data", "truncate", "append", "length"])
    if how == "flip_header" or (how == "flip_data" and len(b) <= 8 + n):
        for _ in range(r.randint(1, 4)):
            b[r.randrange(8, 8 + n)] = r.randrange(256)
        return bytes(b), "bytes flipped in the header"
    if how == "flip_data":
        for _ in range(r.randint(1, 16)):
            b[r.randrange(8 + n, len(b))] ^= 1 << r.randrange(8)
        return bytes(b), "bits flipped in the tensor data"
    if how == "truncate":
        cut = r.choice([r.randrange(len(b)), 8 + n + r.randrange(max(1, len(b) - 8 - n)),
                        r.randrange(16), len(b) - 1])
        return bytes(b[:cut]), f"truncated at {cut}"
    if how == "append":
        return bytes(b) + r.randbytes(r.choice([1, 7, 8, 4096])), "bytes appended"
    k = r.choice([n + 1, n - 1, n + 8, n - 8, 0, 2 ** 63, 2 ** 64 - 1, len(b), 100 * 2 ** 20 + 1])
    b[:8] = struct.pack("<Q", k % 2 ** 64)
    return bytes(b), f"header length -> {k}"


def make_case(corpus: list[Base], seed: int, index: int) -> tuple[Base, bytes, list[str]]:
    """The mutant for case (seed, index): (its base, its bytes, what was done)."""
    r = random.Random(f"{seed}/{index}")
    base = corpus[index % len(corpus)]
    doc = Doc.parse(base.data)
    names = sorted(DOC_MUTATORS)
    weights = [WEIGHTS.get(k, 1) for k in names]
    done = []
    for _ in range(r.choice([1, 1, 1, 2, 2, 3])):
        if r.random() < 0.12:
            done.append("raw")
            continue
        name = r.choices(names, weights)[0]
        try:
            what = DOC_MUTATORS[name](doc, r)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError):
            what = None   # an earlier mutation left junk where this one expects structure
        if what:
            done.append(f"{name}: {what}")
    data = doc.blob()
    for i, d in enumerate(done):
        if d == "raw":
            data, what = _raw(data, r)
            done[i] = f"raw: {what}"
    if not done:  # every mutator declined: flip a header byte
        data, what = _raw(data, r)
        done.append(f"raw: {what}")
    return base, data, done


# ---- the worker (runs in a subprocess) ---------------------------------------------------------
def _summary(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def _check_cli(argv) -> tuple[str, str]:
    """Run the CLI in-process; ("ok"|"error"|"bad", detail). A raw traceback (an exception
    escaping main) or an error that is not one clean line with exit code 2 is "bad"."""
    from qengine import cli
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    except Exception as e:
        return "bad", f"traceback: {_summary(e)}\n{traceback.format_exc()[-2000:]}"
    return _judge_cli(rc, err.getvalue())


def _judge_cli(rc, stderr: str) -> tuple[str, str]:
    lines = stderr.strip().splitlines()
    if rc == 0 and "Traceback" not in stderr:
        return "ok", ""
    if rc == 2 and len(lines) == 1 and lines[0].startswith("qengine: error: ") \
            and len(lines[0]) > len("qengine: error: ") + 5:
        return "error", ""
    return "bad", f"rc={rc} stderr={stderr[-1500:]!r}"


def worker_main(threads: int) -> None:
    """Read one JSON request per line on stdin, answer one JSON line on the original stdout.
    Anything else the process prints goes to stderr (a log file), not into the protocol."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    import warnings
    warnings.simplefilter("ignore")      # NaN weights make NumPy warn; not what we test
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        import resource                  # a huge allocation must fail, not swap the machine
        gib = int(os.environ.get("QENGINE_FUZZ_MEM_GIB", "4"))
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    import qengine
    from qengine import QEngineError
    qengine.set_num_threads(threads)
    feeds_cache: dict[str, dict] = {}
    for line in sys.stdin:
        req = json.loads(line)
        res = {"case": req["case"]}
        if req.get("selftest") == "crash":      # proves the parent notices (tests only)
            os.abort()
        if req.get("selftest") == "hang":
            time.sleep(3600)
        feeds = feeds_cache.get(req["base"])
        if feeds is None:
            feeds = feeds_cache[req["base"]] = {k: np.load(v) for k, v in req["inputs"].items()}
        try:
            sess = qengine.load(req["path"])
        except QEngineError as e:
            res["outcome"], res["detail"] = "rejected", _summary(e)
            res["error"] = type(e).__name__
        except Exception as e:
            res["outcome"] = "bad_exception"
            res["detail"] = f"load: {_summary(e)}\n{traceback.format_exc()[-2500:]}"
        else:
            try:
                sess.run(feeds)
                sess.run(feeds)           # again: the memory plan's buffers are reused
                res["outcome"] = "ran"
            except QEngineError as e:
                res["outcome"], res["detail"] = "run_error", _summary(e)
                res["error"] = type(e).__name__
            except Exception as e:
                res["outcome"] = "bad_exception"
                res["detail"] = f"run: {_summary(e)}\n{traceback.format_exc()[-2500:]}"
            del sess
        if req.get("cli"):
            cli = {}
            out = str(Path(req["path"]).with_suffix(".out.npz"))
            ins = [a for k, v in req["inputs"].items() for a in ("--input", f"{k}={v}")]
            for name, argv in (("inspect", ["inspect", req["path"]]),
                               ("inspect_json", ["inspect", "--json", req["path"]]),
                               ("run", ["run", req["path"], *ins, "-o", out])):
                cli[name] = _check_cli(argv)
            res["cli"] = cli
        proto.write(json.dumps(res) + "\n")
    # under scripts/sanitize.sh (leak_check_at_exit=0): one leak check of everything the cases
    # ran, reported to ASan's log_path like the pytest session's
    import ctypes
    import gc
    check = getattr(ctypes.CDLL(None), "__lsan_do_recoverable_leak_check", None)
    if check is not None:
        gc.collect()
        check()


# ---- the driver --------------------------------------------------------------------------------
@dataclass
class Report:
    outcomes: Counter = field(default_factory=Counter)     # rejected / ran / run_error / failures
    errors: Counter = field(default_factory=Counter)       # QEngineError subclass names
    cli: Counter = field(default_factory=Counter)           # in-process CLI: ok / error / bad
    cli_subprocess: Counter = field(default_factory=Counter)
    mutators: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # (case, base, mutations, outcome, detail)
    seconds: float = 0.0

    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        n = sum(self.outcomes.values())
        out = [f"{n} cases in {self.seconds:.1f} s: " + ", ".join(
            f"{k} {v}" for k, v in sorted(self.outcomes.items(), key=lambda kv: -kv[1]))]
        out.append("  errors raised: " + ", ".join(f"{k} {v}" for k, v in
                                                   self.errors.most_common()))
        out.append("  CLI in-process (inspect, inspect --json, run): " + ", ".join(
            f"{k} {v}" for k, v in sorted(self.cli.items())))
        if self.cli_subprocess:
            out.append("  CLI subprocess (inspect, run): " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.cli_subprocess.items())))
        out.append("  mutators: " + ", ".join(f"{k} {v}" for k, v in
                                              sorted(self.mutators.items())))
        out.append(f"  FAILURES: {len(self.failures)}")
        for case, base, muts, outcome, detail in self.failures[:50]:
            out.append(f"  - case {case} ({base}; {' | '.join(muts)}): {outcome}: "
                       f"{detail.splitlines()[0] if detail else ''}")
        return out


class _Worker:
    def __init__(self, workdir: Path, threads: int, env: dict):
        self.log = open(workdir / f"worker-{time.monotonic_ns()}.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads",
             str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=env, text=True, bufsize=1)

    def ask(self, req: dict, timeout: float) -> dict | None:
        """The answer, or None when the worker died or did not answer in time (then it is
        stopped; `self.proc.returncode` tells which)."""
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return None

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cli_subprocess(path: Path, base: Base, env: dict, timeout: float) -> list[tuple[str, str]]:
    """`python -m qengine inspect` and `run` on the mutant, judged like the in-process CLI."""
    out = []
    ins = [a for k, v in base.inputs.items() for a in ("--input", f"{k}={v}")]
    for argv in (["inspect", str(path)], ["run", str(path), *ins, "-o",
                                          str(path.with_suffix(".sub.npz"))]):
        try:
            p = subprocess.run([sys.executable, "-m", "qengine", *argv], env=env,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            out.append(("bad", f"{argv[0]}: no answer in {timeout} s"))
            continue
        verdict, detail = _judge_cli(p.returncode, p.stderr)
        out.append((verdict, f"{argv[0]}: {detail}" if detail else ""))
    return out


def worker_env() -> dict:
    """The environment of workers and CLI subprocesses: this checkout's qengine first."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def run_fuzz(corpus: list[Base], seed: int, cases, workdir, *, timeout: float = 20.0,
             threads: int = 1, cli_every: int = 1, cli_subprocess_every: int = 0,
             progress: Callable[[int, Report], None] | None = None,
             save_failures: Path | None = None) -> Report:
    """Run cases `cases` (an iterable of indices) of seed `seed`; see the module docstring.

    cli_every: every k-th case also runs the CLI in-process (0: never); cli_subprocess_every:
    every k-th case also runs `python -m qengine` in a subprocess (0: never).
    """
    workdir = Path(workdir)
    env = worker_env()
    report, worker, start = Report(), None, time.perf_counter()
    path = workdir / "mutant.qe"
    try:
        for done, index in enumerate(cases, 1):
            base, data, muts = make_case(corpus, seed, index)
            for m in muts:
                report.mutators[m.split(":")[0]] += 1
            path.write_bytes(data)
            if worker is None:
                worker = _Worker(workdir, threads, env)
            req = {"case": index, "path": str(path), "base": base.name,
                   "inputs": {k: str(v) for k, v in base.inputs.items()},
                   "cli": bool(cli_every) and index % cli_every == 0}
            res = worker.ask(req, timeout)
            if res is None:
                rc = worker.proc.returncode
                outcome = "hang" if rc in (-9,) else "crash"
                detail = (f"no answer in {timeout} s" if outcome == "hang" else
                          f"worker exit code {rc}") + "\n" + worker.log_tail()
                worker.close()
                worker = None
                res = {"outcome": outcome, "detail": detail}
            report.outcomes[res["outcome"]] += 1
            if "error" in res:
                report.errors[res["error"]] += 1
            failed = [(res["outcome"], res.get("detail", ""))] \
                if res["outcome"] in FAILURES else []
            for name, (verdict, detail) in res.get("cli", {}).items():
                report.cli[verdict] += 1
                if verdict == "bad":
                    failed.append(("cli_bad", f"{name}: {detail}"))
            if cli_subprocess_every and index % cli_subprocess_every == 0:
                for verdict, detail in _cli_subprocess(path, base, env, max(timeout, 60)):
                    report.cli_subprocess[verdict] += 1
                    if verdict == "bad":
                        failed.append(("cli_bad", f"subprocess {detail}"))
            for outcome, detail in failed:
                report.failures.append((index, base.name, muts, outcome, detail))
                if save_failures is not None:
                    save_failures.mkdir(parents=True, exist_ok=True)
                    (save_failures / f"case-{seed}-{index}.qe").write_bytes(data)
            if progress is not None:
                progress(done, report)
    finally:
        if worker is not None:
            worker.close()
        report.seconds = time.perf_counter() - start
    return report


if __name__ == "__main__" and "--worker" in sys.argv:
    worker_main(int(sys.argv[sys.argv.index("--threads") + 1]))
