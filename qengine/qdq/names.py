"""Fresh names for a graph rewrite: never one the source graph already uses."""
from __future__ import annotations

from ..graph.ir import Graph, fresh_name


class Names:
    def __init__(self, g: Graph):
        self.used = {v for n in g.nodes for v in (*n.inputs, *n.outputs)} | \
            set(g.initializers) | set(g.input_names)

    def fresh(self, base: str) -> str:
        return fresh_name(self.used, base)
