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


class NaNWarning(UserWarning):
    """NaN values were seen and left out (calibration observers drop them from the ranges)."""
