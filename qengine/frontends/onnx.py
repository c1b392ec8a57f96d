"""ONNX → Graph (`from_onnx`). Needs the `onnx` package only at import time of a model.

Supported: the default domain at opsets MIN_OPSET..MAX_OPSET (7–28), for the ops and op
versions listed in `onnx_opsets.OP_VERSIONS` (each op's versions, and what changed in each).
Older attribute forms are rewritten into the opset-13+ form our ops implement (Squeeze/
Unsqueeze/Split/Slice/Clip/Pad attributes become constant inputs; BatchNormalization loses
`spatial`; pre-13 Softmax/LogSoftmax flatten-to-2-D semantics become Flatten → Softmax →
Reshape). Constant nodes become initializers. External data is read when a path is given
(ModelProtos must carry their data). Anything unsupported fails here, naming the op type and
the node.

Exporters' quirks taken as they come: an input dim of -1 (paddle2onnx's dynamic batch) is an
unknown dim; opset imports of other domains (ai.onnx.ml, com.microsoft) are fine as long as no
node uses them; unnamed nodes get stable names (`<op_type>_<node index>`); initializers that
are also listed as graph inputs are constants — a run cannot override them (onnxruntime lets
IR >= 4 models override them, IR < 4 ones not), because qengine packs and folds constants at
load.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UnsupportedOpsError
from ..graph.integer_ops import fuse_integer_ops, has_integer_ops
from ..graph.ir import DTYPES, Graph, Node, ValueInfo
from ..graph.passes import optimize as optimize_graph
from .onnx_opsets import MAX_OPSET, MIN_OPSET, OP_VERSIONS, op_version
from .onnx_qoperator import has_qoperator_nodes, qoperator_to_qdq

_DOMAINS = ("", "ai.onnx")


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelError("from_onnx needs the 'onnx' package (pip install onnx)") from e
    return onnx


def _np_dtype_name(elem_type: int, what: str) -> str:
    onnx = _onnx()
    try:
        name = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        name = None
    if name not in DTYPES:
        type_name = onnx.TensorProto.DataType.Name(elem_type) \
            if elem_type in onnx.TensorProto.DataType.values() else "?"
        raise ModelError(f"{what}: ONNX element type {elem_type} ({type_name}) is not supported "
                         f"(supported: {DTYPES})")
    return name


def _tensor_to_array(t, what: str) -> np.ndarray:
    onnx = _onnx()
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise ModelError(f"{what}: tensor {t.name!r} uses external data that was not loaded; "
                         f"pass the model's path (not a ModelProto loaded without its data)")
    where = f"{what}: tensor {t.name!r}"
    if t.data_type in _PACKED4:
        return _int4_to_array(t, where)
    itemsize = np.dtype(_np_dtype_name(t.data_type, where)).itemsize
    # check the dims against the data before anything is allocated: a few bytes of protobuf
    # may declare dims of 2**40
    if any(d < 0 for d in t.dims):
        raise ModelError(f"{where}: dims {list(t.dims)} must be >= 0")
    want = math.prod(t.dims)
    if t.raw_data:
        have, rest = divmod(len(t.raw_data), itemsize)
    else:
        have, rest = sum(len(f) for f in (t.float_data, t.int32_data, t.int64_data,
                                          t.double_data, t.uint64_data, t.string_data)), 0
    if have != want or rest:
        raise ModelError(f"{where}: dims {list(t.dims)} need {want} elements, the tensor holds "
                         f"{have}{' and a partial one' if rest else ''}")
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as e:  # whatever else onnx finds wrong with the data
        raise ModelError(f"{where}: unreadable data: {type(e).__name__}: {e}") from e
    return np.array(arr)  # contiguous copy (np.ascontiguousarray would make 0-d 1-d)


#: TensorProto INT4 / UINT4 → the dtype their values are held in (two per byte in the file)
_PACKED4 = {22: "int8", 21: "uint8"}


def _int4_to_array(t, where: str) -> np.ndarray:
    """An INT4/UINT4 initializer (4-bit weights, opset 21) unpacked to int8/uint8: qengine holds
    such weights in bytes until int4 kernels exist; the values keep their 4-bit range."""
    onnx = _onnx()
    if any(d < 0 for d in t.dims):
        raise ModelError(f"{where}: dims {list(t.dims)} must be >= 0")
    want = math.prod(t.dims)
    have = 2 * len(t.raw_data) if t.raw_data else 2 * len(t.int32_data)
    if have not in (want, want + 1):
        raise ModelError(f"{where}: dims {list(t.dims)} need {want} 4-bit elements, the "
                         f"tensor holds {have}")
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as e:
        raise ModelError(f"{where}: unreadable data: {type(e).__name__}: {e}") from e
    return np.array(arr.astype(_PACKED4[t.data_type]))


def _value_info(vi, what: str) -> ValueInfo:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelError(f"{what} {vi.name!r}: only tensor values are supported")
    shape = None
    if tt.HasField("shape"):
        shape = tuple(_dim(d, f"{what} {vi.name!r}") for d in tt.shape.dim)
    return ValueInfo(vi.name, _np_dtype_name(tt.elem_type, f"{what} {vi.name!r}"), shape)


def _dim(d, what: str):
    """A static size, a symbolic name, or None (unknown). paddle2onnx writes dim_value -1 for
    a dynamic dim: unknown, like a missing dim."""
    if d.HasField("dim_value"):
        if d.dim_value == -1:
            return None
        if d.dim_value < 0:
            raise ModelError(f"{what}: dim {d.dim_value} must be >= 0 (or -1 for a dynamic "
                             f"dim)")
        return d.dim_value
    return d.dim_param or None


class _Builder:
    """Accumulates nodes/initializers while converting, keeping names unique."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[Node] = []
        self.inits: dict[str, np.ndarray] = {}
        self.node_names: set[str] = set()
        self.counter = 0
        #: values some node or the graph output reads (unread optional outputs are dropped)
        self.used: set[str] = set()
        #: element types onnx inferred (what a subgraph reads from outside is typed here)
        self.types: dict[str, str] = {}
        #: the enclosing scopes' constants (for a subgraph: an If branch, a Loop body)
        self.outer: dict[str, np.ndarray] = {}

    def name(self, base: str) -> str:
        base = base or "node"
        name = base
        while name in self.node_names:
            self.counter += 1
            name = f"{base}_{self.counter}"
        self.node_names.add(name)
        return name

    def const(self, base: str, arr) -> str:
        name = base
        while name in self.inits:
            self.counter += 1
            name = f"{base}_{self.counter}"
        self.inits[name] = np.asarray(arr)
        return name

    def add(self, op_type, name, inputs, outputs, attrs=None, *, own_name=False):
        """Append a node; `own_name`: `name` is the model node's (already unique) name."""
        self.nodes.append(Node(op_type, name if own_name else self.name(name), tuple(inputs),
                               tuple(outputs), attrs or {}))


