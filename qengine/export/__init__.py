"""Export: qengine graphs (integer, dynamic, QDQ or float) as ONNX files other runtimes run.

`onnx.py` chooses the opset and writes the proto; `rules.py` raises each integer op back to its
ONNX node unit (QDQ or QOperator); `layout.py` tells which uint8 values are NHWC; `nodes.py`
emits nodes. onnx is imported only when `export_onnx` is called.
"""
from .onnx import export_onnx  # noqa: F401
