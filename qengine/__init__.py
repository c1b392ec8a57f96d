"""qengine: a framework-free int8 inference and quantization engine for Python on CPUs."""
__version__ = "0.1.0"

from ._runtime import (active_isa, available_isas, get_num_threads, set_num_threads,  # noqa: F401
                       show_config)
from .errors import ConfigError, ModelError, NaNWarning, QEngineError, ShapeError  # noqa: F401
from .qparams import QParams  # noqa: F401,E402
from .qtensor import QTensor  # noqa: F401,E402
from .quant import (choose_qparams, choose_qparams_from_data, data_range,  # noqa: F401,E402
                    dequantize, quantize)
from .graph import Graph, Node, ValueInfo  # noqa: F401,E402
from .session import Session  # noqa: F401,E402
from .engine_file import load, save  # noqa: F401,E402
from .frontends.onnx import from_onnx  # noqa: F401,E402  (imports onnx only when called)
from .frontends.torch_state_dict import from_torch_state_dict  # noqa: F401,E402
from .workflows.dynamic import DynamicQuantConfig, quantize_dynamic  # noqa: F401,E402
from . import calibration  # noqa: F401,E402
from .calibration import OBSERVERS, collect_stats, make_observer  # noqa: F401,E402
from .workflows.static import StaticQuantConfig, quantize_static  # noqa: F401,E402
from .workflows.sensitivity import auto_keep_float, layer_sensitivity  # noqa: F401,E402