def _attrs(node) -> dict[str, Any]:
    onnx = _onnx()
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH and node.op_type in ("If", "Loop", "Scan"):
            out[a.name] = a.g                  # converted by _convert_if / _loop / _scan
            continue
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                      onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                      onnx.AttributeProto.TYPE_PROTO, onnx.AttributeProto.TYPE_PROTOS):
            raise ModelError(f"node {node.name!r} ({node.op_type}): attribute {a.name!r} has an "
                             f"unsupported kind")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        elif isinstance(v, list) and v and not isinstance(v[0], (int, float, str)):
            raise ModelError(f"node {node.name!r} ({node.op_type}): attribute {a.name!r} is a "
                             f"list of tensors, which is not supported")
        out[a.name] = v
    return out


_KINDS = {"int": int, "float": (int, float), "tensor": None}


def _want(v, kind: str, where: str, key: str):
    """`v` if it is an attribute value of `kind` (int(s), float(s), tensor), else ModelError."""
    onnx = _onnx()
    many = kind.endswith("s") and kind != "tensor"
    base = kind[:-1] if many else kind
    ok_type = onnx.TensorProto if base == "tensor" else _KINDS[base]
    items = v if many and isinstance(v, list) else [v]
    if (many and not isinstance(v, list)) or not all(
            isinstance(x, ok_type) and not isinstance(x, bool) for x in items):
        raise ModelError(f"{where}: attribute {key!r} must be {'a list of ' if many else ''}"
                         f"{base}{'s' if many else ''}, got {type(v).__name__} {str(v)[:60]}")
    return v


