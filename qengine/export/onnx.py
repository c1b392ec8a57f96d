"""ONNX export: `qengine.export_onnx(graph, path, format="qdq" | "qoperator", opset=None)`.

    g8 = qengine.quantize_static(model, calib)
    qengine.export_onnx(g8, "model.qdq.onnx")                      # ORT, OpenVINO, TensorRT
    qengine.export_onnx(g8, "model.qop.onnx", format="qoperator")  # ORT's QLinear* ops

What is written (the rules are in qengine/export/rules.py, layouts in
layout.py, node emission in nodes.py):
- a lowered static int8 graph (quantize_static, an engine file): each integer op as its QDQ node
  unit in NCHW — DequantizeLinear on every input, the float ONNX op, QuantizeLinear at the
  op's output qparams. int8 weights + DequantizeLinear (axis 0, or per tensor when all scales
  are equal); the bias as int32 at scale float32(s_x·s_w), exactly as the kernels quantize it;
  a fused Relu/Clip as its node before the QuantizeLinear (ORT fuses it again); QConvAdd as
  Conv → Q → DQ → Add → Q; QLut as DQ → Sigmoid / Tanh / HardSigmoid / HardSwish /
  LeakyRelu / Relu / Clip → Q, and a fused chain (QLut "chain") as the ONNX ops of its
  program. The program is recoverable step by step (qengine/ops/chain.py), and ops keep the
  graph a standard QDQ graph that ORT, OpenVINO and our lowering all understand; a uint8 table
  (Cast + Gather) would be exact but opaque to every tool. The cost: ORT evaluates the
  function in float32 where qengine's table is built in float64, so an output byte can differ
  by 1 where the float64 value sits on a rounding boundary. The int8 region's NHWC is internal:
  its layout Transposes disappear and QConcat's axis maps back to NCHW.
- format="qoperator": QLinearConv, QLinearMatMul (MatMul without bias), com.microsoft QGemm
  (rank-2 Gemm), QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool,
  QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu; MaxPool and the reshaping ops run on
  uint8 directly. These stay QDQ units, having no QOperator form: a fused clamp that cuts into
  [0, 255] (a Relu with a zero point above 0, e.g. symmetric activations; a Clip inside the
  range), Tanh / HardSigmoid / HardSwish / Relu / Clip / chains, an AveragePool with
  dilations, a MatMul with bias on a rank other than 2.
- a dynamic graph (quantize_dynamic): DynamicQuantLinear / DynamicQuantConv in ORT's IntegerOps
  form, DynamicQuantizeLinear → MatMulInteger / ConvInteger → Cast → Mul(s_x·s_w) →
  Add(bias): ORT fuses the MatMul form into its DynamicQuantizeMatMul kernel and runs int8 like
  qengine does, quantizing activations per tensor at run time with the same rule. Weight-only QDQ
  (DQ on int8 weights) would be constant-folded by ORT into float weights and run in float.
  A per-row activation quantization (per_row) is exported per tensor (QuantizationWarning).
  DynamicQuantLSTM / DynamicQuantGRU become ONNX LSTM / GRU, which has no int8 form: their
  int8 weights are kept as initializers and DequantizeLinear-ed to float (ORT folds that once)
  and the recurrence runs in float32 in ORT.
- a graph that is already QDQ, or float: written as it is (ElementwiseChain nodes and fused
  activations, qengine's own float fusions, are written as the ONNX ops they came from).

Runtimes: the file means exactly what qengine computes (ORT with graph optimizations off, which
runs it op by op in float, reproduces qengine's bytes). ORT's and OpenVINO's int8 kernels on an
AVX2 CPU without VNNI multiply u8 × s8 with `vpmaddubsw`, which saturates pairs of products at
int16: with full-range int8 weights their outputs can then differ from qengine's by many steps
(ORT documents this and suggests 7-bit weights, "reduce_range"); on VNNI CPUs they agree.

Opset: 13 unless something needs more — HardSwish 14, AveragePool dilations 19, int16 / uint16
or blocked Q/DQ 21, 4-bit weights 21 (a weight tensor whose codes all lie in [−7, 7] is written
as INT4, in the QDQ format), and float ops in a newer form (the lowest opset where every node's
inputs and attributes exist). A given `opset` below what the graph needs is an error naming the
node.
The model is checked with onnx.checker.check_model(full_check=True) before it is written.
onnx is imported only here, when called: the runtime never needs it.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ModelError
from .rules import MS_OPS, raise_graph
from ..graph.ir import Graph, fresh_name

FORMATS = ("qdq", "qoperator")
#: the opset written when nothing needs a newer one (per-axis Q/DQ need 13)
DEFAULT_OPSET = 13


def export_onnx(graph: Graph, path, format: str = "qdq", opset: int | None = None):
    """Write `graph` (a qengine Graph or the path of an engine file) to `path` as an ONNX model
    that ONNX Runtime and OpenVINO load; returns the onnx.ModelProto written.

    format: "qdq" (QuantizeLinear/DequantizeLinear around float ops, the form every runtime
    reads) or "qoperator" (QLinearConv, QLinearMatMul and ORT's com.microsoft QLinear* ops).
    opset: None for the lowest that works (13 unless an op needs more), or an int >= 13.
    Integer ops become QDQ node units in NCHW; dynamic Linear/Conv become ORT's IntegerOps form
    (DynamicQuantizeLinear + MatMulInteger/ConvInteger); dynamic LSTM/GRU become ONNX LSTM/GRU
    with their int8 weights dequantized (ONNX has no int8 LSTM, so they run in float there);
    a QDQ or float graph is written as it is. The module qengine/export/onnx.py says what each
    op becomes and why. Raises ModelError naming the node for what cannot be exported."""
    import onnx
    from ..model_files import as_graph
    g = as_graph(graph, "export_onnx")
    if format not in FORMATS:
        raise ModelError(f"format must be one of {FORMATS}, got {format!r}")
    if opset is not None and (not isinstance(opset, int) or opset < DEFAULT_OPSET):
        raise ModelError(f"opset must be an int >= {DEFAULT_OPSET} (per-axis QuantizeLinear / "
                         f"DequantizeLinear), got {opset!r}")
    flow = [n.name for n in g.nodes if n.subgraphs()]
    if flow:
        raise ModelError(f"ONNX export of control flow is not implemented: nodes {flow[:3]} "
                         f"(If / Loop / Scan); qengine.specialize can fold an If whose condition "
                         f"depends on an input you can fix")
    top = onnx.defs.onnx_opset_version()
    if opset is not None and opset > top:
        raise ModelError(f"opset {opset} is newer than this onnx package knows ({top})")
    raised = _cast_float16_weights(raise_graph(g, format, opset if opset is not None else
                                               _hint(g)))
    # ONNX wants a shape (of a known rank) on every graph output: one the model left
    # unspecified takes the shape qengine's inference found
    raised.outputs = [g.value_info[v.name] if v.shape is None and v.name in g.value_info and
                      g.value_info[v.name].shape is not None else v for v in raised.outputs]
    need = max([DEFAULT_OPSET] + [_node_opset(n, raised, top) for n in raised.nodes])
    int4 = _int4_weights(raised) if format == "qdq" and (opset or 21) >= 21 else set()
    if int4:
        need = max(need, 21)
    if opset is not None and need > opset:
        worst = next(n for n in raised.nodes if _node_opset(n, raised, top) == need)
        raise ModelError(f"node {worst.name!r} ({worst.op_type}) needs opset {need}, more than "
                         f"the {opset} asked for")
    model = to_proto(raised, opset or need, int4)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError or InferenceError
        raise ModelError(f"the exported model fails the ONNX checker: {e}") from e
    onnx.save(model, os.fspath(path))
    return model


def _cast_float16_weights(g: Graph) -> Graph:
    """Float ops whose constant weights qengine stores in float16 (StaticQuantConfig(
    float_weights="float16")) read them in ONNX through a Cast to float32: ONNX wants one
    type across an op's inputs. The file keeps the float16 bytes."""
    from ..graph.ir import Node
    halves = {v for n in g.nodes if n.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")
              for v in n.inputs[1:2] if v in g.initializers and
              g.initializers[v].dtype == np.float16}
    if not halves:
        return g
    out = g.copy()
    out.initializers = {(f"{k}_float16" if k in halves else k): v
                        for k, v in g.initializers.items()}
    out.nodes = [Node("Cast", f"{k}_to_float32", (f"{k}_float16",), (k,), {"to": 1})
                 for k in sorted(halves)] + out.nodes
    return out


def _int4_weights(g: Graph) -> set:
    """Weights that DequantizeLinear reads and whose int8 codes all lie in [−7, 7] — 4-bit
    weights (QAT or PTQ with weight_bits=4): their names and their zero points' (each such DQ
    gets a zero point of its own, the shared int8 constants stay), to be written as ONNX INT4
    (opset 21), which holds exactly those integers in half the bytes. An all-zero tensor is
    left int8 (nothing to gain, and it would raise the opset)."""
    readers = {}
    for n in g.nodes:
        for v in n.inputs:
            readers[v] = readers.get(v, 0) + 1
    out, nodes = set(), []
    for n in g.nodes:
        w = g.initializers.get(n.inputs[0]) if n.op_type == "DequantizeLinear" else None
        z = g.initializers.get(n.inputs[2]) if w is not None and len(n.inputs) > 2 else None
        if z is not None and w.dtype == np.int8 and z.dtype == np.int8 and w.size and \
                readers[n.inputs[0]] == 1 and not np.any(z) and np.any(w) and \
                np.abs(w.astype(np.int16)).max() <= 7:
            zn = fresh_name(set(g.initializers), f"{n.inputs[0]}_zero_point")
            g.initializers[zn] = z
            out.update((n.inputs[0], zn))
            n = n.replace(inputs=(n.inputs[0], n.inputs[1], zn))
        nodes.append(n)
    g.nodes = nodes
    read = {v for n in nodes for v in n.inputs}
    for k in [k for k in g.initializers if k not in read and readers.get(k)]:
        del g.initializers[k]          # a shared zero point every reader of which got its own
    return out


def _hint(g: Graph) -> int:
    """The opset the raising should target: what its ONNX forms of qengine ops need."""
    v = DEFAULT_OPSET
    for n in g.nodes:
        if n.op_type == "HardSwish" or (n.op_type == "QLut" and
                                        n.attrs.get("function") == "hardswish"):
            v = max(v, 14)
        if n.op_type == "QAveragePool" and any(d != 1 for d in n.attrs.get("dilations") or ()):
            v = max(v, 19)
    return v


def _node_opset(n, g: Graph, top: int) -> int:
    """The lowest opset >= 13 at which ONNX defines node n in the form it has (its inputs and
    attributes exist; for Q/DQ, its integer type)."""
    import onnx
    if n.op_type in MS_OPS:
        return DEFAULT_OPSET
    if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
        zp = g.initializers.get(n.inputs[2]) if len(n.inputs) > 2 else None
        if (zp is not None and zp.dtype.name in ("int16", "uint16")) or \
                n.attrs.get("block_size") or n.attrs.get("output_dtype"):
            return 21
    for v in range(DEFAULT_OPSET, top + 1):
        try:
            s = onnx.defs.get_schema(n.op_type, v, "")
        except onnx.defs.SchemaError:
            continue
        if s.deprecated:
            continue
        if len(n.inputs) <= s.max_input and set(n.attrs) <= set(s.attributes):
            return v
    raise ModelError(f"node {n.name!r} ({n.op_type}): no ONNX opset up to {top} defines this op "
                     f"with inputs {list(n.inputs)} and attributes {sorted(n.attrs)}")


def _attr(onnx, n, key, value, schema):
    """An AttributeProto of the schema's type (a JSON 1 for a float attribute is 1.0)."""
    A = onnx.AttributeProto
    kind = schema.attributes[key].type if schema is not None and key in schema.attributes \
        else None
    if kind == A.FLOAT:
        value = float(value)
    elif kind == A.INT:
        value = int(value)
    elif kind == A.FLOATS:
        value = [float(x) for x in value]
    elif kind == A.INTS:
        value = [int(x) for x in value]
    return onnx.helper.make_attribute(key, value, attr_type=kind)


def to_proto(g: Graph, opset: int, int4=frozenset()):
    """The ModelProto of a raised graph (ONNX and com.microsoft nodes) at `opset`; the
    initializers named in `int4` (int8 arrays of values in [−8, 7]) are written as INT4."""
    import onnx
    from onnx import helper, numpy_helper
    nodes = []
    for n in g.nodes:
        domain = "com.microsoft" if n.op_type in MS_OPS else ""
        schema = None
        if not domain:
            try:
                schema = onnx.defs.get_schema(n.op_type, opset, "")
            except onnx.defs.SchemaError:
                raise ModelError(f"node {n.name!r}: ONNX has no op {n.op_type!r} at opset "
                                 f"{opset}") from None
        node = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name,
                                domain=domain)
        node.attribute.extend(_attr(onnx, n, k, v, schema) for k, v in sorted(n.attrs.items()))
        nodes.append(node)
    inits = [helper.make_tensor(k, onnx.TensorProto.INT4, a.shape, a.reshape(-1).tolist())
             if k in int4 else numpy_helper.from_array(np.array(a, order="C"), k)
             for k, a in g.initializers.items()]
    graph = helper.make_graph(nodes, g.name, [_value_info(helper, v) for v in g.inputs],
                              [_value_info(helper, v) for v in g.outputs], inits)
    imports = [helper.make_opsetid("", opset)]
    if any(n.domain == "com.microsoft" for n in nodes):
        imports.append(helper.make_opsetid("com.microsoft", 1))
    from .. import __version__
    # IR version 7 (ONNX 1.7): what opset 13 came with, so older runtimes load the file too
    model = helper.make_model(graph, opset_imports=imports, producer_name="qengine",
                              producer_version=__version__,
                              ir_version=7 if opset <= 13 else min(
                                  onnx.IR_VERSION, _IR_FOR_OPSET.get(opset, onnx.IR_VERSION)))
    _fill_output_shapes(onnx, model)
    return model


def _fill_output_shapes(onnx, model):
    """Outputs whose rank qengine does not know get the shape onnx infers (the full checker
    wants every graph output to have one), else a shape of unknown dims is left out."""
    unknown = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if not unknown:
        return
    try:
        inferred = {v.name: v for v in
                    onnx.shape_inference.infer_shapes(model).graph.output}
    except Exception:  # noqa: BLE001 — then the checker says what is wrong
        return
    for o in unknown:
        v = inferred.get(o.name)
        if v is not None and v.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.CopyFrom(v.type.tensor_type.shape)


#: the IR version each opset shipped with (onnx/helper.py VERSION_TABLE), where it grew
_IR_FOR_OPSET = {14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11,
                 24: 11, 25: 12}


def _value_info(helper, v):
    from onnx import helper as h
    elem = h.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
    shape = None if v.shape is None else [d if d is not None else None for d in v.shape]
    return helper.make_tensor_value_info(v.name, elem, shape)
