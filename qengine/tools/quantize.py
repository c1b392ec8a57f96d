"""Quantization modes behind ``qengine quantize``: a registry mode name → handler.

A handler takes (Graph, QuantizeRequest) and returns the quantized Graph. Adding a mode
(static PTQ) is one function and one `@register_mode("static")`; the CLI's --mode choices and
its --calib option are read from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..graph.ir import Graph
from ..workflows.dynamic import QUANTIZABLE, DynamicQuantConfig, quantize_dynamic
from .sizes import node_weight_bytes


@dataclass(frozen=True)
class QuantizeRequest:
    """What the user asked for; each mode uses the fields that apply to it."""
    per_row: bool = False
    keep_float: frozenset = field(default_factory=frozenset)
    calib: Path | None = None           # calibration data (.npz), static mode


MODES: dict[str, Callable[[Graph, QuantizeRequest], Graph]] = {}


def register_mode(name: str):
    def deco(fn):
        MODES[name] = fn
        return fn
    return deco


@register_mode("dynamic")
def _dynamic(graph: Graph, req: QuantizeRequest) -> Graph:
    if req.calib is not None:
        raise ConfigError("--calib is for static mode; dynamic mode quantizes activations at "
                          "run time and needs no calibration data")
    return quantize_dynamic(graph, DynamicQuantConfig(per_row=req.per_row,
                                                      keep_float=req.keep_float))


@register_mode("static")
def _static(graph: Graph, req: QuantizeRequest) -> Graph:
    # Placeholder until static PTQ lands: fail early and say what the mode will need.
    if req.calib is None:
        raise ConfigError("static mode needs --calib DATA.npz (calibration inputs)")
    raise ConfigError("static quantization is not available yet; use --mode dynamic")


def quantize_graph(graph: Graph, mode: str, req: QuantizeRequest) -> Graph:
    if mode not in MODES:
        raise ConfigError(f"unknown quantization mode {mode!r}; choose from {sorted(MODES)}")
    return MODES[mode](graph, req)


def quantization_report(before: Graph, after: Graph) -> list[dict]:
    """One row per node of a quantizable op type in `before`: its name, op type before and
    after, and the bytes of weights it reads before and after. A node fused away by the
    quantizer (the Add of a MatMul bias) is counted with the node it was fused into."""
    after_by_name = {n.name: n for n in after.nodes}
    consumers = before.consumers()
    rows = []
    for node in before.nodes:
        if node.op_type not in QUANTIZABLE:
            continue
        new = after_by_name.get(node.name)
        old_bytes = node_weight_bytes(before, node)
        fused = [c for o in node.outputs for c in consumers.get(o, ())
                 if c.name not in after_by_name]
        old_bytes += sum(node_weight_bytes(before, c) for c in fused)
        quantized = new is not None and new.op_type != node.op_type
        rows.append({"node": node.name, "op": node.op_type,
                     "new_op": new.op_type if new is not None else None,
                     "quantized": quantized,
                     "fused": [c.name for c in fused] if quantized else [],
                     "bytes_before": old_bytes,
                     "bytes_after": node_weight_bytes(after, new) if new is not None else 0})
    return rows
