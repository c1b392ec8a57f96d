"""Graph passes. Each takes a Graph and returns a new Graph (the input is left untouched).

* `remove_dead_nodes`: drop nodes whose outputs nobody reads, and unused initializers.
* `fold_constants`: run nodes whose inputs are all constant once and store their outputs as
  initializers (Constant, Shape of a statically shaped value, the Shape→Gather→Concat→Expand
  chains the TorchScript exporter writes for zero initial states, ...).
* `infer_shapes`: cheap static-shape propagation for the ops where it is simple; it is what lets
  `fold_constants` fold Shape nodes on intermediates.
* `optimize`: the standard pipeline (infer → fold → Identity removal → BatchNormalization
  folding → optional activation fusion → dead-node removal → infer), see its docstring.

The CNN rewrites (`remove_identities`, `fold_batch_norm`, `fuse_activations`) live in
`qengine.graph.fusion`.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import QEngineError, ShapeError
from .ir import Graph, Node, ValueInfo, fresh_name

#: Folding must not turn a small file into a huge one (Expand/ConstantOfShape can inflate).
FOLD_MAX_BYTES = 1 << 22


def remove_dead_nodes(graph: Graph) -> Graph:
    g = graph.copy()
    needed = set(g.output_names)
    kept = []
    for n in reversed(g.nodes):
        if any(o in needed for o in n.outputs if o):
            kept.append(n)
            needed.update(i for i in n.inputs if i)
    g.nodes = kept[::-1]
    g.initializers = {k: v for k, v in g.initializers.items() if k in needed}
    g.value_info = {k: v for k, v in g.value_info.items() if k in needed}
    return g


def specialize(graph: Graph, shapes=None, constants=None) -> Graph:
    """`graph` for fixed input shapes and/or constant inputs, optimized again.

    shapes: {input name: tuple of ints}; constants: {input name: value}, which stop being
    inputs. What depended on them folds: shape computations, and an If on, say, a sample rate
    input becomes the branch it takes (the Silero VAD model: 25 If nodes at run time, none after
    specialize(g, {"input": (1, 512), "state": (2, 1, 128)}, {"sr": 16000})).
    """
    shapes, constants = dict(shapes or {}), dict(constants or {})
    known = {v.name: v for v in graph.inputs}
    unknown = sorted(set(shapes) - set(known)) + sorted(set(constants) - set(known))
    if unknown:
        raise ShapeError(f"specialize: {unknown} are not inputs of the graph (inputs: "
                         f"{sorted(known)})")
    g = graph.copy()
    inputs = []
    for v in g.inputs:
        if v.name in constants:
            arr = np.asarray(constants[v.name], dtype=v.dtype)
            _check_fits(v, arr.shape)
            g.initializers[v.name] = arr
            continue
        if v.name in shapes:
            shape = tuple(shapes[v.name])
            if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
                raise ShapeError(f"specialize: the shape of {v.name!r} must be non-negative "
                                 f"ints, got {shape}")
            _check_fits(v, shape)
            v = ValueInfo(v.name, v.dtype, tuple(int(d) for d in shape))
        inputs.append(v)
    g.inputs = inputs
    g.value_info = {}
    return optimize(g)


def _check_fits(v: ValueInfo, shape) -> None:
    if v.shape is not None and (len(v.shape) != len(shape) or any(
            isinstance(d, int) and d != n for d, n in zip(v.shape, shape))):
        raise ShapeError(f"specialize: input {v.name!r} is {v.brief()}, which {tuple(shape)} "
                         f"does not fit")


def inline_constant_ifs(graph: Graph) -> tuple[Graph, int]:
    """Replace each If whose condition is a constant by the nodes of the branch it takes (its
    values and initializers renamed under the If's name where they would clash), and an
    Identity per output. Returns (graph, how many were inlined)."""
    ifs = [n for n in graph.nodes if n.op_type == "If" and n.inputs[0] in graph.initializers
           and graph.initializers[n.inputs[0]].size == 1]
    if not ifs:
        return graph, 0
    g = graph.copy()
    taken = set(g.initializers) | set(g.input_names) | {
        x for n in g.nodes for x in (n.name, *n.outputs)}
    for node in ifs:
        cond = bool(g.initializers[node.inputs[0]].reshape(-1)[0])
        branch = node.attrs["then_branch" if cond else "else_branch"]
        rename = {}
        for name in [*branch.initializers, *(o for m in branch.nodes for o in m.outputs if o)]:
            rename[name] = fresh_name(taken, f"{node.name}/{name}") if name in taken else name
            taken.add(rename[name])
        for k, arr in branch.initializers.items():
            g.initializers[rename[k]] = arr
        new = []
        for m in branch.nodes:
            nm = fresh_name(taken, m.name) if m.name in taken else m.name
            taken.add(nm)
            new.append(m.replace(name=nm, inputs=tuple(rename.get(i, i) for i in m.inputs),
                                 outputs=tuple(rename.get(o, o) for o in m.outputs)))
        for out, mine in zip(branch.outputs, node.outputs):
            if mine:
                nm = fresh_name(taken, f"{node.name}/{mine}")
                taken.add(nm)
                new.append(Node("Identity", nm, (rename.get(out.name, out.name),), (mine,)))
        g.replace_nodes([node], new)
    return g, len(ifs)


def fold_constants(graph: Graph, max_bytes: int = FOLD_MAX_BYTES) -> Graph:
    from ..ops import get_op_class
    g = graph.copy()
    consts = dict(g.initializers)
    kept = []
    for n in g.nodes:
        args = None
        if n.op_type in ("Shape", "Size") and n.inputs[0] not in consts:
            shape = g.static_shape(n.inputs[0])
            if shape is not None:  # only the shape is read: a zero-stride stand-in suffices
                stand_in = _stand_in(shape, np.float32)
                args = None if stand_in is None else [stand_in]
        elif all((not i) or i in consts for i in n.inputs):
            args = [consts[i] if i else None for i in n.inputs]
        if args is None or n.op_type in _NEVER_FOLD or _inflates(n, args, max_bytes):
            kept.append(n)
            continue
        try:
            op = get_op_class(n.op_type, n.name)(n, consts)
            outs = op.run(*args)
        except (QEngineError, ValueError, TypeError, IndexError, ArithmeticError, MemoryError):
            kept.append(n)  # leave it to fail (or not) at run time with the real inputs
            continue
        in_bytes = sum(a.nbytes for a in args if a is not None and n.op_type != "Shape")
        if sum(np.asarray(o).nbytes for o in outs) > max(max_bytes, 2 * in_bytes):
            kept.append(n)
            continue
        for name, value in zip(n.outputs, outs):
            if name:
                consts[name] = np.array(value)  # a copy; keeps 0-d arrays 0-d
    g.nodes = kept
    g.initializers = consts
    # a folded value may be a graph output; it then simply is an initializer
    return remove_dead_nodes(g)


def _stand_in(shape, dtype) -> np.ndarray | None:
    """A zero-stride array of `shape` (no memory behind it), or None when NumPy cannot
    describe an array that big (a declared dim of 2**40, say)."""
    if math.prod(shape) * np.dtype(dtype).itemsize > np.iinfo(np.intp).max:
        return None
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))


def _inflates(n, args, max_bytes) -> bool:
    """True when a shape-driven op would build a big array: check before allocating it."""
    if n.op_type not in ("ConstantOfShape", "Expand"):
        return False
    shape = args[0] if n.op_type == "ConstantOfShape" else args[1]
    if shape is None or shape.dtype.kind not in "iu":
        return True
    elements = 1
    for d in np.asarray(shape).reshape(-1).tolist():
        elements *= max(int(d), 1)
    return elements * 8 > max_bytes


# LSTM/GRU: never all-constant in practice, weights stay as is; DequantizeLinear of a constant
# is a quantized weight (qengine/qdq): folding it to float would lose what the lowering needs
_NEVER_FOLD = frozenset({"LSTM", "GRU", "DequantizeLinear"})

_SAME_SHAPE = frozenset({"Relu", "Tanh", "Sigmoid", "Neg", "Exp", "Sqrt", "Abs", "Identity",
                         "LeakyRelu", "Softmax", "LogSoftmax", "Clip", "Cast", "HardSigmoid",
                         "HardSwish", "Erf", "Gelu", "Not", "Log", "Reciprocal", "Ceil",
                         "Floor", "Round", "Sign"})
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sum", "Max", "Min", "Mean", "Mod",
                        "PRelu"})


def infer_shapes(graph: Graph) -> Graph:
    """Fill `value_info` with static shapes/dtypes where that is cheap and certain.

    Unknown cases are simply left out; nothing here is relied on for correctness at run time.
    """
    g = graph.copy()
    info = {v.name: v for v in g.inputs}
    info.update(g.value_info)
    for k, v in g.initializers.items():
        info[k] = ValueInfo(k, v.dtype.name, tuple(v.shape))

    def shape(name):
        v = info.get(name)
        if v is None or v.shape is None or not all(isinstance(d, int) for d in v.shape):
            return None
        return v.shape

    for n in g.nodes:
        out = None
        try:
            s0 = shape(n.inputs[0]) if n.inputs and n.inputs[0] else None
            dtype = info[n.inputs[0]].dtype if n.inputs and n.inputs[0] in info else None
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                out = _infer_qdq(n, info, g)
            elif n.op_type in _SAME_SHAPE and s0 is not None:
                if n.op_type == "Cast":
                    dtype = n.attrs["to"]
                out = [(s0, dtype)]
            elif n.op_type in _BROADCAST and s0 is not None and \
                    all(shape(i) is not None for i in n.inputs[1:]):
                out = [(tuple(np.broadcast_shapes(s0, *(shape(i) for i in n.inputs[1:]))),
                        dtype)]
            elif n.op_type == "Size":
                out = [((), "int64")]
            elif n.op_type == "ConstantOfShape" and n.inputs[0] in g.initializers:
                dims = tuple(int(d) for d in g.initializers[n.inputs[0]].reshape(-1))
                out = [(dims, n.attrs.get("dtype", "float32"))]
            elif n.op_type == "Transpose" and s0 is not None:
                perm = n.attrs.get("perm") or list(range(len(s0)))[::-1]
                out = [(tuple(s0[p] for p in perm), dtype)]
            elif n.op_type in ("MatMul", "Gemm", "LSTM", "GRU"):
                out = _infer_special(n, s0, shape, dtype, g)
            elif n.op_type in _LAYOUT:
                out = _infer_by_running(n, info, shape, g)
            else:
                out = _infer_by_hook(n, shape, dtype, g)
        except (ValueError, IndexError, KeyError, TypeError):
            out = None
        if out is None:
            out = _infer_rank(n, info, g.initializers)
        for name, (s, dt) in zip(n.outputs, out or ()):
            if name and s is not None and dt is not None:
                info[name] = g.value_info[name] = ValueInfo(name, dt, s)
    return g


def _infer_qdq(n, info, g):
    """Q/DQ keep the shape (symbolic dims too); Q's dtype is its zero point's (uint8 without
    one), DQ's float32."""
    src = info.get(n.inputs[0])
    if src is None:
        return None
    if n.op_type == "DequantizeLinear":
        return [(src.shape, "float32")]
    zp = g.initializers.get(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    return [(src.shape, "uint8" if zp is None else zp.dtype.name)]


# ops whose output has the input's rank and dtype (its spatial sizes may differ)
_SAME_RANK = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                        "BatchNormalization", "LRN"})


