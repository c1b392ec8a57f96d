"""Graph IR, passes and executor."""
from .executor import Executor, Profile  # noqa: F401
from .ir import DTYPES, Graph, Node, ValueInfo  # noqa: F401
from .passes import fold_constants, infer_shapes, optimize, remove_dead_nodes  # noqa: F401
from .fusion import (fold_batch_norm, fuse_activations, fuse_residual_add,  # noqa: F401
                     remove_identities)
from .chains import fuse_elementwise  # noqa: F401
from .decomposed import fuse_layer_norm, fuse_squeeze_excite  # noqa: F401
