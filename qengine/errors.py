"""qengine's exception types: one base class so callers can catch everything qengine raises."""


class QEngineError(Exception):
    """Base class of every error qengine raises on purpose."""


class ConfigError(QEngineError, ValueError):
    """A bad setting: unknown ISA, impossible thread count, invalid quantization parameters."""


class ShapeError(QEngineError, ValueError):
    """An input whose shape, rank or dtype is not what the operation needs (or that holds NaN
    where the NaN policy refuses it, docs/numerics.md "NaN and Inf")."""


class ModelError(QEngineError, ValueError):
    """A model or engine file that is malformed, unsupported or hostile."""


class UnsupportedOpsError(ModelError):
    """An ONNX model using ops (or op versions) qengine does not implement. `ops` lists every
    one, not just the first: dicts with domain, op, node (a generated name for an unnamed node)
    and reason (None when the op is unknown, else what is not supported about it)."""

    def __init__(self, message, ops):
        super().__init__(message)
        self.ops = list(ops)


class UsageError(QEngineError, TypeError):
    """An argument of the wrong kind: a path or an onnx.ModelProto where a qengine Graph is
    expected, a Session where a Graph is. The message says what to call instead."""


class NaNWarning(UserWarning):
    """NaN values were seen and left out (calibration observers drop them from the ranges)."""


class QuantizationWarning(UserWarning):
    """The quantized model is not all that was asked for: a layer stays float because its int8
    form is not supported (static LSTM/GRU), or an SQNR target is only met with every layer
    float. `qengine quantize` prints these in its summary."""
