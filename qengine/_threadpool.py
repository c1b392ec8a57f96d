"""threadpoolctl support, without importing threadpoolctl.

qengine's kernels obey one process-wide thread count (include/qengine/qe_threads.h), not the
OpenMP setting that threadpoolctl's own OpenMP controller changes (and that only for the calling
thread). A controller for that count makes `threadpool_limits(1)` (also with
`user_api="openmp"`) limit qengine's kernels, and `threadpool_info()` list them with
internal_api "qengine". It finds the _cpu extension among the loaded libraries by the symbols
that extension exports for it.

threadpoolctl stays an optional, test-time dependency and off qengine's import path (importing
it costs about 1.5 ms, ~1% of `import qengine`, for a feature most users never touch): if it is
already imported, the controller is registered at once; otherwise an entry on sys.meta_path
waits for the first `import threadpoolctl`, registers right after that module has run, and
removes itself. A threadpoolctl older than 3.0 (no `register`) is left alone.
"""
import sys

_NAME = "threadpoolctl"


def _controller_class(threadpoolctl):
    class QEngineController(threadpoolctl.LibController):
        user_api = "openmp"        # the kernels are OpenMP's: an OpenMP limit applies to them
        internal_api = "qengine"
        filename_prefixes = ("_cpu.",)
        # exported by the _cpu extension (qe_threads_state.h); they tell it from any other
        # library whose file name happens to start with "_cpu."
        check_symbols = ("qengine_get_num_threads", "qengine_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.qengine_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.qengine_set_num_threads(int(num_threads))

        def get_version(self):
            from . import __version__
            return __version__

    return QEngineController


def _register(threadpoolctl):
    register = getattr(threadpoolctl, "register", None)
    if register is not None:
        register(_controller_class(threadpoolctl))


class _RegisteringLoader:
    """Runs threadpoolctl's module with its own loader, then registers the controller."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register(module)

    def __getattr__(self, name):          # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class _WhenImported:
    """The sys.meta_path entry: lets the other finders find threadpoolctl, wraps its loader."""

    def find_spec(self, name, path=None, target=None):
        if name != _NAME:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:                # another thread got here first
            return None
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install():
    """Register the controller now if threadpoolctl is imported, else when it is."""
    module = sys.modules.get(_NAME)
    if module is not None:
        _register(module)
    else:
        sys.meta_path.insert(0, _WhenImported())
