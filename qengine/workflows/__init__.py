"""Quantization workflows: graph in, quantized graph out."""
