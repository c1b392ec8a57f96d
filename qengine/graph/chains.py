"""`fuse_elementwise`: runs of elementwise nodes over one tensor become one ElementwiseChain node.

Exporters write activations as small graphs — HardSwish as x·Clip(x+3, 0, 6)/6 (or
x·relu6(x+3)/6, or ·(1/6)), GELU as x·0.5·(1+Erf(x/√2)), SiLU as x·Sigmoid(x), a learnt ·a + b
after them (PaddleOCR) — which the executor would run as one NumPy pass, one temporary and one
dispatch per node. This pass finds every maximal such run and replaces it with one node holding
the run as a chain program (qengine/ops/chain.py), run as one compiled pass.

What may join a chain (`_form`): Relu, Sigmoid, Tanh, Exp, Erf, Neg, Abs, Sqrt, LeakyRelu,
HardSigmoid, HardSwish, Clip with constant scalar bounds, Pow with the constant exponent 2, and
Add/Sub/Mul/Div/Max/Min whose other operand is a float scalar constant or a value of the same
chain (the input x or an earlier result). A chain has one tensor input, one output and a float32
input; every value inside it is read only inside it (a value with another reader, or a graph
output, ends the chain there: the rest may start a chain of its own). Nothing is matched by
shape alone: each node becomes the steps that compute exactly what that node computes, so a
lookalike with other constants is fused into a chain that computes *its* function, never into
the one it resembles; `pattern` only labels programs that are exactly a known activation.

Not started by a Relu/Clip read from a Conv/Gemm with no other reader: that clamp belongs to the
producer (fuse_activations in float, the requantize clamp in static int8).
"""
from __future__ import annotations

import math

import numpy as np

from ..ops.chain import MAX_STEPS, REGISTERS, chain_attrs
from ..ops.elementwise import HardSwish, hard_sigmoid_steps
from .ir import Graph, Node

_UNARY = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Erf": "erf", "Neg": "neg",
          "Abs": "abs", "Sqrt": "sqrt"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min"}
_SWAPPED = {"add": "add", "mul": "mul", "sub": "rsub", "div": "rdiv", "max": "rmax",
            "min": "rmin"}
SELF = "self"       # marks "the register holding this node's input" in a unary form's steps


def _f32(v) -> float:
    return float(np.float32(v))


def _rank(g: Graph, v: str):
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return None if info is None or info.shape is None else len(info.shape)


def _dtype(g: Graph, v: str):
    info = g.value_info.get(v) or next((i for i in g.inputs if i.name == v), None)
    return None if info is None else info.dtype


def _scalar(g: Graph, v: str, rank):
    """The float value of a size-1 float initializer that broadcasts without changing the
    other operand's shape (rank no larger than that operand's), else None."""
    arr = g.initializers.get(v)
    if arr is None or arr.size != 1 or arr.dtype.kind != "f":
        return None
    if arr.ndim > 0 and (rank is None or arr.ndim > rank):
        return None
    c = float(arr.reshape(-1)[0])
    return c if math.isfinite(c) else None


def _form(g: Graph, n: Node):
    """How node `n` would run in a chain: ("unary", tensor, steps) with steps on acc (SELF = the
    node's own input as register), ("binary", step, a, b) with a, b each a tensor name or a
    ("const", value); None when it cannot join a chain."""
    if len(n.outputs) != 1 or not n.outputs[0] or not n.inputs or not n.inputs[0]:
        return None
    op, x = n.op_type, n.inputs[0]
    if x in g.initializers:
        if op not in _BINARY:
            return None
    rank = _rank(g, x)
    if op in _UNARY and len(n.inputs) == 1:
        return "unary", x, [(_UNARY[op], -1, 0.0)]
    if op == "Relu" and len(n.inputs) == 1:
        return "unary", x, [("max", -1, 0.0)]
    if op == "LeakyRelu":
        return "unary", x, [("leaky", -1, _f32(n.attrs.get("alpha", 0.01)))]
    if op == "HardSigmoid":
        return "unary", x, hard_sigmoid_steps(_f32(n.attrs.get("alpha", 0.2)),
                                              _f32(n.attrs.get("beta", 0.5)))
    if op == "HardSwish":
        return "unary", x, [s if s[1] != 0 else (s[0], SELF, 0.0) for s in HardSwish.STEPS]
    if op == "Clip":
        steps = []
        for idx, step in ((1, "max"), (2, "min")):
            b = n.inputs[idx] if len(n.inputs) > idx else ""
            if not b:
                continue
            arr = g.initializers.get(b)
            if arr is None or arr.size != 1 or arr.dtype.kind != "f" or arr.ndim > 1 or \
                    (arr.ndim == 1 and rank is None) or np.isnan(arr).any():
                return None
            c = float(arr.reshape(-1)[0])
            if math.isfinite(c):                  # an infinite bound changes nothing
                steps.append((step, -1, _f32(c)))
        return "unary", x, steps
    if op == "Pow" and len(n.inputs) == 2 and _scalar(g, n.inputs[1], rank) == 2.0:
        return "unary", x, [("square", -1, 0.0)]
    if op in _BINARY and len(n.inputs) == 2:
        a, b = n.inputs
        if not a or not b:
            return None
        ca = _scalar(g, a, _rank(g, b)) if a in g.initializers else None
        cb = _scalar(g, b, rank) if b in g.initializers else None
        if (a in g.initializers and ca is None) or (b in g.initializers and cb is None):
            return None
        if ca is not None and cb is not None:
            return None                            # constant folding's job
        return ("binary", _BINARY[op], ("const", _f32(ca)) if ca is not None else a,
                ("const", _f32(cb)) if cb is not None else b)
    return None


