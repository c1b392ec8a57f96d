"""1-D convolutions and pools as 2-D ones, so the int8 kernels (2-D, NHWC) run them.

A Conv with 3-D weights [O, I/g, k] on [N, C, L] is the 2-D Conv with weights [O, I/g, 1, k]
on [N, C, 1, L]: kernel, strides, dilations and pads gain a leading 1 / 0 for the new axis, so
every output element sums exactly the same products. MaxPool / AveragePool with one kernel
dim likewise. Each such node becomes Unsqueeze(axis 2) -> the 2-D node -> Squeeze(axis 2);
then a Squeeze followed (through ops that act on each element alone: ReLU, Clip with scalar
bounds, sigmoid, ...) by an Unsqueeze of the same axis is removed, so a chain of 1-D layers
stays 4-D from its first layer to its last and the int8 rewrite sees one 2-D chain.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node

AXIS = "qengine.conv1d.axis2"
#: ops that act on each element alone whatever the rank (scalar parameters only)
PER_ELEMENT = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
                         "Elu", "Selu", "Softplus", "Erf", "Exp", "Abs", "Neg", "Sqrt"})


def _is_1d(g: Graph, n: Node) -> bool:
    if n.op_type == "Conv":
        w = g.initializers.get(n.inputs[1]) if len(n.inputs) > 1 else None
        return w is not None and w.ndim == 3
    if n.op_type in ("MaxPool", "AveragePool"):
        return len(n.attrs.get("kernel_shape", ())) == 1 and len(n.outputs) == 1
    return False


def _lift(attrs: dict) -> dict:
    out = dict(attrs)
    for key, pad in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
        if key in out:
            out[key] = [pad, *out[key]]
    if "pads" in out:
        b, e = out["pads"]
        out["pads"] = [0, b, 0, e]
    return out


def _clip_scalar(g: Graph, n: Node) -> bool:
    return all(not v or (v in g.initializers and g.initializers[v].size == 1)
               for v in n.inputs[1:])


def as_2d(graph: Graph) -> Graph:
    """graph with its 1-D Conv / MaxPool / AveragePool run as 2-D ones (see the module doc);
    the same graph object when it has none."""
    if not any(_is_1d(graph, n) for n in graph.nodes):
        return graph
    g = graph.copy()
    g.initializers[AXIS] = np.array([2], np.int64)
    nodes = []
    for n in graph.nodes:
        if not _is_1d(graph, n):
            nodes.append(n)
            continue
        x4, y4 = f"{n.name}.2d_in", f"{n.name}.2d_out"
        ins = [x4, *n.inputs[1:]]
        if n.op_type == "Conv":
            w = graph.initializers[n.inputs[1]]
            ins[1] = f"{n.inputs[1]}.2d"
            g.initializers[ins[1]] = w[:, :, None, :]
        nodes += [Node("Unsqueeze", f"{n.name}.unsqueeze", (n.inputs[0], AXIS), (x4,)),
                  Node(n.op_type, n.name, tuple(ins), (y4,), _lift(n.attrs)),
                  Node("Squeeze", f"{n.name}.squeeze", (y4, AXIS), (n.outputs[0],))]
    g.nodes = nodes
    return _cancel(g)


def _cancel(g: Graph) -> Graph:
    """Remove Squeeze(axis 2) -> per-element ops -> Unsqueeze(axis 2) round trips."""
    while True:
        readers = g.consumers()
        outputs = set(g.output_names)

        def only_reader(v):
            r = readers.get(v, [])
            return r[0] if len(r) == 1 and v not in outputs else None
        found = None
        for s in g.nodes:
            if s.op_type != "Squeeze" or s.inputs[1:] != (AXIS,):
                continue
            chain, nxt = [], only_reader(s.outputs[0])
            while nxt is not None and (nxt.op_type in PER_ELEMENT or (
                    nxt.op_type == "Clip" and _clip_scalar(g, nxt))):
                chain.append(nxt)
                nxt = only_reader(nxt.outputs[0])
            if nxt is not None and nxt.op_type == "Unsqueeze" and nxt.inputs[1:] == (AXIS,):
                found = (s, chain, nxt)
                break
        if found is None:
            break
        s, chain, u = found
        # the Squeeze's readers read its 4-D input, the Unsqueeze's readers the chain's end
        rename = {s.outputs[0]: s.inputs[0],
                  u.outputs[0]: chain[-1].outputs[0] if chain else s.inputs[0]}
        nodes = []
        for n in g.nodes:
            if n is s or n is u:
                continue
            ins = tuple(rename.get(v, v) for v in n.inputs)
            nodes.append(Node(n.op_type, n.name, ins, n.outputs, n.attrs)
                         if ins != n.inputs else n)
        for c in chain:                     # their values are 4-D now
            for v in c.outputs:
                g.value_info.pop(v, None)
        g.nodes = nodes
    return g