def _infer_rank(n, info, inits):
    """Dtype and rank (dims kept where certain, else None) when the static shapes are unknown
    (symbolic batch or image sizes): enough for passes that need to know a value is a float32
    tensor of rank 4 (qengine/graph/chains.py, the static int8 layouts)."""
    v = info.get(n.inputs[0]) if n.inputs and n.inputs[0] else None
    if v is None or v.shape is None or len(n.outputs) != 1:
        return None
    op, rank = n.op_type, len(v.shape)
    if op in _SAME_SHAPE or op == "ElementwiseChain":
        return [(v.shape, n.attrs["to"] if op == "Cast" else v.dtype)]
    if op in _SAME_RANK:
        return [((v.shape[0],) + (None,) * (rank - 1), v.dtype)]
    if op == "Shape":                          # a 1-D int64 of static length: the rank
        start, end = n.attrs.get("start", 0), n.attrs.get("end")
        end = rank if end is None else end
        start, end = (min(max(i + rank if i < 0 else i, 0), rank) for i in (start, end))
        return [((max(end - start, 0),), "int64")]
    const = inits.get(n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None
    out_rank = None
    if op in ("Transpose", "Slice", "Concat", "Pad"):
        out_rank = rank
    elif op == "Flatten":
        out_rank = 2
    elif op == "Reshape" and const is not None and const.ndim == 1:
        out_rank = const.size
    elif op == "Reshape" and info.get(n.inputs[1]) is not None and \
            info[n.inputs[1]].shape is not None and len(info[n.inputs[1]].shape) == 1 and \
            isinstance(info[n.inputs[1]].shape[0], int):
        out_rank = info[n.inputs[1]].shape[0]        # a shape computed at run time
    elif op in ("Squeeze", "Unsqueeze") and const is not None:
        out_rank = rank + (const.size if op == "Unsqueeze" else -const.size)
    elif op.startswith("Reduce") and const is not None:
        out_rank = rank if n.attrs.get("keepdims", 1) else rank - const.size
    elif op == "MatMul" and info.get(n.inputs[1]) is not None and \
            info[n.inputs[1]].shape is not None:
        out_rank = max(rank, len(info[n.inputs[1]].shape))
    if out_rank is not None and out_rank >= 0:
        return [((None,) * out_rank, v.dtype)]
    if n.op_type in _BROADCAST:
        others = [info.get(i) for i in n.inputs[1:]]
        if any(o is None or o.shape is None for o in others):
            return None
        ranks = [len(v.shape)] + [len(o.shape) for o in others]
        shapes = [v.shape] + [o.shape for o in others]
        if all(len(sh) == ranks[0] for sh in shapes) and all(sh == v.shape for sh in shapes):
            return [(v.shape, v.dtype)]
        return [((None,) * max(ranks), v.dtype)]
    return None


# Ops whose output shape follows from input shapes plus constant inputs: infer by running the op
# on zero-stride stand-ins (exact, and no second copy of every op's shape rules to maintain).
_LAYOUT = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Slice", "Expand",
                     "Split", "Gather", "Shape", "Pad"})
