"""Fresh names for a graph rewrite: never one the source graph already uses."""
from __future__ import annotations

from ..graph.ir import Graph


class Names:
    def __init__(self, g: Graph):
        self.used = {v for n in g.nodes for v in (*n.inputs, *n.outputs)} | \
            set(g.initializers) | set(g.input_names)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name
