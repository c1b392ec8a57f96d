"""Run-time kernel selection and threads.

The ISA is chosen once, at import: the best of "compiled in ∧ supported by CPU and OS", unless
``QENGINE_ISA`` names one (then it must be runnable; if not, the first use — a Session, a kernel
call, any CLI command — raises a ConfigError that says why, while `import qengine` still works).
Tests and benchmarks pass an explicit ``isa=`` to the functional API to compare paths in one
process; everything else uses :func:`active_isa`.
"""
import os

from . import _threadpool

# GNU OpenMP's idle threads spin GOMP_SPINCOUNT times before sleeping; its default, 300000
# pauses, is ~11 ms on the reference Zen 4 VM. When another process holds a CPU, a thread
# spinning at a barrier burns the time slice its preempted partner needs: the 2-thread batch-1
# LSTM (200 barriers per call) went from 1.9 ms to 650 ms beside one busy process, and 17.5 ms
# with 1000 pauses (~37 µs), which cost nothing measurable on the idle machine (bench/
# wait_policy.py, BENCHMARKS.md). libgomp reads the variable once, when it is loaded — by the
# import below — so it is set only around that import, and only when the user set neither it
# nor OMP_WAIT_POLICY; child processes and OpenMP runtimes loaded later do not see it.
SPINCOUNT_DEFAULT = "1000"
_OMP_WAIT_USER = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                  if k in os.environ}
if not _OMP_WAIT_USER:
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT_DEFAULT
try:
    from ._ext import _cpu
finally:
    if not _OMP_WAIT_USER:
        os.environ.pop("GOMP_SPINCOUNT", None)
from .errors import ConfigError  # noqa: E402

ISA_NAMES = _cpu.ISA_NAMES
_PREFERENCE = ("avx512vnni", "neondot", "avx2", "scalar")


def _select_isa():
    runnable = _cpu.runnable_isas()
    compiled = _cpu.compiled_isas()
    available = [i for i in runnable if i in compiled]
    forced = os.environ.get("QENGINE_ISA", "").strip().lower()
    if forced:
        if forced not in ISA_NAMES:
            raise ConfigError(f"QENGINE_ISA={forced!r} is not an ISA qengine knows; "
                              f"expected one of {', '.join(ISA_NAMES)}")
        if forced not in compiled:
            raise ConfigError(f"QENGINE_ISA={forced!r}: this build of qengine has no {forced} "
                              f"kernels (compiled: {', '.join(compiled)})")
        if forced not in runnable:
            raise ConfigError(f"QENGINE_ISA={forced!r}: this CPU/OS cannot run {forced} "
                              f"(runnable: {', '.join(available)})")
        return forced
    return next(i for i in _PREFERENCE if i in available)


# A bad QENGINE_ISA is reported where qengine is first *used*, not at import: `import qengine`
# (and so `qengine --help`, `--version`) keeps working, and the CLI turns the ConfigError into
# its one-line error with exit code 2 instead of an import traceback.
try:
    _ACTIVE, _ISA_ERROR = _select_isa(), None
except ConfigError as e:
    _ACTIVE, _ISA_ERROR = None, str(e)


def active_isa():
    """Name of the ISA every kernel uses by default ('scalar', 'avx2', 'avx512vnni', 'neondot').
    Raises ConfigError when QENGINE_ISA names an ISA this build or CPU cannot run."""
    if _ISA_ERROR is not None:
        raise ConfigError(_ISA_ERROR)
    return _ACTIVE


# Neither the build nor the CPU changes while the process runs, so the probe runs once:
# CPUID/XGETBV trap to the hypervisor in a VM (tens of µs), far too slow for the per-call
# isa_index() that every kernel wrapper makes.
_AVAILABLE = tuple(i for i in _cpu.compiled_isas() if i in set(_cpu.runnable_isas()))
_ACTIVE_INDEX = None if _ACTIVE is None else ISA_NAMES.index(_ACTIVE)


def available_isas():
    """ISAs that are both compiled in and runnable here, in ISA_NAMES order."""
    return list(_AVAILABLE)


