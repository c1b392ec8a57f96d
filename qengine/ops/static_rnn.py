"""Graph ops for the integer LSTM / GRU of static quantization (made by quantize_static with
StaticQuantConfig(rnn="int16" | "int8"); layer: qengine/quantized/static_rnn.py).

StaticQuantLSTM / StaticQuantGRU inputs, as DynamicQuantLSTM / GRU's:
    X, Wq, Ws, Rq, Rs, B, sequence_lens, initial_h[, initial_c]   (optional ones may be "")
Wq / Rq int8 [D, G·H, I] / [D, G·H, H] with per-row scales Ws / Rs [D, G·H]; X, the states and
the outputs are float (the layer's codes, dequantized exactly). Attributes: direction, layout,
hidden_size (optional), GRU linear_before_reset, and the calibrated
    scheme "int16" | "int8", x_scale, x_zero_point, h_scale, h_zero_point, cell_exponent
(int16: x_zero_point = h_zero_point = 0, h_scale = 2^-15; numerics.md "Integer LSTM and GRU").
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..quantized.static_rnn import Params, StaticRNN
from .base import register_op
from .dynamic import _DynamicRNNOp
from .rnn import GRU, LSTM

_QP = {"scheme": ("string", "int16"), "x_scale": ("float", 1.0), "x_zero_point": ("int", 0),
       "h_scale": ("float", 2.0 ** -15), "h_zero_point": ("int", 0),
       "cell_exponent": ("int", 0)}


class _StaticRNNOp(_DynamicRNNOp):
    """The dynamic op's run (layouts, outputs) over a StaticRNN."""
    KIND = ""
    FLOAT_OP = LSTM
    ATTRS = {"direction": ("string", "forward"), "hidden_size": ("int", None),
             "layout": ("int", 0), **_QP}

    @classmethod
    def check_attrs(cls, attrs, node):
        cls.FLOAT_OP.check_attrs({**{k: None for k in ("activation_alpha", "activation_beta",
                                                       "activations", "clip")},
                                  "input_forget": 0,
                                  **{k: v for k, v in attrs.items() if k not in _QP}}, node)

    def prepare(self, initializers):
        arrs = [self.const_input(initializers, i, True, what)
                for i, what in ((1, "Wq"), (2, "Ws"), (3, "Rq"), (4, "Rs"))]
        B = self.const_input(initializers, 5)
        if self.input_name(5) and B is None:
            self.fail("input 5 (B) must be an initializer")
        a = self.attrs
        try:
            p = Params(a["scheme"], a["x_scale"], a["x_zero_point"], a["h_scale"],
                       a["h_zero_point"], a["cell_exponent"])
            if not (np.isfinite(p.s_x) and p.s_x > 0 and np.isfinite(p.s_h) and p.s_h > 0) or \
                    not (0 <= p.z_x <= 255 and 0 <= p.z_h <= 255):
                raise ValueError(f"scales must be finite and > 0 and zero points in [0, 255], "
                                 f"got x ({p.s_x}, {p.z_x}), h ({p.s_h}, {p.z_h})")
            self.layer = StaticRNN(self.KIND, *arrs, B, p, direction=a["direction"],
                                   linear_before_reset=a.get("linear_before_reset", 0))
        except (ShapeError, ValueError) as e:
            self.fail(str(e))
        if a["hidden_size"] not in (None, self.layer.H):
            self.fail(f"hidden_size={a['hidden_size']} but R has {self.layer.H} columns")


@register_op
class StaticQuantLSTM(_StaticRNNOp):
    op_type = "StaticQuantLSTM"
    WEIGHT_INPUTS = ((1, 2), (3, 4))
    KIND = "lstm"
    INPUTS = (5, 9)
    OUTPUTS = (0, 3)


@register_op
class StaticQuantGRU(_StaticRNNOp):
    op_type = "StaticQuantGRU"
    WEIGHT_INPUTS = ((1, 2), (3, 4))
    KIND = "gru"
    FLOAT_OP = GRU
    INPUTS = (5, 8)
    OUTPUTS = (0, 2)
    ATTRS = {**_StaticRNNOp.ATTRS, "linear_before_reset": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        GRU.check_attrs({**{k: None for k in ("activation_alpha", "activation_beta",
                                              "activations", "clip")},
                         **{k: v for k, v in attrs.items() if k not in _QP}}, node)

    def run(self, X, Wq=None, Ws=None, Rq=None, Rs=None, B=None, lens=None, h0=None):
        return super().run(X, Wq, Ws, Rq, Rs, B, lens, h0, None)
