"""Emitting ONNX nodes for the export (qengine/export/rules.py): the node list being built,
float elementwise programs (ElementwiseChain / QLut) as ONNX ops, fused clamps, float nodes."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError
from .layout import DYNAMIC_OPS, INTEGER_OPS, fail
from ..graph.ir import Graph, Node, fresh_name
from ..quantized import params as P


#: ONNX TensorProto element types of qengine's dtype names
ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6,
              "int64": 7, "bool": 9, "float16": 10, "float64": 11, "uint32": 12, "uint64": 13}


class Emitter:
    """The raised graph being built: nodes, initializers and fresh names."""

    def __init__(self, g: Graph):
        self.g = g
        self.nodes: list[Node] = []
        self.inits: dict[str, np.ndarray] = {}
        self.used = {v for n in g.nodes for v in (*n.inputs, *n.outputs)} | \
            set(g.initializers) | set(g.input_names)
        self.node_names: set[str] = set()   # (ONNX names nodes and values apart)
        self._consts: dict = {}

    def node_name(self, base: str) -> str:
        return fresh_name(self.node_names, base)

    def name(self, base: str) -> str:
        return fresh_name(self.used, base)

    def node(self, op, inputs, outputs, name=None, **attrs) -> None:
        self.nodes.append(Node(op, self.node_name(name or f"{outputs[0]}.{op}"), tuple(inputs),
                               tuple(outputs), attrs))

    def init(self, base: str, arr) -> str:
        name = self.name(base)
        self.inits[name] = np.array(arr, order="C")  # (ascontiguousarray makes 0-d 1-d)
        return name

    def const(self, arr, dtype) -> str:
        """A shared small constant (scales, zero points, clip bounds)."""
        a = np.asarray(arr, dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{a.dtype.name}_{len(self._consts)}", a)
        return self._consts[key]

    def op(self, op, inputs, base, name=None, **attrs) -> str:
        """One node with one fresh output; returns the output's name."""
        out = self.name(base)
        self.node(op, inputs, [out], name, **attrs)
        return out

    def retarget(self, y: str, out: str) -> None:
        """Make value y, just computed, be called `out` (a graph's value name)."""
        last = self.nodes[-1] if self.nodes else None
        if last is not None and last.outputs[0] == y and y != out:
            self.nodes[-1] = last.replace(outputs=(out, *last.outputs[1:]))
        elif y != out:
            self.node("Identity", [y], [out])


# ----------------------------------------------------------------------------- elementwise
def chain_nodes(o: Emitter, x: str, steps, base: str) -> str:
    """The ONNX nodes of an ElementwiseChain program (qengine/ops/chain.py) on float x; returns
    the result's name. Each step is the ONNX node it was fused from, so ORT, OpenVINO and our
    own fusion pass see the original subgraph."""
    binary = {"add": ("Add", False), "sub": ("Sub", False), "rsub": ("Sub", True),
              "mul": ("Mul", False), "div": ("Div", False), "rdiv": ("Div", True),
              "max": ("Max", False), "rmax": ("Max", True), "min": ("Min", False),
              "rmin": ("Min", True)}
    unary = {"neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "exp": "Exp", "sigmoid": "Sigmoid",
             "tanh": "Tanh", "erf": "Erf"}
    regs, acc = {0: x}, x
    for name, reg, c in steps:
        if name == "store":
            regs[reg] = acc
        elif name == "load":
            acc = regs[reg]
        elif name in binary:
            op, swap = binary[name]
            v = regs[reg] if reg >= 0 else o.const(c, np.float32)
            acc = o.op(op, [v, acc] if swap else [acc, v], f"{base}.{name}")
        elif name in ("cliplo", "cliphi"):
            bound = o.const(c, np.float32)
            acc = o.op("Clip", [acc, bound] if name == "cliplo" else [acc, "", bound],
                       f"{base}.{name}")
        elif name == "leaky":
            acc = o.op("LeakyRelu", [acc], f"{base}.leaky", alpha=float(c))
        elif name == "square":
            acc = o.op("Mul", [acc, acc], f"{base}.square")
        elif name in unary:
            acc = o.op(unary[name], [acc], f"{base}.{name}")
        else:
            raise ModelError(f"{base}: chain step {name!r} has no ONNX form in this exporter")
    return acc