def _int64s(v, where: str, key: str) -> np.ndarray:
    """An int or ints attribute (an opset < 13 axes/split/pads form) as an int64 input."""
    return np.array(_want(v, "ints" if isinstance(v, list) else "int", where, key), np.int64)


def _convert_node(b: _Builder, node, name: str, opset: int) -> None:
    onnx = _onnx()
    op = node.op_type
    ins, outs = list(node.input), list(node.output)
    where = f"node {name!r} ({op})"
    attrs = _attrs(node)
    # the rewrites below read input 0 and output 0: every op here needs input 0 (Constant has
    # none; Loop's trip count and Scan-8's sequence_lens are optional), and a node none of
    # whose outputs is named computes nothing anyone can read
    if op not in ("Constant", "Loop", "Scan") and not (ins and ins[0]):
        raise ModelError(f"{where}: input 0 is required, got {ins}")
    if not any(outs) or (op in ("Constant", "Softmax", "LogSoftmax", "Dropout") and not outs[0]):
        raise ModelError(f"{where}: output 0 must be named, got {outs}")

    if op == "Constant":
        if len(attrs) != 1:
            raise ModelError(f"{where}: expected exactly one value attribute, got {list(attrs)}")
        (key, v), = attrs.items()
        if key == "value":
            arr = _tensor_to_array(_want(v, "tensor", where, key), where)
        elif key in ("value_float", "value_floats"):
            arr = np.array(_want(v, key[6:], where, key), np.float32)
        elif key in ("value_int", "value_ints"):
            arr = np.array(_want(v, key[6:], where, key), np.int64)
        else:
            raise ModelError(f"{where}: Constant attribute {key!r} is not supported")
        if outs[0] in b.inits:
            raise ModelError(f"{where}: value {outs[0]!r} is defined twice")
        b.inits[outs[0]] = arr
        return
    if op == "If":
        _convert_if(b, node, name, opset, attrs, where)
        return
    if op == "Loop":
        _convert_loop(b, node, name, opset, attrs, where)
        return
    if op == "Scan":
        _convert_scan(b, node, name, opset, attrs, where)
        return
    if op == "ConstantOfShape":
        t = attrs.pop("value", None)
        if t is not None:
            arr = _tensor_to_array(_want(t, "tensor", where, "value"), where)
            if arr.size != 1:
                raise ModelError(f"{where}: value must hold one element, got shape {arr.shape}")
            attrs = {"value": float(arr.reshape(-1)[0]), "dtype": arr.dtype.name}
    elif op == "Cast":
        attrs["to"] = _np_dtype_name(attrs["to"], where) if "to" in attrs else None
        attrs.pop("round_mode", None)  # opset 24: only float8e8m0 targets, not a qengine dtype
    elif op == "Dropout":  # inference: identity, and an all-true mask
        training = ins[2] if len(ins) > 2 else ""
        if training and not (training in b.inits and not b.inits[training].any()):
            raise ModelError(f"{where}: training_mode must be omitted or a constant false "
                             f"(qengine runs inference only; training dropout is random)")
        if len(outs) > 1 and outs[1] in b.used:
            if opset < 10:  # the mask had the data's type then
                raise ModelError(f"{where}: Dropout's mask output is read, which is only "
                                 f"supported from opset 10 (a bool mask)")
            shape = f"{outs[1]}__shape"
            b.add("Shape", f"{name}_mask_shape", ins[:1], [shape])
            b.add("ConstantOfShape", f"{name}_mask", [shape], [outs[1]],
                  {"value": 1.0, "dtype": "bool"})
        op, ins, outs, attrs = "Identity", ins[:1], outs[:1], {}
    elif op == "BatchNormalization":
        # opset < 9 `spatial`: 1 is the only form later opsets kept; 0 (per-activation
        # statistics) shows up as (C, D1, ...) shaped parameters, which the op broadcasts
        attrs.pop("spatial", None)
        attrs.pop("is_test", None)
        attrs.pop("consumed_inputs", None)
        if any(o in b.used for o in outs[1:]):
            raise ModelError(f"{where}: the running-statistics outputs are not supported "
                             f"(inference only)")
        outs = outs[:1]
    elif op == "Pad" and opset < 11:
        pads = attrs.pop("pads", attrs.pop("paddings", None))
        if pads is None:
            raise ModelError(f"{where}: the pads attribute is required at opset < 11")
        value = _want(attrs.pop("value", 0.0), "float", where, "value")
        ins = ins[:1] + [b.const(f"{name}_pads", _int64s(pads, where, "pads")),
                         b.const(f"{name}_value", np.array(value, np.float32))]
    elif op.startswith("Reduce") and "axes" in attrs and \
            opset < (13 if op == "ReduceSum" else 18):
        ins = ins[:1] + [b.const(f"{name}_axes", _int64s(attrs.pop("axes"), where, "axes"))]
    elif op == "Resize" and opset < 11:     # Resize-10: X, scales; Upsample's semantics
        ins = ins[:1] + ["", ins[1] if len(ins) > 1 else ""]
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif op == "TopK" and opset < 10:
        if "k" not in attrs:
            raise ModelError(f"{where}: the k attribute is required at opset < 10")
        ins = ins[:1] + [b.const(f"{name}_k", _int64s([attrs.pop("k")], where, "k"))]
    elif op in ("Squeeze", "Unsqueeze") and opset < 13 and "axes" in attrs:
        ins = ins[:1] + [b.const(f"{name}_axes", _int64s(attrs.pop("axes"), where, "axes"))]
    elif op == "Split" and opset < 13 and "split" in attrs:
        ins = ins[:1] + [b.const(f"{name}_split", _int64s(attrs.pop("split"), where, "split"))]
    elif op == "Slice" and opset < 10:
        starts, ends = attrs.pop("starts", None), attrs.pop("ends", None)
        axes = attrs.pop("axes", None)
        if starts is None or ends is None:
            raise ModelError(f"{where}: starts and ends attributes are required at opset < 10")
        ins = ins[:1] + [b.const(f"{name}_starts", _int64s(starts, where, "starts")),
                         b.const(f"{name}_ends", _int64s(ends, where, "ends"))]
        if axes is not None:
            ins.append(b.const(f"{name}_axes", _int64s(axes, where, "axes")))
    elif op == "Clip" and opset < 11:
        lo = _want(attrs.pop("min", -np.inf), "float", where, "min")
        hi = _want(attrs.pop("max", np.inf), "float", where, "max")
        ins = ins[:1] + [b.const(f"{name}_min", np.float32(lo)),
                         b.const(f"{name}_max", np.float32(hi))]
    elif op in ("Softmax", "LogSoftmax") and opset < 13:
        # old semantics: flatten to 2-D at `axis` (default 1), normalise rows, reshape back
        axis = attrs.get("axis", 1)
        x, y = ins[0], outs[0]
        shape, flat, soft = f"{y}__shape", f"{y}__flat", f"{y}__2d"
        b.add("Shape", f"{name}_shape", [x], [shape])
        b.add("Flatten", f"{name}_flatten", [x], [flat], {"axis": axis})
        b.add(op, name, [flat], [soft], {"axis": -1}, own_name=True)
        b.add("Reshape", f"{name}_reshape", [soft, shape], [y])
        return
    for k, v in attrs.items():
        if isinstance(v, onnx.TensorProto):
            raise ModelError(f"{where}: tensor attribute {k!r} is not supported")
    b.add(op, name, ins, outs, attrs, own_name=True)


