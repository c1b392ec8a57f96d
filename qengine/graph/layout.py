"""`simplify_layout`: fewer layout nodes, same values, still plain ONNX.

Exporters write layout changes one small step at a time: torch's multi-head attention turns
its packed projection into heads as Reshape → Unsqueeze → Transpose → Squeeze, moves a
batch-1 axis with a Transpose, and splits each head with Reshape → Transpose → Reshape. Each
step is a node the executor dispatches (about a microsecond each, more than the step itself on
a transformer's 32×64 tensors). With static shapes known:

* a chain of reshape-like steps is one Reshape to the chain's final shape. Reshape-like:
  Reshape, Flatten, Squeeze, Unsqueeze, and a Transpose that only moves axes of size 1 (the
  other axes keep their order, so the bytes do not move);
* a Transpose of a Transpose is one Transpose (the permutations composed); one that permutes
  nothing, or a Reshape to the shape it already has, is removed;
* a Transpose followed by a step that only adds or drops axes of size 1 is one Transpose of
  the input reshaped (that Reshape then merges with whatever reshaped the input before);
* Reshape → per-element op → Reshape (the Gemm's Reshapes around an activation, see
  fusion.fuse_matmul_bias) runs the op on the unreshaped input, the two Reshapes one.

A node is only merged into what it reads: the earlier step stays when something else reads
it too, so no value anyone reads changes — except the per-element op's output, whose shape
changes, which is why that op must have one reader. A lone Squeeze / Unsqueeze is left alone.
"""
from __future__ import annotations

import numpy as np

from .conv1d import PER_ELEMENT
from .ir import Graph, Node, ValueInfo

_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _perm(n: Node, rank: int):
    perm = n.attrs.get("perm")
    return list(range(rank))[::-1] if perm is None else [int(p) for p in perm]


def _reshape_like(g: Graph, n: Node):
    """(input, output shape) when `n` only changes the shape of its input (statically known
    on both sides), else None."""
    if not n.inputs or len(n.outputs) != 1:
        return None
    s_in, s_out = g.static_shape(n.inputs[0]), g.static_shape(n.outputs[0])
    if s_in is None or s_out is None or int(np.prod(s_in)) != int(np.prod(s_out)):
        return None
    if n.op_type == "Transpose":
        perm = _perm(n, len(s_in))
        moved = [p for p in perm if s_in[p] != 1]
        return (n.inputs[0], s_out) if moved == sorted(moved) else None
    return (n.inputs[0], s_out) if n.op_type in _RESHAPES else None


# per-element on any shape: one float input, no shape-dependent parameter
_PER_ELEMENT = PER_ELEMENT | {"ElementwiseChain", "Erf", "Cast"}


class _Rewrite:
    """One pass over the nodes in order, rewriting each against its (already rewritten)
    producers. `nodes` is the new list; `at` maps a value to the index of its producer there."""

    def __init__(self, g: Graph):
        self.g, self.nodes, self.at = g, [], {}
        self.readers = {}
        for n in g.nodes:
            for i in n.inputs:
                self.readers[i] = self.readers.get(i, 0) + 1
        self.outputs = set(g.output_names)
        self.renamed: dict[str, str] = {}      # outputs of removed nodes -> the value they equal

    def producer(self, v):
        k = self.at.get(v)
        return None if k is None else self.nodes[k]

    def sole(self, v) -> bool:
        return self.readers.get(v, 0) == 1 and v not in self.outputs

    def add(self, n: Node):
        self.at[n.outputs[0]] = len(self.nodes)
        self.nodes.append(n)

    def visit(self, n: Node):
        if any(i in self.renamed for i in n.inputs):
            n = n.replace(inputs=tuple(self.renamed.get(i, i) for i in n.inputs))
        new = _merged(self, n)
        if isinstance(new, tuple):                       # ("alias", x): n's output equals x
            self.renamed[n.outputs[0]] = new[1]
        elif isinstance(new, list):
            for m in new:
                self.add(m)
        else:
            self.add(n)

    def info(self, v: str, like: str, shape) -> None:
        """value_info for a new value `v`: `like`'s dtype, `shape`."""
        ref = self.g.value_info.get(like)
        if ref is not None:
            self.g.value_info[v] = ValueInfo(v, ref.dtype, tuple(shape))


