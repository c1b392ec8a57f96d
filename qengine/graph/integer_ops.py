"""ORT dynamic IntegerOps → qengine's dynamic ops (DynamicQuantLinear / DynamicQuantConv).

onnxruntime.quantization.quantize_dynamic writes each quantized MatMul / Conv as

    x ─ DynamicQuantizeLinear ─┬ x_q ──────────┐
                               ├ x_zero_point ─┤ MatMulInteger / ConvInteger (W_q, W_zero_point)
                               └ x_scale ─ Mul(·, W_scale) ─┐          │
                                                    Cast(float) ─ Mul ─ [Add bias] ─ y

with W_q a constant int8 initializer. When W_zero_point is 0 (ORT's default QInt8 weights,
symmetric) the chain is y = x·W·W_scale + bias with qengine's own activation quantization in
place of DynamicQuantizeLinear's: `fuse_integer_ops` turns it into one DynamicQuantLinear
(Wq = W_qᵀ [N, K], Ws per output column) or DynamicQuantConv (Wq = W_q OIHW, Ws per output
channel) that uses the file's int8 weights unchanged. qengine quantizes activations per tensor
to uint8 too, but symmetric ranges and its own rounding differ from DynamicQuantizeLinear's:
the result is as accurate as ORT's on the same file, not bit-identical.

Everything else — uint8 or asymmetric weights, weights computed at run time, a
DynamicQuantizeLinear output read by other ops, shapes this pass does not know — is left to the
exact ops (qengine.ops.onnx_integer), which compute ONNX's definition in NumPy int64.
`fuse_integer_ops(graph, report)` appends one line per chain it left, saying why.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node

INTEGER_OPS = ("MatMulInteger", "ConvInteger")


def has_integer_ops(graph: Graph) -> bool:
    return any(n.op_type in INTEGER_OPS or (n.op_type == "LSTM" and len(n.inputs) > 2 and not
                                            {n.inputs[1], n.inputs[2]} <= set(graph.initializers))
               for n in graph.nodes)


def fuse_integer_ops(graph: Graph, report: list | None = None) -> Graph:
    """A copy of `graph` with every recognised IntegerOps chain fused (see the module doc)."""
    g = graph.copy()
    for node in [n for n in g.nodes if n.op_type in INTEGER_OPS]:
        found = _match(g, node)
        if isinstance(found, str):
            if report is not None:
                report.append(f"{node.op_type} {node.name!r} runs as exact integer ops: {found}")
            continue
        old, new = found
        g.replace_nodes(old, new)
    for node in [n for n in g.nodes if n.op_type == "LSTM"]:
        found = _quantized_lstm(g, node, report)
        if found is not None:
            g.replace_nodes(*found)
    # DynamicQuantizeLinear nodes whose every output is now unread
    readers = g.consumers()
    outs = set(g.output_names)
    dead = [n for n in g.nodes if n.op_type == "DynamicQuantizeLinear" and
            not any(o in readers or o in outs for o in n.outputs if o)]
    if dead:
        g.replace_nodes(dead, [])
    return g


def _only_reader(g: Graph, readers, value: str):
    users = readers.get(value, [])
    if len(users) != 1 or value in g.output_names:
        return None
    return users[0]


def _other(node: Node, value: str) -> str:
    return node.inputs[1] if node.inputs[0] == value else node.inputs[0]


def _match(g: Graph, node: Node):
    """(old nodes, new nodes), or a string saying why the chain is not fused."""
    producers, readers = g.producers(), g.consumers()
    inits = g.initializers
    ins = list(node.inputs) + [""] * (4 - len(node.inputs))
    dql = producers.get(ins[0])
    if dql is None or dql.op_type != "DynamicQuantizeLinear" or list(dql.outputs[:1]) != [ins[0]]:
        return "input A is not a DynamicQuantizeLinear output"
    if ins[2] != (dql.outputs[2] if len(dql.outputs) > 2 else None):
        return "its input zero point is not the DynamicQuantizeLinear's"
    wq = inits.get(ins[1])
    if wq is None or wq.dtype != np.int8:
        return "the weights are not a constant int8 initializer (uint8 weights keep exact ops)"
    wz = inits.get(ins[3]) if ins[3] else np.zeros((), np.int8)
    if wz is None or np.any(wz != 0):
        return "the weight zero point is not a constant 0 (asymmetric weights)"
    cast = _only_reader(g, readers, node.outputs[0])
    if cast is None or cast.op_type != "Cast" or cast.attrs.get("to") != "float32":
        return "its output is not read by exactly one Cast to float32"
    mul = _only_reader(g, readers, cast.outputs[0])
    if mul is None or mul.op_type != "Mul":
        return "the Cast is not read by exactly one Mul"
    scale_mul = producers.get(_other(mul, cast.outputs[0]))
    if scale_mul is None or scale_mul.op_type != "Mul" or len(readers.get(
            scale_mul.outputs[0], [])) != 1:
        return "the Mul's other input is not a Mul of scales read only there"
    x_scale = dql.outputs[1]
    if x_scale not in scale_mul.inputs:
        return "the scale product does not use the DynamicQuantizeLinear's scale"
    ws = inits.get(_other(scale_mul, x_scale))
    if ws is None or ws.dtype != np.float32:
        return "the weight scale is not a constant float32"
    conv = node.op_type == "ConvInteger"
    n_out = wq.shape[0] if conv else (wq.shape[1] if wq.ndim == 2 else None)
    if n_out is None or (conv and wq.ndim not in (3, 4)):
        return f"weights of shape {wq.shape} are not 2-D (MatMul) or 3-D/4-D (Conv)"
    ws_vec = _per_output(ws, n_out, wq.ndim if conv else 1)
    if ws_vec is None:
        return f"a weight scale of shape {ws.shape} is not per tensor or per output channel"
    old, out = [node, cast, scale_mul, mul], mul.outputs
    bias = None
    add = _only_reader(g, readers, mul.outputs[0])
    if add is not None and add.op_type == "Add":
        b = _const_of(g, producers, _other(add, mul.outputs[0]))
        bias = None if b is None else _per_output(b, n_out, wq.ndim if conv else 1)
        if bias is not None:
            old, out = old + [add], add.outputs
    base = node.name
    new_in = [dql.inputs[0], _add_init(g, f"{base}.Wq",
                                       wq if conv else np.ascontiguousarray(wq.T)),
              _add_init(g, f"{base}.Ws", ws_vec)]
    if bias is not None:
        new_in.append(_add_init(g, f"{base}.bias", bias))
    if not conv:
        return old, [Node("DynamicQuantLinear", base, tuple(new_in), tuple(out), {})]
    attrs = {"group": node.attrs.get("group", 1), "kernel_shape": list(wq.shape[2:])}
    for k in ("strides", "pads", "dilations"):
        if node.attrs.get(k):
            attrs[k] = list(node.attrs[k])
    if node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        attrs["auto_pad"] = node.attrs["auto_pad"]
    return old, [Node("DynamicQuantConv", base, tuple(new_in), tuple(out), attrs)]


def _lstm_weight(g: Graph, producers, name: str):
    """(int8/uint8 weights [D, in, 4H], scale broadcastable to them, zero point, [Transpose, DQ])
    when `name` is Transpose(DequantizeLinear(constant)) — ORT's DynamicQuantizeLSTM weights as
    the QOperator rewrite writes them (frontends/onnx_qoperator.py) — else None."""
    t = producers.get(name)
    if t is None or t.op_type != "Transpose" or list(t.attrs.get("perm", [])) != [0, 2, 1]:
        return None
    dq = producers.get(t.inputs[0])
    if dq is None or dq.op_type != "DequantizeLinear" or len(dq.inputs) != 3 or \
            not all(i in g.initializers for i in dq.inputs):
        return None
    w, sc, zp = (g.initializers[i] for i in dq.inputs)
    if w.ndim != 3:
        return None
    sc = sc.reshape(-1, 1, 1) if sc.ndim == 1 else sc          # per direction / per column
    zp = zp.reshape(-1, 1, 1) if zp.ndim == 1 else zp
    return w, sc.astype(np.float32), zp, [t, dq]


def _quantized_lstm(g: Graph, node: Node, report):
    """LSTM reading dequantized int8 weights: DynamicQuantLSTM on the file's int8 weights when
    their zero point is 0 and the LSTM has default activations; otherwise the weights are
    dequantized into float initializers (the float LSTM then runs)."""
    producers, readers = g.producers(), g.consumers()
    ins = list(node.inputs) + [""] * (8 - len(node.inputs))
    found = [_lstm_weight(g, producers, ins[k]) for k in (1, 2)]
    if None in found:
        return None
    if any(len(readers.get(ins[k], [])) != 1 for k in (1, 2)):
        return None
    a = node.attrs
    plain = not (a.get("clip") is not None or a.get("input_forget", 0) or
                 a.get("activations") or a.get("layout", 0) or (ins[7] and np.any(
                     g.initializers.get(ins[7], 1))))
    symmetric = all(w.dtype == np.int8 and not np.any(z) for w, _, z, _ in found)
    old = [node] + [n for *_, ns in found for n in ns]
    base = node.name
    if plain and symmetric:
        new_in = [ins[0]]
        for w, sc, _, _ in found:
            d, _, gates = w.shape
            new_in += [_add_init(g, f"{base}.Wq", np.ascontiguousarray(w.transpose(0, 2, 1))),
                       _add_init(g, f"{base}.Ws", np.ascontiguousarray(
                           np.broadcast_to(sc, (d, 1, gates)).reshape(d, gates)))]
        new_in += ins[3:7]
        while new_in and not new_in[-1]:
            new_in.pop()
        attrs = {"direction": a.get("direction", "forward"), "layout": 0, "per_row": 0}
        if a.get("hidden_size") is not None:
            attrs["hidden_size"] = a["hidden_size"]
        return old, [Node("DynamicQuantLSTM", base, tuple(new_in), node.outputs, attrs)]
    if report is not None:
        report.append(f"LSTM {base!r} runs in float on dequantized weights: "
                      f"{'asymmetric or uint8 weights' if plain else 'non-default attributes'}")
    new_in = list(node.inputs)
    for k, (w, sc, zp, _) in zip((1, 2), found):
        wf = ((w.astype(np.float32) - zp.astype(np.float32)) * sc).transpose(0, 2, 1)
        new_in[k] = _add_init(g, f"{base}.{'WR'[k - 1]}", np.ascontiguousarray(wf))
    return old, [node.replace(inputs=tuple(new_in))]


def _per_output(arr: np.ndarray, n: int, rank: int):
    """`arr` as a float32 [n] vector when it is per tensor or broadcasts along the output
    channel only (MatMul: the last axis; Conv of weight rank r: axis 1 of an [N, n, 1, ...]
    result, i.e. shapes (n, 1, ..) or (1, n, 1, ..)), else None."""
    a = np.asarray(arr)
    if a.dtype.kind != "f":
        return None
    if a.size == 1:
        return np.full(n, a.reshape(-1)[0], np.float32)
    if a.size != n:
        return None
    big = [i for i, d in enumerate(a.shape) if d != 1]
    if len(big) != 1:
        return None
    # the axis the vector lies on, counted from the end: MatMul's last (1), Conv's channel
    # axis 1 of an output of the weights' rank (rank - 1)
    ok = len(a.shape) - big[0] == (1 if rank == 1 else rank - 1)
    return np.ascontiguousarray(a.reshape(-1), np.float32) if ok else None


def _const_of(g: Graph, producers, name: str):
    """An initializer, or a Reshape of initializers (ORT's reshaped conv bias)."""
    if name in g.initializers:
        return g.initializers[name]
    p = producers.get(name)
    if p is not None and p.op_type == "Reshape" and len(p.inputs) == 2 and \
            all(i in g.initializers for i in p.inputs):
        data, shape = g.initializers[p.inputs[0]], g.initializers[p.inputs[1]]
        if shape.dtype.kind == "i" and not np.any(shape == 0):
            try:
                return data.reshape([int(d) for d in shape])
            except ValueError:
                return None
    return None


def _add_init(g: Graph, base: str, value: np.ndarray) -> str:
    name = g.unique_name(base)
    g.initializers[name] = value
    return name