def from_onnx(model, *, optimize: bool = True, lower: bool = True) -> Graph:
    """Import an ONNX model (a path or a ModelProto) as a Graph.

    With optimize=True (default) the standard passes run (shape inference, constant folding,
    dead-node removal), which turns the exporters' shape-computation chains into constants.
    A quantized model (QuantizeLinear / DequantizeLinear, as ONNX Runtime, NNCF or PyTorch
    write them) is lowered to qengine's integer ops when lower=True (default; the units that
    stay float: `qengine.qdq.lower(from_onnx(path, lower=False), report=True)`); lower=False
    keeps the QDQ graph, which runs with ONNX's float semantics.
    """
    onnx = _onnx()
    if isinstance(model, (str, Path)):
        try:
            # external data (the dynamo exporter writes <model>.onnx.data) is read from the
            # model's directory; onnx itself refuses paths that escape it
            model = onnx.load(str(model), load_external_data=True)
        except Exception as e:  # protobuf's DecodeError and friends
            raise ModelError(f"cannot read ONNX model {str(model)!r}: {e}") from e
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"from_onnx expects a path or onnx.ModelProto, got {type(model).__name__}")
    try:
        graph = _import(model)
    except UnicodeDecodeError as e:  # protobuf decodes string fields lazily, on first access
        raise ModelError(f"the model holds a name or string that is not UTF-8: {e}") from e
    if lower and has_integer_ops(graph):   # ORT's dynamic IntegerOps: qengine's dynamic ops
        graph = fuse_integer_ops(graph)
    graph = optimize_graph(graph) if optimize else graph
    if lower:
        from ..qdq import has_qdq, lower as lower_qdq
        from ..qdq.canonical import canonicalize
        if has_qdq(graph):
            from ..graph.fusion import fuse_residual_add
            # what quantize_static does last: a conv whose output only a residual add reads
            # runs with the add in its epilogue (the same bytes, one pass less)
            graph = fuse_residual_add(lower_qdq(canonicalize(graph)))
    return graph