def simplify_layout(graph: Graph) -> Graph:
    """The rewrites of the module docstring, in one pass in node order. Needs `value_info`;
    only for graphs with static input shapes (the Reshapes it writes have static targets)."""
    from .passes import remove_dead_nodes
    if not graph.inputs_static():
        return graph
    r = _Rewrite(graph.copy())
    for n in graph.nodes:
        r.visit(n)
    r.g.nodes = [n for n in r.nodes if n is not None]
    return remove_dead_nodes(r.g)


def _reshape(r: _Rewrite, name: str, x: str, shape, out: str):
    """Reshape(x) to a static shape, merged with x's producer when that only reshapes too:
    [the node], or ("alias", value) when nothing is left to do."""
    p = r.producer(x)
    theirs = None if p is None else _reshape_like(r.g, p)
    if theirs is not None:
        x = theirs[0]
    if r.g.static_shape(x) == tuple(shape) and out not in r.outputs:
        return ("alias", x)
    target = r.g.unique_name(f"{name}_shape")
    r.g.initializers[target] = np.array(shape, np.int64)
    return [Node("Reshape", name, (x, target), (out,))]


def _merged(r: _Rewrite, n: Node):
    """What replaces `n`: a list of nodes, ("alias", value) when `n`'s output equals a value
    that exists already, or None (keep n)."""
    g = r.g
    p = r.producer(n.inputs[0]) if n.inputs else None
    if n.op_type == "Transpose" and len(n.inputs) == 1:
        s = g.static_shape(n.inputs[0])
        if s is None:
            return None
        perm = _perm(n, len(s))
        if perm == list(range(len(s))) and n.outputs[0] not in r.outputs:
            return ("alias", n.inputs[0])
        if p is not None and p.op_type == "Transpose" and g.static_shape(p.inputs[0]):
            inner = _perm(p, len(s))
            perm = [inner[k] for k in perm]
            if perm == list(range(len(s))) and n.outputs[0] not in r.outputs:
                return ("alias", p.inputs[0])
            return [n.replace(inputs=(p.inputs[0],), attrs={"perm": perm})]
    mine = _reshape_like(g, n)
    if mine is None:
        return None
    x, shape = mine
    if 0 in shape:
        return None             # a 0 in a Reshape target copies the input's dim
    if g.static_shape(x) == shape and n.outputs[0] not in r.outputs:
        return ("alias", x)
    if p is None:
        return None
    if _reshape_like(g, p) is not None:
        return _reshape(r, n.name, x, shape, n.outputs[0])
    if p.op_type == "Transpose" and r.sole(p.outputs[0]):
        return _transpose_then_reshape(r, n, p, shape)
    if p.op_type in _PER_ELEMENT and r.sole(p.outputs[0]) and len(p.outputs) == 1 and \
            all(i in g.initializers and g.initializers[i].size == 1 for i in p.inputs[1:]):
        q = r.producer(p.inputs[0])
        theirs = None if q is None else _reshape_like(g, q)
        if theirs is None or not r.sole(q.outputs[0]):
            return None
        # the op moves before the first Reshape: its output now has that Reshape's input shape
        k = r.at[p.outputs[0]]
        r.nodes[k] = p.replace(inputs=(theirs[0], *p.inputs[1:]))
        r.nodes[r.at[q.outputs[0]]] = None
        r.info(p.outputs[0], p.outputs[0], g.static_shape(theirs[0]))
        return _reshape(r, n.name, p.outputs[0], shape, n.outputs[0])
    return None


