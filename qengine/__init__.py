"""qengine: a framework-free int8 inference and quantization engine for Python on CPUs.

Start here:
    sess = qengine.load("model.qe")            # or qengine.Session(qengine.from_onnx("m.onnx"))
    outputs = sess.run({"x": x})               # dict of NumPy arrays
    qgraph = qengine.quantize_dynamic(qengine.from_onnx("m.onnx"))
    qgraph = qengine.quantize_static(graph, calibration_batches, qengine.StaticQuantConfig())
    qengine.save(qgraph, "model.qe")
`help(qengine.<name>)` documents each name in `__all__`; `qengine.show_config()` prints the
CPU features, kernels and threads in use. The CLI is `qengine --help`.
"""
__version__ = "0.1.0"

from ._runtime import (active_isa, available_isas, get_num_threads, set_num_threads,  # noqa: F401
                       show_config)
from .errors import (ConfigError, ModelError, NaNWarning, QEngineError,  # noqa: F401
                     QuantizationWarning, ShapeError, UsageError)
from .qparams import QParams  # noqa: F401,E402
from .qtensor import QTensor  # noqa: F401,E402
from .quant import (choose_qparams, choose_qparams_from_data, data_range,  # noqa: F401,E402
                    dequantize, quantize)
from .graph import Graph, Node, ValueInfo  # noqa: F401,E402
from .graph.passes import specialize  # noqa: F401,E402
from .session import Session  # noqa: F401,E402
from .engine_file import load, load_graph, save  # noqa: F401,E402
from .frontends.onnx import from_onnx  # noqa: F401,E402  (imports onnx only when called)
from .frontends.torch_state_dict import from_torch_state_dict  # noqa: F401,E402
from .workflows.dynamic import DynamicQuantConfig, quantize_dynamic  # noqa: F401,E402
from . import calibration  # noqa: F401,E402
from .calibration import OBSERVERS, collect_stats, make_observer  # noqa: F401,E402
from .workflows.ptq import StaticQuantConfig, quantize_static  # noqa: F401,E402
from .graph.equalize import EqualizeReport, equalize  # noqa: F401,E402
from .workflows.sensitivity import auto_keep_float, layer_sensitivity  # noqa: F401,E402
from .workflows.islands import FloatIsland, float_islands  # noqa: F401,E402
from .export import export_onnx  # noqa: F401,E402  (imports onnx only when called)
from . import qdq  # noqa: F401,E402  (the quantized IR: qdq.lower, qdq.canonicalize)
from .tools.plots import plot_sensitivity  # noqa: F401,E402  (matplotlib on call)

__all__ = [
    # run
    "load", "Session", "save", "load_graph",
    # import
    "from_onnx", "from_torch_state_dict", "Graph", "Node", "ValueInfo", "specialize",
    # export, and the quantized IR
    "export_onnx", "qdq",
    # quantize
    "quantize_dynamic", "DynamicQuantConfig", "quantize_static", "StaticQuantConfig",
    "calibration", "collect_stats", "make_observer", "OBSERVERS",
    # analyze
    "layer_sensitivity", "auto_keep_float", "plot_sensitivity", "float_islands", "FloatIsland",
    # quantization math
    "quantize", "dequantize", "choose_qparams", "choose_qparams_from_data", "data_range",
    "QParams", "QTensor",
    # runtime
    "show_config", "active_isa", "available_isas", "set_num_threads", "get_num_threads",
    # errors
    "QEngineError", "ConfigError", "ModelError", "ShapeError", "UsageError", "NaNWarning",
    "QuantizationWarning",
    "__version__",
]