def onnx_summary(model, unsupported=()) -> dict:
    """What `qengine inspect` shows of an ONNX model qengine cannot import (unsupported ops):
    the dict `tools.describe.describe` makes of a Graph, read straight from the protobuf (no
    shape inference, no weights converted), plus `unsupported` (UnsupportedOpsError.ops)."""
    onnx = _onnx()
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    g = model.graph
    names = _node_names(g.node)
    sizes = {t.name: (onnx.helper.tensor_dtype_to_np_dtype(t.data_type), tuple(t.dims))
             for t in g.initializer}
    nodes = []
    for n, name in zip(g.node, names):
        weights = [i for i in n.input if i in sizes]
        nodes.append({"name": name, "op": n.op_type if n.domain in _DOMAINS
                      else f"{n.domain}.{n.op_type}", "inputs": list(n.input),
                      "outputs": list(n.output),
                      "weight_dtypes": sorted({np.dtype(sizes[w][0]).name for w in weights}),
                      "weight_bytes": int(sum(np.dtype(sizes[w][0]).itemsize *
                                              math.prod(sizes[w][1]) for w in set(weights)))})

    def info(v):
        vi = _value_info(v, "value")
        return {"name": vi.name, "dtype": vi.dtype,
                "shape": None if vi.shape is None else list(vi.shape)}
    inits = [{"name": k, "dtype": np.dtype(dt).name, "shape": list(dims),
              "bytes": int(np.dtype(dt).itemsize * math.prod(dims))}
             for k, (dt, dims) in sizes.items()]
    return {"name": g.name or "graph",
            "opset": {o.domain: o.version for o in model.opset_import},
            "inputs": [info(v) for v in g.input if v.name not in sizes],
            "outputs": [info(v) for v in g.output], "nodes": nodes, "qparams": [],
            "initializers": inits, "total_bytes": sum(i["bytes"] for i in inits),
            "unsupported": list(unsupported), "float_units": []}