def _tensors(form) -> list[str]:
    if form[0] == "unary":
        return [form[1]]
    return list(dict.fromkeys(v for v in form[2:] if not isinstance(v, tuple)))


class _Overflow(Exception):
    """The chain needs more registers or steps than the kernel has."""


def compile_chain(nodes, forms, x: str):
    """The program of chain `nodes` (in order) over input `x`: register allocation for values
    read again later. Raises _Overflow when it does not fit."""
    last_read = {}
    for i, f in enumerate(forms):
        for t in _tensors(f):
            last_read[t] = i
        if f[0] == "unary" and any(s[1] == SELF for s in f[2]):
            last_read[f[1]] = i
    reg_of, free, steps, acc = {x: 0}, list(range(1, REGISTERS)), [], x

    def save(v):
        if v in reg_of:
            return
        if not free:
            raise _Overflow
        r = free.pop(0)
        reg_of[v] = r
        steps.append(("store", r, 0.0))

    for i, (n, f) in enumerate(zip(nodes, forms)):
        if f[0] == "unary":
            need, other = f[1], None
        else:
            _, step, a, b = f
            if not isinstance(a, tuple) and (a == acc or isinstance(b, tuple)):
                need, other, name = a, b, step
            else:
                need, other, name = b, a, _SWAPPED[step]
        if acc != need:
            if last_read.get(acc, -1) >= i:
                save(acc)
            steps.append(("load", reg_of[need], 0.0))
            acc = need
        rereads = last_read.get(need, -1) > i or other == need or \
            (f[0] == "unary" and any(s[1] == SELF for s in f[2]))
        if rereads:
            save(need)
        if f[0] == "unary":
            steps += [(s, reg_of[need] if r == SELF else r, c) for s, r, c in f[2]]
        elif isinstance(other, tuple):
            steps.append((name, -1, other[1]))
        else:
            steps.append((name, reg_of[other], 0.0))
        acc = n.outputs[0]
        for v, r in list(reg_of.items()):
            if r and last_read.get(v, -1) <= i:
                del reg_of[v]
                free.append(r)
                free.sort()
    steps = [s for s in steps if not _identity(s)]
    if len(steps) > MAX_STEPS:
        raise _Overflow
    return steps


def _identity(step) -> bool:
    """Steps that return every float32 unchanged, ±0 and NaN included (x·1, x/1, x − (+0),
    x + (−0)): the Mul(x, 1.0) PaddlePaddle writes before a Sigmoid, for one."""
    name, reg, c = step
    if reg != -1:
        return False
    return (name in ("mul", "div") and c == 1.0) or \
        (name == "sub" and c == 0.0 and not math.copysign(1.0, c) < 0) or \
        (name == "add" and c == 0.0 and math.copysign(1.0, c) < 0)


# ---- labels: programs that are exactly a known activation ---------------------------------
_S6, _SQ2 = _f32(1 / 6), _f32(math.sqrt(2))
_HSWISH_TAILS = ([("mul", 0, 0.0), ("div", -1, 6.0)], [("mul", 0, 0.0), ("mul", -1, _S6)])
_KNOWN = {
    "HardSwish": [[("add", -1, 3.0), ("max", -1, 0.0), ("min", -1, 6.0)] + t
                  for t in _HSWISH_TAILS] +
                 [[("add", -1, 3.0), ("max", -1, 0.0), ("min", -1, 6.0), ("div", -1, 6.0),
                   ("mul", 0, 0.0)],
                  hard_sigmoid_steps(_S6, 0.5) + [("mul", 0, 0.0)]],
    # x/√2 (or ·1/√2), erf, +1, then ·x and ·0.5 in either order (TorchScript / dynamo)
    "GELU": [[(d, -1, c), ("erf", -1, 0.0), ("add", -1, 1.0)] + tail
             for d, c in (("div", _SQ2), ("mul", _f32(1 / math.sqrt(2))))
             for tail in ([("mul", 0, 0.0), ("mul", -1, 0.5)],
                          [("mul", -1, 0.5), ("mul", 0, 0.0)])],
    "SiLU": [[("sigmoid", -1, 0.0), ("mul", 0, 0.0)]],
    "HardSigmoid": [hard_sigmoid_steps(_S6, 0.5), hard_sigmoid_steps(0.2, 0.5)],
}


