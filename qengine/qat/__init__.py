"""Quantization-aware training whose trained model is the integer engine.

    import qengine.qat as qat
    qmodel = qat.prepare(model, example_inputs, qat.QATConfig(weight_bits=8))
    ...                                   # your own training loop on qmodel
    graph = qat.convert(qmodel)           # integer-only: qengine.Session(graph), qengine.save
    qat.export_onnx(qmodel, "m.onnx")     # QDQ ONNX for ONNX Runtime / OpenVINO

An optional extra (`pip install "qengine[qat]"` brings torch); the runtime never imports it.
qmodel.eval() computes exactly what the converted engine computes (docs/qat.md).
"""
try:
    import torch  # noqa: F401
except ImportError as e:      # pragma: no cover - depends on the environment
    raise ImportError('qengine.qat needs PyTorch: pip install "qengine[qat]"') from e

from .convert import convert, export_onnx, to_qdq  # noqa: F401
from .prepare import QATConfig, QATModel, freeze_bn, freeze_observers, prepare  # noqa: F401

__all__ = ["QATConfig", "QATModel", "prepare", "convert", "export_onnx", "to_qdq",
           "freeze_bn", "freeze_observers"]