def lut_nodes(o: Emitter, x: str, a: dict, base: str, opset: int) -> str:
    """The float ONNX op(s) of a QLut's function on x."""
    fn, alpha, beta = a.get("function", "relu"), a.get("alpha"), a.get("beta")
    if fn == "chain":
        from ..ops.chain import steps_of
        return chain_nodes(o, x, steps_of(a), base)
    simple = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
    if fn in simple:
        return o.op(simple[fn], [x], f"{base}.{fn}")
    if fn == "hardsigmoid":
        return o.op("HardSigmoid", [x], f"{base}.hardsigmoid",
                    alpha=0.2 if alpha is None else float(alpha),
                    beta=0.5 if beta is None else float(beta))
    if fn == "leakyrelu":
        return o.op("LeakyRelu", [x], f"{base}.leakyrelu",
                    alpha=0.01 if alpha is None else float(alpha))
    if fn == "hardswish":
        if opset >= 14:
            return o.op("HardSwish", [x], f"{base}.hardswish")
        hs = o.op("HardSigmoid", [x], f"{base}.hardsigmoid", alpha=1.0 / 6, beta=0.5)
        return o.op("Mul", [x, hs], f"{base}.hardswish")
    if fn == "clip":
        return clip_node(o, x, alpha, beta, base)
    raise ModelError(f"{base}: QLut function {fn!r} has no ONNX form in this exporter")


def clip_node(o: Emitter, x, lo, hi, base) -> str:
    ins = [x, "" if lo is None or lo == -math.inf else o.const(lo, np.float32),
           "" if hi is None or hi == math.inf else o.const(hi, np.float32)]
    while ins[-1] == "":
        ins.pop()
    return o.op("Clip", ins, f"{base}.clip")


def activation_nodes(o: Emitter, y: str, a: dict, prefix: str, base: str) -> str:
    """A fused output clamp (integer ops' activation attrs) as a Relu / Clip node."""
    act = a.get(f"{prefix}activation", "")
    if act == "":
        return y
    if act == "relu":
        return o.op("Relu", [y], f"{base}.relu")
    if act == "clip":
        return clip_node(o, y, a.get(f"{prefix}activation_min"),
                         a.get(f"{prefix}activation_max"), base)
    raise ModelError(f"{base}: activation {act!r} is not relu or clip")


def clamp_is_noop(a: dict, prefix: str, y_scale, y_zp) -> bool:
    """True when the fused clamp cuts nothing off uint8 [0, 255] (a QOperator op, which has no
    clamp, then computes the same bytes: saturation is the clamp)."""
    act = a.get(f"{prefix}activation", "")
    if act == "":
        return True
    spec = "relu" if act == "relu" else ("clip", a.get(f"{prefix}activation_min"),
                                         a.get(f"{prefix}activation_max"))
    return P.clamp_range(spec, np.float32(y_scale), int(y_zp)) == (0, 255)


def float_node(o: Emitter, n: Node, opset: int) -> None:
    """A float node of the graph, as ONNX: ElementwiseChain decomposed, a Conv/Gemm's fused
    activation (graph/passes.py fuse_activations) as its own node, qengine-only attributes
    dropped."""
    if n.op_type == "ElementwiseChain":
        from ..ops.chain import steps_of
        o.retarget(chain_nodes(o, n.inputs[0], steps_of(n.attrs), n.name), n.outputs[0])
        return
    if n.op_type == "SqueezeExcite":
        se_nodes(o, n)
        return
    if n.op_type == "Cast":          # qengine names the dtype, ONNX numbers it
        n = n.replace(attrs={"to": ONNX_TYPES[n.attrs["to"]]})
    if n.op_type == "ConstantOfShape":
        constant_of_shape_nodes(o, n)
        return
    if n.op_type == "LayerNormalization" and "divide" in n.attrs:
        if n.attrs["divide"]:
            layer_norm_nodes(o, n)
            return
        n = n.replace(attrs={k: v for k, v in n.attrs.items() if k != "divide"})
    if n.op_type in INTEGER_OPS or n.op_type in DYNAMIC_OPS:
        fail(n, "this qengine op has no ONNX export rule")
    attrs = {k: v for k, v in n.attrs.items()
             if k not in ("fused_activation", "fused_activation_params", "fused_nodes")}
    act = n.attrs.get("fused_activation", "")
    if not act:
        o.node(n.op_type, n.inputs, n.outputs, name=n.name, **attrs)
        return
    y = o.name(f"{n.outputs[0]}.pre_{act.lower()}")
    o.node(n.op_type, n.inputs, [y, *n.outputs[1:]], name=n.name, **attrs)
    params = list(n.attrs.get("fused_activation_params") or [])
    if act == "Relu":
        o.node("Relu", [y], [n.outputs[0]])
    elif act == "LeakyRelu":
        o.node("LeakyRelu", [y], [n.outputs[0]], alpha=float(params[0]))
    else:
        o.retarget(clip_node(o, y, params[0], params[1], n.name), n.outputs[0])


