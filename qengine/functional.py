"""Functional API over the compiled kernels (filled in by the GEMM and quantization work)."""
