"""qengine's quantized IR: the ONNX QDQ graph, and the one pass that lowers it.

A QDQ graph is a float graph whose quantized tensors pass through QuantizeLinear →
DequantizeLinear (the ops themselves, qengine/ops/qdq.py). Static PTQ writes one
(qengine/qdq/insert.py), the ONNX importer reads those of other tools, and `lower` turns each
node unit into an integer op by the rules of qengine/qdq/rules.py, reporting what stays float.
See docs/qdq.md.
"""
from .canonical import canonicalize  # noqa: F401
from .lower import FloatUnit, has_qdq, lower  # noqa: F401
from .rules import RULES  # noqa: F401
