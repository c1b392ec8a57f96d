"""Quantized layer implementations: weights quantized and packed once, compiled kernels per call."""