def _convert_if(b: _Builder, node, name: str, opset: int, attrs: dict, where: str) -> None:
    """If: each branch becomes a Graph whose inputs are what it reads from the enclosing scopes;
    the node takes those values as inputs after `cond` (qengine/ops/control.py)."""
    if set(attrs) != {"then_branch", "else_branch"}:
        raise ModelError(f"{where}: expected attributes then_branch and else_branch, got "
                         f"{sorted(attrs)}")
    branches, reads = {}, []
    for key in ("then_branch", "else_branch"):
        if len(attrs[key].input):
            raise ModelError(f"{where}: {key} declares inputs {[v.name for v in attrs[key].input]}"
                             f" (an If branch takes none)")
        g, free = _convert_graph(attrs[key], opset, f"{name}/{key}", b.types,
                                 {**b.outer, **b.inits})
        branches[key] = g
        reads += [v for v in free if v not in reads]
    for key, g in branches.items():          # every branch takes what either one reads
        have = {v.name for v in g.inputs}
        g.inputs = g.inputs + [ValueInfo(v, b.types.get(v, "float32")) for v in reads
                               if v not in have]
        g.inputs.sort(key=lambda v: reads.index(v.name))
    b.used.update(reads)
    b.add("If", name, [node.input[0], *reads], node.output, branches, own_name=True)


def _convert_loop(b: _Builder, node, name: str, opset: int, attrs: dict, where: str) -> None:
    """Loop: the body becomes a Graph taking (iteration, cond, carried..., what it reads from
    outside); the node passes the latter after its own inputs (qengine/ops/control.py). An
    omitted M or cond becomes a constant that means the same."""
    if set(attrs) != {"body"}:
        raise ModelError(f"{where}: expected the attribute body, got {sorted(attrs)}")
    gp = attrs["body"]
    ins = list(node.input) + [""] * max(0, 2 - len(node.input))
    n = len(ins) - 2
    if len(gp.input) != 2 + n or len(gp.output) != 1 + len(node.output) or \
            len(node.output) < n:
        raise ModelError(f"{where}: a body of {len(gp.input)} inputs / {len(gp.output)} outputs "
                         f"does not fit {n} loop-carried values and {len(node.output)} outputs")
    g, free = _convert_graph(gp, opset, f"{name}/body", b.types, {**b.outer, **b.inits})
    m = ins[0] or b.const(f"{name}_no_trip_count", np.array(np.iinfo(np.int64).max))
    cond = ins[1] or b.const(f"{name}_no_cond", np.array(True))
    b.used.update(free)
    b.add("Loop", name, [m, cond, *ins[2:], *free], node.output, {"body": g, "carried": n},
          own_name=True)


def _convert_scan(b: _Builder, node, name: str, opset: int, attrs: dict, where: str) -> None:
    """Scan: the body becomes a Graph taking (state..., scan slices..., what it reads from
    outside); the node passes the latter after its own inputs. Opset 8's batched form is
    marked `batched` (its sequence_lens is refused)."""
    gp = attrs.pop("body", None)
    if gp is None or "num_scan_inputs" not in attrs:
        raise ModelError(f"{where}: the attributes body and num_scan_inputs are required")
    ins = list(node.input)
    if op_version("Scan", opset).since == 8:          # (sequence_lens, state..., scans...)
        if ins and ins[0]:
            raise ModelError(f"{where}: Scan-8's sequence_lens is not supported (every batch "
                             f"element must scan the whole sequence); leave it empty")
        ins = ins[1:]
        attrs = {"num_scan_inputs": attrs["num_scan_inputs"], "batched": 1,
                 **({"scan_input_directions": attrs["directions"]} if "directions" in attrs
                    else {})}
    m = attrs["num_scan_inputs"]
    n = len(ins) - m
    if not isinstance(m, int) or m < 1 or n < 0 or len(gp.input) != len(ins) or \
            len(gp.output) != len(node.output) or len(node.output) < n or not all(ins):
        raise ModelError(f"{where}: {len(node.input)} inputs, {len(node.output)} outputs and a "
                         f"body of {len(gp.input)} / {len(gp.output)} do not fit "
                         f"num_scan_inputs {m}")
    g, free = _convert_graph(gp, opset, f"{name}/body", b.types, {**b.outer, **b.inits})
    b.used.update(free)
    b.add("Scan", name, [*ins, *free], node.output, {**attrs, "body": g, "carried": n},
          own_name=True)