def se_nodes(o: Emitter, n: Node) -> None:
    """A fused squeeze-and-excitation block (qengine/ops/squeeze_excite.py) as the ONNX nodes it
    was fused from: pool → Conv → activation chain → Conv → gate chain → Mul."""
    x, w1, b1, w2, b2 = n.inputs
    base = n.name
    p = o.name(f"{base}.pooled")
    if n.attrs.get("pool", "GlobalAveragePool") == "ReduceMean":
        axes = o.const([2, 3], np.int64)
        o.node("ReduceMean", [x, axes], [p], name=f"{base}.pool", keepdims=1)
    else:
        o.node("GlobalAveragePool", [x], [p], name=f"{base}.pool")
    c1 = o.name(f"{base}.squeeze")
    o.node("Conv", [p, w1] + ([b1] if b1 else []), [c1], name=f"{base}.conv1")
    a = chain_nodes(o, c1, _se_steps(n, "act"), f"{base}.act")
    c2 = o.name(f"{base}.excite")
    o.node("Conv", [a, w2] + ([b2] if b2 else []), [c2], name=f"{base}.conv2")
    gate = chain_nodes(o, c2, _se_steps(n, "gate"), f"{base}.gate")
    o.node("Mul", [x, gate], [n.outputs[0]], name=f"{base}.scale")


def _se_steps(n: Node, prefix: str):
    from ..ops.chain import steps_of
    return steps_of({k: n.attrs[f"{prefix}_{k}"] for k in ("steps", "registers", "constants")})


def layer_norm_nodes(o: Emitter, n: Node) -> None:
    """qengine's LayerNormalization(divide=1) — the decomposed LayerNorm of TorchScript and
    paddle2onnx exports, fused (qengine/graph/decomposed.py) — as those ONNX ops again, in the
    same order, so the file computes what qengine computes."""
    x, scale = n.inputs[0], n.inputs[1]
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    axis = int(n.attrs.get("axis", -1))
    base = n.name
    info = o.g.value_info.get(x) or next((v for v in o.g.inputs if v.name == x), None)
    if axis >= 0:
        if info is None or info.shape is None:
            fail(n, "the input's rank is unknown, so axis >= 0 cannot be written as ReduceMean "
                    "axes")
        axis -= len(info.shape)
    axes = o.const(list(range(axis, 0)), np.int64)
    eps = o.const(float(n.attrs.get("epsilon", 1e-5)), np.float32)
    mean = o.op("ReduceMean", [x, axes], f"{base}.mean", f"{base}.mean", keepdims=1)
    d = o.op("Sub", [x, mean], f"{base}.centered", f"{base}.sub")
    var = o.op("ReduceMean", [o.op("Mul", [d, d], f"{base}.sq", f"{base}.sq"), axes],
               f"{base}.var", f"{base}.var", keepdims=1)
    sd = o.op("Sqrt", [o.op("Add", [var, eps], f"{base}.var_eps", f"{base}.add_eps")],
              f"{base}.std", f"{base}.sqrt")
    y = o.op("Mul", [o.op("Div", [d, sd], f"{base}.normed", f"{base}.div"), scale],
             f"{base}.scaled", f"{base}.scale")
    if bias:
        y = o.op("Add", [y, bias], f"{base}.out", f"{base}.bias")
    o.retarget(y, n.outputs[0])

def constant_of_shape_nodes(o: Emitter, n: Node) -> None:
    """qengine's ConstantOfShape(value, dtype) — attributes, where ONNX wants a one-element
    tensor attribute — as ConstantOfShape (float zeros) + Add(value) + Cast(dtype)."""
    value, dtype = float(n.attrs.get("value", 0.0)), n.attrs.get("dtype", "float32")
    y = o.op("ConstantOfShape", list(n.inputs), f"{n.outputs[0]}.zeros", n.name)
    if value:
        y = o.op("Add", [y, o.const(value, np.float32)], f"{n.outputs[0]}.filled")
    if dtype != "float32":
        y = o.op("Cast", [y], f"{n.outputs[0]}.cast", to=ONNX_TYPES[dtype])
    o.retarget(y, n.outputs[0])