def isa_index(isa=None):
    """Map an ISA name (None = active) to the integer the compiled kernels take; validate it."""
    if isa is None:
        return _ACTIVE_INDEX if _ACTIVE_INDEX is not None else ISA_NAMES.index(active_isa())
    name = str(isa).lower()
    if name not in ISA_NAMES:
        raise ConfigError(f"unknown ISA {isa!r}; expected one of {', '.join(ISA_NAMES)}")
    if name not in _AVAILABLE:
        raise ConfigError(f"ISA {name!r} is not available on this machine "
                          f"(available: {', '.join(available_isas())})")
    return ISA_NAMES.index(name)


def set_num_threads(n):
    """Set how many threads every qengine kernel may use, process-wide: it applies to calls
    from any Python thread (a ThreadPoolExecutor's workers too), unlike omp_set_num_threads.
    OMP_NUM_THREADS gives the starting value; threadpoolctl's limits set it as well."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"set_num_threads expects a positive int, got {n!r}")
    if n > 1 and _cpu.fork_fallback():
        raise ConfigError(
            "this process was forked after qengine had started OpenMP worker threads; GNU "
            "OpenMP cannot use them after fork (they would hang), so it runs on 1 thread. Use "
            "the 'spawn' or 'forkserver' start method (or gunicorn without --preload, or fork "
            "before the first multi-threaded run) for multi-threaded workers")
    _cpu.set_num_threads(n)


def get_num_threads():
    return _cpu.get_num_threads()


# Fork: the C side (include/qengine/qe_threads_state.h) drops a child to 1 thread when the parent
# had started an OpenMP pool; _cpu.fork_fallback() says whether that happened. threadpoolctl:
# qengine/_threadpool.py registers a controller whenever threadpoolctl gets imported.
_threadpool.install()


# Kernel names per op, registered by the modules that own the kernels (e.g. the GEMM driver),
# so show_config() can print which microkernel each op runs without importing them all here.
_KERNEL_NAMES = {}


def register_kernels(op, names_by_isa):
    _KERNEL_NAMES[op] = dict(names_by_isa)


def config():
    """Everything show_config() prints, as a dict (also recorded by the benchmarks)."""
    import numpy as np
    from . import __version__
    # Import the kernel-owning modules so they register their names.
    from . import functional  # noqa: F401
    return {
        "qengine": __version__,
        "numpy": np.__version__,
        "cpu_features": _cpu.cpu_features(),
        "compiled_isas": _cpu.compiled_isas(),
        "runnable_isas": _cpu.runnable_isas(),
        "active_isa": active_isa(),
        "forced_by_env": bool(os.environ.get("QENGINE_ISA")),
        "kernels": {op: names.get(_ACTIVE, "?") for op, names in sorted(_KERNEL_NAMES.items())},
        "openmp": _cpu.openmp_enabled(),
        "openmp_wait": dict(_OMP_WAIT_USER) or {"GOMP_SPINCOUNT": SPINCOUNT_DEFAULT},
        "threads": _cpu.get_num_threads(),
        "fork_fallback": _cpu.fork_fallback(),
    }


def show_config(file=None):
    """Print CPU features, compiled ISAs, the active kernels, OpenMP and thread count."""
    import sys
    c = config()
    out = file or sys.stdout
    rows = [
        ("qengine", c["qengine"]), ("numpy", c["numpy"]),
        ("CPU features", " ".join(c["cpu_features"]) or "(none detected)"),
        ("compiled ISAs", " ".join(c["compiled_isas"])),
        ("runnable ISAs", " ".join(c["runnable_isas"])),
        ("active ISA", c["active_isa"] + (" (forced by QENGINE_ISA)" if c["forced_by_env"] else "")),
        ("OpenMP", "on" if c["openmp"] else "OFF (serial build)"),
        ("OpenMP wait", " ".join(f"{k}={v}" for k, v in c["openmp_wait"].items()) +
         ("" if _OMP_WAIT_USER else " (qengine's default)")),
        ("threads", str(c["threads"]) + (" (fork fallback: forked after OpenMP started "
                                          "its threads)" if c["fork_fallback"] else "")),
    ]
    rows += [(f"kernel[{op}]", name) for op, name in c["kernels"].items()]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
