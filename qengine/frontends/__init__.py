"""Model importers producing qengine Graphs (onnx is imported lazily by the ONNX frontend)."""