def _convert_graph(gp, opset: int, scope: str, types: dict,
                   outer: dict | None = None) -> tuple[Graph, list[str]]:
    """A GraphProto (a model's graph, an If branch or a Loop body named `scope`) as a Graph, and
    the names it reads from enclosing scopes (its free values, in order of first use); those
    become the graph's inputs — except the enclosing scopes' constants (`outer`), which the
    graph takes as its own initializers: weights stay weights inside a branch. A subgraph's
    unsupported ops are refused here, naming all of them (the top level's: by _import)."""
    names = _node_names(gp.node)
    if scope:               # node names stay unique across the whole model
        names = [f"{scope}/{n}" for n in names]
        _refuse_unsupported(gp, opset, names)
    b = _Builder(opset)
    b.types, b.outer = types, outer or {}
    b.node_names.update(names)  # generated helper nodes must not take a model node's name
    b.used = {i for n in gp.node for i in n.input if i} | {o.name for o in gp.output}
    if not gp.output:
        raise ModelError(f"{'the graph' if not scope else scope} has no outputs")
    for t in gp.initializer:
        if t.name in b.inits:  # onnx's checker refuses this too; ORT silently takes the last
            raise ModelError(f"initializer {t.name!r} is defined twice")
        b.inits[t.name] = _tensor_to_array(t, "initializer")
    for n, nm in zip(gp.node, names):
        _convert_node(b, n, nm, opset)
    made = {o for n in b.nodes for o in n.outputs if o} | {v.name for v in gp.input}
    for v in [i for n in b.nodes for i in n.inputs] + [o.name for o in gp.output]:
        if v in b.outer and v not in b.inits and v not in made:
            b.inits[v] = b.outer[v]
    declared = [v for v in gp.input if v.name not in b.inits]
    defined = set(b.inits) | {v.name for v in declared} | {
        o for n in b.nodes for o in n.outputs if o}
    free = list(dict.fromkeys([i for n in b.nodes for i in n.inputs if i and i not in defined] +
                              [v.name for v in gp.output if v.name not in defined]))
    inputs = [_value_info(v, "graph input") if not scope or v.type.tensor_type.elem_type
              else ValueInfo(v.name, types.get(v.name, "float32")) for v in declared]
    inputs += [ValueInfo(v, types.get(v, "float32")) for v in free]
    # a branch's outputs often carry no type: onnx's inference (or float32) then
    outputs = [_value_info(v, "graph output") if not scope or v.type.tensor_type.elem_type
               else ValueInfo(v.name, types.get(v.name, "float32")) for v in gp.output]
    graph = Graph(inputs, outputs, b.nodes, b.inits, {"": opset}, gp.name or "graph")
    graph.toposort()
    graph.verify()
    return graph, free


def _refuse_unsupported(gp, opset: int, names) -> None:
    """UnsupportedOpsError naming every node of `gp` (not its subgraphs) qengine cannot run."""
    unsupported = []
    for n, nm in zip(gp.node, names):
        entry = {"domain": n.domain or "ai.onnx", "op": n.op_type, "node": nm, "reason": None}
        if n.domain not in _DOMAINS or n.op_type not in OP_VERSIONS:
            unsupported.append(entry)
            continue
        try:
            op_version(n.op_type, opset, f"node {nm!r}")
        except ModelError as e:
            unsupported.append({**entry, "reason": str(e)})
    if unsupported:
        raise UnsupportedOpsError(_unsupported_message(unsupported), unsupported)


def _import(model) -> Graph:
    versions = sorted({o.version for o in model.opset_import if o.domain in _DOMAINS})
    if not versions:
        raise ModelError("the model imports no default-domain opset")
    if len(versions) > 1:
        raise ModelError(f"the model imports the default domain at several opsets {versions}")
    opset = versions[0]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(f"ONNX opset {opset} is not supported (supported: {MIN_OPSET}–"
                         f"{MAX_OPSET})")
    if has_qoperator_nodes(model):  # ORT's QOperator format: normalized to QDQ first
        model = qoperator_to_qdq(model)
    g = model.graph
    _refuse_unsupported(g, opset, _node_names(g.node))     # before onnx's type inference
    types = _check_types(model)
    graph, free = _convert_graph(g, opset, "", types)
    if free:
        raise ModelError(f"the graph reads values nothing defines: {free[:10]}")
    return graph