_INFER_MAX_ELEMENTS = 1 << 20


def _infer_by_running(n, info, shape, g):
    from ..ops import get_op_class
    args = []
    for name in n.inputs:
        if not name:
            args.append(None)
        elif name in g.initializers:
            args.append(g.initializers[name])
        else:
            s = shape(name)
            if s is None or math.prod(s) > _INFER_MAX_ELEMENTS:
                return None
            args.append(_stand_in(s, info[name].dtype))
    try:
        outs = get_op_class(n.op_type, n.name)(n, g.initializers).run(*args)
    except (QEngineError, ValueError, TypeError, IndexError, ArithmeticError, MemoryError):
        return None
    return [(tuple(o.shape), o.dtype.name) for o in outs]


def _infer_by_hook(n, shape, dtype, g):
    """Ops that know their own shape rule (`Op.infer_shapes`: Conv, pools, norms, ...)."""
    from ..ops import get_op_class, is_registered
    if not is_registered(n.op_type) or dtype is None:
        return None
    cls = get_op_class(n.op_type, n.name)
    try:
        attrs = cls.check_node(n)
    except QEngineError:
        return None
    shapes = cls.infer_shapes(attrs, [shape(i) if i else None for i in n.inputs],
                              [g.initializers.get(i) for i in n.inputs])
    if shapes is None:
        return None
    return [(None if s is None else tuple(int(d) for d in s), dtype) for s in shapes]


