"""Float islands: the parts of a static int8 graph that still compute in float, and their cost.

Static quantization leaves a node float when it has no int8 form (Softmax, ReduceMean, LSTM
...) or when asked to (`keep_float`). Between int8 regions such a node costs more than its own
time: a DequantizeU8 before it and a QuantizeU8 after it move every value across. An island is
a connected group of float nodes (linked by the float values they pass each other) together
with the DequantizeU8 / QuantizeU8 nodes at its edges; float nodes that touch no conversion
(a graph that is float from input to output) are not islands.

Cost, measured on one batch of real inputs (the calibration data in `qengine quantize`):
  * conversions       — how many DequantizeU8 / QuantizeU8 nodes the island has at its edges;
  * converted_values  — how many values those nodes convert per run of that batch;
  * ms / share        — the median time over `repeat` profiled runs of the island's float nodes
                        plus its conversions, and that time's share of the whole graph's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph.ir import Graph

_CONVERSIONS = ("DequantizeU8", "QuantizeU8")


@dataclass(frozen=True)
class FloatIsland:
    """One float island of a static int8 graph (module docstring). `nodes` are (name, op type)
    of its float nodes in graph order; `conversion_nodes` the names of its DequantizeU8 /
    QuantizeU8 nodes."""
    nodes: tuple
    conversion_nodes: tuple
    converted_values: int
    ms: float
    share: float

    @property
    def conversions(self) -> int:
        return len(self.conversion_nodes)


def float_islands(graph: Graph, feeds, repeat: int = 3) -> list[FloatIsland]:
    """The float islands of int8 `graph` with their cost on one batch `feeds` ({input name:
    array}), in graph order. Time is the median of `repeat` profiled runs per node."""
    from ..calibration.tap import TapSession
    from ..session import Session
    seen = {}                                   # value -> (dtype kind, size) on this batch
    TapSession(graph).run_tapped(
        feeds, lambda name, v: seen.__setitem__(name, (np.asarray(v).dtype.kind, np.size(v))))
    is_float = {n.name: n.op_type not in _CONVERSIONS and
                any(seen.get(o, ("?",))[0] == "f" for o in n.outputs if o)
                for n in graph.nodes}
    producer = {o: n for n in graph.nodes for o in n.outputs if o}
    parent = {n.name: n.name for n in graph.nodes}

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(a, b):
        parent[root(a)] = root(b)

    # float values link their float producer and consumers; a DequantizeU8 joins the island it
    # feeds, a QuantizeU8 the island it reads from
    for n in graph.nodes:
        for v in n.inputs:
            p = producer.get(v)
            if p is None or seen.get(v, ("?",))[0] != "f":
                continue
            if (is_float[n.name] or n.op_type == "QuantizeU8") and \
                    (is_float[p.name] or p.op_type == "DequantizeU8"):
                join(n.name, p.name)
    groups: dict[str, list] = {}
    for n in graph.nodes:
        if is_float[n.name] or n.op_type in _CONVERSIONS:
            groups.setdefault(root(n.name), []).append(n)

    _, profiles = Session(graph, nan="allow").profile(feeds, repeat=repeat)
    times: dict[str, list] = {}
    for p in profiles:
        for name, _, t in p.nodes:
            times.setdefault(name, []).append(t)
    median = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    total = sum(median.values()) or 1.0
    islands = []
    for members in groups.values():
        floats = [n for n in members if is_float[n.name]]
        convs = [n for n in members if n.op_type in _CONVERSIONS]
        if not floats or not convs:
            continue
        ms = sum(median.get(n.name, 0.0) for n in members)
        islands.append(FloatIsland(
            nodes=tuple((n.name, n.op_type) for n in floats),
            conversion_nodes=tuple(n.name for n in convs),
            converted_values=int(sum(seen.get(n.outputs[0], ("?", 0))[1] for n in convs)),
            ms=ms, share=ms / total))
    return islands
