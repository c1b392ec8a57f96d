"""Byte counts of graphs and nodes (model size as the engine file stores it)."""
from __future__ import annotations

from ..graph.ir import Graph, Node


def weight_bytes(graph: Graph) -> int:
    """Bytes of all initializers (weights, scales, biases and small shape constants)."""
    return int(sum(a.nbytes for a in graph.initializers.values()))


def node_weight_bytes(graph: Graph, node: Node) -> int:
    """Bytes of the initializers `node` reads (each counted once)."""
    names = {i for i in node.inputs if i in graph.initializers}
    return int(sum(graph.initializers[n].nbytes for n in names))