def _infer_special(n, s0, shape, dtype, g):
    if s0 is None:
        return None
    if n.op_type == "MatMul":
        s1 = shape(n.inputs[1])
        if s1 is None or len(s0) < 2 or len(s1) < 2:
            return None
        batch = np.broadcast_shapes(s0[:-2], s1[:-2])
        return [(tuple(batch) + (s0[-2], s1[-1]), dtype)]
    if n.op_type == "Gemm":
        s1 = shape(n.inputs[1])
        if s1 is None:
            return None
        m = s0[1] if n.attrs.get("transA") else s0[0]
        k = s1[0] if n.attrs.get("transB") else s1[1]
        return [((m, k), dtype)]
    # LSTM / GRU
    w = g.initializers.get(n.inputs[1]) if len(n.inputs) > 1 else None
    r = g.initializers.get(n.inputs[2]) if len(n.inputs) > 2 else None
    if w is None or r is None or len(s0) != 3:
        return None
    d, h = w.shape[0], r.shape[-1]
    if n.attrs.get("layout", 0) == 0:
        t, b = s0[0], s0[1]
        y, yh = (t, d, b, h), (d, b, h)
    else:
        b, t = s0[0], s0[1]
        y, yh = (b, t, d, h), (b, d, h)
    return [(y, dtype), (yh, dtype), (yh, dtype)]


