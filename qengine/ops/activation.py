"""Fused activations: how Conv and Gemm carry the elementwise op that followed them.

The `fuse_activations` pass removes a Relu / Clip / LeakyRelu that is the only reader of a
Conv or Gemm output and records it on the producer as two attributes:

    fused_activation         "" (none), "Relu", "Clip" or "LeakyRelu"
    fused_activation_params  floats: Relu → [], Clip → [min, max] (±inf allowed for an open
                             side), LeakyRelu → [alpha]

The FP32 op applies it to its output in place (`apply_activation`). For the int8 path,
`activation_bounds` gives the closed interval a clamp-type activation maps onto: Relu and Clip
are exactly an output clamp, so a quantized Conv can fold them into its requantize min/max
(and calibrate the output range after the activation). LeakyRelu is not a clamp and returns
None: an int8 kernel must apply it itself or leave it unfused.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError

ACTIVATIONS = ("", "Relu", "Clip", "LeakyRelu")
_N_PARAMS = {"": 0, "Relu": 0, "Clip": 2, "LeakyRelu": 1}

#: attribute specs to merge into an op's ATTRS
ACTIVATION_ATTRS = {"fused_activation": ("string", ""),
                    "fused_activation_params": ("floats", [])}


def check_activation(attrs, where: str) -> None:
    name, params = attrs["fused_activation"], attrs["fused_activation_params"]
    if name not in ACTIVATIONS:
        raise ModelError(f"{where}: fused_activation {name!r} is not one of {ACTIVATIONS}")
    if len(params) != _N_PARAMS[name]:
        raise ModelError(f"{where}: fused_activation {name!r} takes {_N_PARAMS[name]} params, "
                         f"got {params}")
    if name == "Clip" and not params[0] <= params[1]:
        raise ModelError(f"{where}: fused Clip needs min <= max, got {params}")
    if any(math.isnan(p) for p in params):
        raise ModelError(f"{where}: fused_activation_params must not be NaN, got {params}")


def activation_bounds(name: str, params) -> tuple[float, float] | None:
    """The clamp interval [lo, hi] equivalent to the activation, None if it is not a clamp."""
    if name == "":
        return (-math.inf, math.inf)
    if name == "Relu":
        return (0.0, math.inf)
    if name == "Clip":
        return (float(params[0]), float(params[1]))
    return None


def apply_activation(y: np.ndarray, name: str, params) -> np.ndarray:
    """Apply the fused activation to `y` in place (y is a fresh array the op owns)."""
    if name == "":
        return y
    if name == "LeakyRelu":
        alpha = y.dtype.type(params[0])
        np.multiply(y, np.where(y < 0, alpha, y.dtype.type(1)), out=y)
        return y
    lo, hi = activation_bounds(name, params)
    # np.clip with an infinite bound is still a correct clamp and keeps NaN (as ONNX does)
    np.clip(y, y.dtype.type(lo), y.dtype.type(hi), out=y)
    return y
