"""Byte counts of graphs and nodes (model size as the engine file stores it)."""
from __future__ import annotations

from ..graph.ir import Graph, Node


def weight_bytes(graph: Graph) -> int:
    """Bytes of all initializers (weights, scales, biases and small shape constants)."""
    return int(sum(a.nbytes for a in graph.initializers.values()))


def node_initializers(graph: Graph, node: Node) -> set:
    """Names of the initializers `node` reads."""
    return {i for i in node.inputs if i in graph.initializers}


def node_weight_bytes(graph: Graph, node: Node) -> int:
    """Bytes of the initializers `node` reads (each counted once)."""
    return initializer_bytes(graph, node_initializers(graph, node))


def initializer_bytes(graph: Graph, names) -> int:
    """Bytes of the named initializers, each counted once however many nodes share it (a
    tied weight is stored once)."""
    return int(sum(graph.initializers[n].nbytes for n in set(names)))