def optimize(graph: Graph, *, fold_batch_norm: bool = True,
             fuse_activations: bool = False, fold_max_bytes: int = FOLD_MAX_BYTES,
             fuse_elementwise: bool = True, fuse_squeeze_excite: bool = True,
             fuse_layer_norm: bool = True, fuse_matmul_bias: bool = True) -> Graph:
    """The standard pipeline, every step output-preserving:

    shape inference → constant folding → dead-node removal (to a fixed point), then Identity
    removal, MatMul + bias Add into one Gemm (if `fuse_matmul_bias`), BatchNormalization /
    per-channel Mul·Add folding into Conv/Gemm (if
    `fold_batch_norm`), activation fusion into Conv/Gemm (if `fuse_activations`: it adds
    `fused_activation` attributes, which a consumer of the graph must understand — the static
    int8 workflow does, the dynamic one keeps fused Gemms in float), the decomposed forms of
    LayerNorm (if `fuse_layer_norm`) and squeeze-and-excitation blocks (if
    `fuse_squeeze_excite`) into one node each (qengine/graph/decomposed.py), elementwise runs
    into ElementwiseChain nodes (if `fuse_elementwise`, qengine/graph/chains.py) — these three
    bit-exact in float32 — and a final shape inference so `value_info` describes the
    optimized graph.
    """
    from . import chains, decomposed, fusion, layout
    g = graph
    # a round resolves the shapes up to the next Reshape whose target is computed from a Shape
    # (one per attention block in torch's exports), or an If whose condition just became a
    # constant: enough rounds for a deep stack of them
    for _ in range(64):
        before = len(g.nodes)
        g = remove_dead_nodes(fold_constants(infer_shapes(g), fold_max_bytes))
        g, inlined = inline_constant_ifs(g)
        if len(g.nodes) == before and not inlined:
            break
    if any(n.subgraphs() for n in g.nodes):   # If branches that stay, Loop bodies: optimized
        options = dict(fold_batch_norm=fold_batch_norm, fuse_activations=fuse_activations,
                       fold_max_bytes=fold_max_bytes, fuse_elementwise=fuse_elementwise,
                       fuse_squeeze_excite=fuse_squeeze_excite, fuse_layer_norm=fuse_layer_norm,
                       fuse_matmul_bias=fuse_matmul_bias)
        g = g.copy()
        g.nodes = [n.replace(attrs={**n.attrs, **{k: optimize(b, **options)
                                                  for k, b in n.subgraphs()}})
                   if n.subgraphs() else n for n in g.nodes]
    g = fusion.remove_identities(g)
    if fuse_matmul_bias:
        g = fusion.fuse_matmul_bias(g)
    if fold_batch_norm:
        g = fusion.fold_batch_norm(g)
    if fuse_activations:
        g = fusion.fuse_activations(g)
    if fuse_layer_norm:
        g = decomposed.fuse_layer_norm(infer_shapes(g))
    if fuse_squeeze_excite:
        g = decomposed.fuse_squeeze_excite(g)
    if fuse_elementwise:
        g = chains.fuse_elementwise(infer_shapes(g))
    g = layout.simplify_layout(infer_shapes(g))
    g = infer_shapes(remove_dead_nodes(g))
    g.verify()
    return g