def _unsupported_message(ops) -> str:
    """Every unsupported op type with its domain and count, a few node names each (the error's
    `ops` and `qengine inspect` list them all)."""
    groups: dict[tuple, list] = {}
    for o in ops:
        groups.setdefault((o["op"], o["domain"], o["reason"]), []).append(o["node"])
    parts = []
    for (op, domain, reason), nodes in groups.items():
        shown = ", ".join(repr(n) for n in nodes[:3]) + (f", +{len(nodes) - 3} more"
                                                         if len(nodes) > 3 else "")
        parts.append(f"{op} [{domain}] x{len(nodes)} ({shown})" + (f": {reason}" if reason else ""))
    return (f"unsupported ONNX ops in {len(ops)} node(s): {'; '.join(parts)}. `qengine inspect` "
            f"still shows the graph; docs/supported_ops.md lists what qengine runs")


def _check_types(model) -> None:
    """onnx's own type inference as the gate for element types (a Conv on int32, a float64
    Gemm weight next to float32 data...), with onnx's message naming op, node and types.
    Not strict: a node whose shape inference fails is left unknown, as ORT does (it accepts,
    say, a Constant's value_float at opset 11, a year early). It runs on a copy without
    initializer data (weights are not copied into onnx's C++ side) nor intermediate/output
    shapes (stale value_info and declared output shapes that exporters get wrong are no
    reason to refuse a model; ORT only warns)."""
    onnx = _onnx()
    m = onnx.ModelProto()
    m.ir_version = model.ir_version
    m.opset_import.extend(model.opset_import)
    g = m.graph
    g.node.extend(model.graph.node)
    declared = {v.name for v in model.graph.input}
    g.input.extend(model.graph.input)
    for t in model.graph.initializer:
        if t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    for v in model.graph.output:
        g.output.append(onnx.helper.make_tensor_value_info(
            v.name, v.type.tensor_type.elem_type, None))
    try:
        inferred = onnx.shape_inference.infer_shapes(m, check_type=True)
    except Exception as e:  # InferenceError, and ValidationError on protobufs onnx rejects
        msg = " ".join(str(e).split())
        raise ModelError(f"the model fails onnx's type inference: {msg[:500]}") from e
    return _element_types(inferred.graph)


def _element_types(g, out=None) -> dict[str, str]:
    """name → qengine dtype of every value onnx typed, in `g` and its subgraphs (what a
    subgraph reads from outside is typed there)."""
    out = {} if out is None else out
    for v in (*g.input, *g.output, *g.value_info):
        et = v.type.tensor_type.elem_type if v.type.HasField("tensor_type") else 0
        try:
            out.setdefault(v.name, _np_dtype_name(et, v.name))
        except ModelError:
            pass
    for t in g.initializer:
        try:
            out.setdefault(t.name, _np_dtype_name(t.data_type, t.name))
        except ModelError:
            pass
    for n in g.node:
        for a in n.attribute:
            if a.HasField("g"):
                _element_types(a.g, out)
    return out


def _node_names(nodes) -> list[str]:
    """One unique name per node: its own, or `<op_type>_<index in the graph>` when it has none
    (stable for a given model; suffixed where that is taken). Two nodes with one name are an
    error, as in onnxruntime: node names select nodes (e.g. `--keep-float`)."""
    taken: dict[str, int] = {}
    for i, n in enumerate(nodes):
        if n.name in taken:
            raise ModelError(f"nodes {taken[n.name]} and {i} are both named {n.name!r} "
                             f"(node names must be unique)")
        if n.name:
            taken[n.name] = i
    out = []
    for i, n in enumerate(nodes):
        name = n.name
        if not name:
            base = name = f"{n.op_type or 'node'}_{i}"
            k = 0
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken[name] = i
        out.append(name)
    return out
