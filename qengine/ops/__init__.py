"""Op implementations and their registry (see `qengine.ops.base` for how to add an op).

Importing this package registers the built-in FP32 ops.
"""
from .base import (REQUIRED, Op, get_op_class, is_registered, register_op,  # noqa: F401
                   registered_ops, unregister_op)
from . import chain, elementwise, linear, rnn, tensor  # noqa: F401,E402  (registration side effect)
from . import conv, norm, pool, reduce, resize  # noqa: F401,E402
from . import dynamic, integer, onnx_integer, qdq, squeeze_excite  # noqa: F401,E402
from . import control, static_rnn  # noqa: F401,E402