def label(steps) -> str:
    """The activation `steps` computes exactly, with '+affine' when only ·c / +c steps follow
    it; '' for any other program."""
    steps = [tuple(s) for s in steps]
    for name, forms in _KNOWN.items():
        for f in forms:
            if steps[:len(f)] == f:
                rest = steps[len(f):]
                if not rest:
                    return name
                if all(s[0] in ("mul", "add") and s[1] == -1 for s in rest):
                    return name + "+affine"
    return ""


# ---- the pass ---------------------------------------------------------------------------
class _Chain:
    def __init__(self, x):
        self.input, self.nodes, self.forms, self.values = x, [], [], {x}

    def add(self, n, form):
        self.nodes.append(n)
        self.forms.append(form)
        self.values.add(n.outputs[0])


def _clamp_of_producer(g: Graph, n: Node, producers, readers) -> bool:
    """True for a Relu/Clip that is the only reader of a Conv/Gemm output."""
    if n.op_type not in ("Relu", "Clip"):
        return False
    p = producers.get(n.inputs[0])
    return p is not None and p.op_type in ("Conv", "Gemm") and \
        len(readers.get(n.inputs[0], ())) == 1


def _find_chains(g: Graph):
    producers, readers = g.producers(), g.consumers()
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    chains, owner = [], {}
    for n in g.nodes:
        form = _form(g, n)
        if form is None:
            continue
        ts = _tensors(form)
        owners = list({id(owner[t]): owner[t] for t in ts if t in owner}.values())
        if len(owners) > 1 and len({c.input for c in owners}) == 1:
            # branches of one input meet here (x·0.5 and erf(x/√2) in GELU): one chain
            c = owners[0]
            for other in owners[1:]:
                for m, f in zip(other.nodes, other.forms):
                    c.add(m, f)
                    owner[m.outputs[0]] = c
                chains.remove(other)
            order = sorted(range(len(c.nodes)), key=lambda i: pos[id(c.nodes[i])])
            c.nodes, c.forms = [c.nodes[i] for i in order], [c.forms[i] for i in order]
            owners = [c]
        if len(owners) == 1:
            c = owners[0]
            if all(t in c.values for t in ts):
                c.add(n, form)
                owner[n.outputs[0]] = c
            continue
        if owners or len(ts) != 1 or _dtype(g, ts[0]) != "float32" or \
                _clamp_of_producer(g, n, producers, readers):
            continue
        c = _Chain(ts[0])
        c.add(n, form)
        owner[n.outputs[0]] = c
        chains.append(c)
    return chains, readers


def _longest_valid_prefix(g: Graph, c: _Chain, readers):
    """(nodes, steps) of the longest prefix of `c` (at least 2 nodes) whose intermediate
    values nobody outside it reads, or None."""
    outputs = set(g.output_names)
    for k in range(len(c.nodes), 1, -1):
        inside = {id(n) for n in c.nodes[:k]}
        if any(n.outputs[0] in outputs or
               any(id(r) not in inside for r in readers.get(n.outputs[0], ()))
               for n in c.nodes[:k - 1]):
            continue
        try:
            return c.nodes[:k], compile_chain(c.nodes[:k], c.forms[:k], c.input)
        except _Overflow:
            continue
    return None


def fuse_elementwise(graph: Graph) -> Graph:
    """Replace every fusable elementwise run by one ElementwiseChain node (module docstring).
    Output-preserving bit for bit in float32."""
    g = graph.copy()
    while True:
        chains, readers = _find_chains(g)
        fused = 0
        for c in chains:
            found = _longest_valid_prefix(g, c, readers)
            if found is None:
                continue
            nodes, steps = found
            last = nodes[-1]
            new = Node("ElementwiseChain", last.name, (c.input,), last.outputs,
                       chain_attrs(steps, label(steps)))
            ids = {id(n) for n in nodes}
            g.nodes = [new if n is last else n for n in g.nodes if id(n) not in ids or
                       n is last]
            fused += 1
        if not fused:
            break
    from .passes import remove_dead_nodes
    return remove_dead_nodes(g)       # constants only the fused nodes read


def activation_program(g: Graph, n: Node):
    """The chain steps of a single-input activation node (Relu, Sigmoid, HardSigmoid, ...,
    an ElementwiseChain), register 0 being its input; None for anything else."""
    if n.op_type == "ElementwiseChain":
        return list(zip(n.attrs["steps"], n.attrs["registers"], n.attrs["constants"]))
    if n.op_type in _BINARY or n.op_type == "Pow":
        return None
    form = _form(g, n)
    if form is None or form[0] != "unary":
        return None
    return [(s, 0 if r == SELF else r, c) for s, r, c in form[2]]