def _transpose_then_reshape(r: _Rewrite, n: Node, p: Node, shape):
    """Transpose p then `n`, which only adds / drops axes of size 1, as Reshape → Transpose:
    the input's axes of size > 1 in their order with a 1 appended for each 1 the output has,
    permuted straight to `shape`."""
    s = r.g.static_shape(p.inputs[0])
    if s is None:
        return None
    perm = _perm(p, len(s))
    big = [a for a in perm if s[a] != 1]                  # input axes in output order
    if [d for d in shape if d != 1] != [s[a] for a in big]:
        return None
    kept = sorted(big)                                    # the new input: kept axes, then ones
    ones = shape.count(1)
    new_in = [s[a] for a in kept] + [1] * ones
    order, k1 = [], len(kept)
    it = iter(kept.index(a) for a in big)
    for d in shape:
        if d == 1:
            order.append(k1)
            k1 += 1
        else:
            order.append(next(it))
    mid = r.g.unique_name(f"{n.name}_in")
    pre = _reshape(r, r.g.unique_name(f"{n.name}_reshape"), p.inputs[0], new_in, mid)
    if isinstance(pre, tuple):
        x, pre = pre[1], []
    else:
        x = mid
        r.info(mid, p.outputs[0], new_in)
    return pre + [Node("Transpose", n.name, (x,), n.outputs, {"perm": order})]


# ------------------------------------------------------------------------ runtime chains
_STEP_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Gather")


def _step(g: Graph, n: Node):
    """The LayoutChain step string of node n (its static output shape known), or None."""
    if n.op_type not in _STEP_OPS or len(n.outputs) != 1 or not n.inputs:
        return None
    s_in, s_out = g.static_shape(n.inputs[0]), g.static_shape(n.outputs[0])
    if s_in is None or s_out is None:
        return None
    if n.op_type == "Transpose":
        return "transpose:" + ",".join(str(p) for p in _perm(n, len(s_in)))
    if n.op_type == "Gather":
        idx = g.initializers.get(n.inputs[1]) if len(n.inputs) > 1 else None
        if idx is None or idx.ndim != 0 or idx.dtype.kind not in "iu":
            return None
        axis = int(n.attrs.get("axis", 0)) % len(s_in)
        i = int(idx)
        if not -s_in[axis] <= i < s_in[axis]:
            return None                          # out of range: the node says so at run time
        return f"index:{axis}:{i}"
    if all(v in g.initializers for v in n.inputs[1:] if v):   # shape / axes: constants
        return "reshape:" + ",".join(str(d) for d in s_out)
    return None


def fold_layout_chains(graph: Graph) -> Graph:
    """Runs of two or more layout nodes on one tensor (Reshape / Flatten / Squeeze / Unsqueeze
    with constant targets, Transpose, Gather of one constant index), every intermediate read
    by the next alone, every shape static, as one LayoutChain node each — for a Session's
    executor: the graph a user holds, saves or exports keeps its nodes. Only for graphs whose
    inputs have static shapes (a Session then accepts no other), so that value_info's shapes
    are the shapes every run sees."""
    if not graph.inputs_static():
        return graph
    g = graph.copy()
    readers = g.consumers()
    outputs = set(g.output_names)
    steps = {id(n): _step(g, n) for n in g.nodes}
    where = {id(n): k for k, n in enumerate(g.nodes)}
    nodes: list = list(g.nodes)
    taken: set = set()
    for n in g.nodes:
        if id(n) in taken or steps[id(n)] is None:
            continue
        run = [n]
        while True:
            last = run[-1].outputs[0]
            nxt = readers.get(last, [])
            if len(nxt) != 1 or last in outputs or steps[id(nxt[0])] is None or \
                    nxt[0].inputs[0] != last or nxt[0].inputs.count(last) != 1:
                break
            run.append(nxt[0])
        if len(run) < 2:
            continue
        taken.update(id(m) for m in run)
        for m in run[:-1]:
            nodes[where[id(m)]] = None
        # at the last node's place: the input was ready before the first one ran
        nodes[where[id(run[-1])]] = Node(
            "LayoutChain", "+".join(m.name for m in run), (n.inputs[0],), run[-1].outputs,
            {"steps": [steps[id(m)] for m in run],
             "shape_in": list(g.static_shape(n.inputs[0])), "fused_nodes": [m.name for m in run]})
    g.nodes = [m for m in nodes if m is not None]
    return g
