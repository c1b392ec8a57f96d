"""Build qengine's compiled extensions.

Every module in src_pyx/ becomes qengine._ext.<name>. Compiler flags stay at the baseline ISA
(x86-64 / armv8-a): SIMD code is compiled per function with target attributes (include/qengine/
qe_target.h) and chosen at run time, so a wheel built here runs on any CPU of the architecture.
OpenMP is probed the scikit-learn way: try to compile and link a tiny program with it; if that
fails, build serially and say so loudly.

QENGINE_SANITIZE=address,undefined (any comma list of those two) builds the extensions with
GCC/Clang sanitizers for testing, never for shipping: see docs/sanitizers.md and
scripts/sanitize.sh, which builds such a copy away from the in-place build and runs the tests.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
OMP_TEST = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0);
    return 0;
}
"""


def _compiler():
    return os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or ([], []) when the compiler lacks it."""
    if os.environ.get("QENGINE_DISABLE_OPENMP"):
        warnings.warn("QENGINE_DISABLE_OPENMP set: building qengine WITHOUT OpenMP (1 thread)")
        return [], []
    cc = _compiler()
    flag = "-fopenmp"
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "omp.c"
        src.write_text(OMP_TEST)
        try:
            subprocess.run([cc, flag, str(src), "-o", str(Path(d) / "omp")], check=True,
                           capture_output=True)
            out = subprocess.run([str(Path(d) / "omp")], check=True, capture_output=True, text=True)
            if out.stdout.strip() == "1":
                return [flag], [flag]
        except (OSError, subprocess.CalledProcessError):
            pass
    warnings.warn(
        "\n***\n*** qengine: the C compiler does not support OpenMP; building SERIAL kernels.\n"
        "*** Install libgomp / libomp for multi-threaded inference.\n***")
    return [], []


SANITIZERS = ("address", "undefined")


def sanitize_flags():
    """Return (compile_args, link_args) for QENGINE_SANITIZE, or ([], []) when it is unset.

    -O1 -g and frame pointers give ASan usable stacks at a tolerable speed; UBSan is made
    fatal (-fno-sanitize-recover) so a report fails the test run instead of scrolling past.
    "undefined" adds float-cast-overflow, which GCC leaves out of -fsanitize=undefined: the
    kernels convert floats derived from file-provided scales to integers.
    """
    raw = os.environ.get("QENGINE_SANITIZE", "").strip()
    if not raw:
        return [], []
    names = [n.strip() for n in raw.split(",")]
    bad = [n for n in names if n not in SANITIZERS]
    if bad or len(set(names)) != len(names):
        sys.exit(f"setup.py: QENGINE_SANITIZE={raw!r} is invalid: expected a comma list of "
                 f"{', '.join(SANITIZERS)} (each at most once), got {bad or names}")
    if sys.platform == "win32":
        sys.exit("setup.py: QENGINE_SANITIZE needs GCC or Clang (not supported on Windows)")
    checks = names + (["float-cast-overflow"] if "undefined" in names else [])
    flag = "-fsanitize=" + ",".join(checks)
    compile_args = [flag, "-fno-omit-frame-pointer", "-O1", "-g"]
    if "undefined" in names:
        compile_args.append("-fno-sanitize-recover=all")
    warnings.warn(f"QENGINE_SANITIZE: building with {flag} (a test build: slow, and it needs "
                  f"the sanitizer runtime preloaded, see docs/sanitizers.md)")
    return compile_args, [flag]


def extensions():
    omp_c, omp_l = openmp_flags()
    san_c, san_l = sanitize_flags()
    base = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing",
            "-Wno-unused-function", "-Wno-unreachable-code"]
    if sys.platform == "win32":
        base = ["/O2", "/fp:precise"]
    exts = []
    for pyx in sorted((HERE / "src_pyx").glob("*.pyx")):
        exts.append(Extension(
            f"qengine._ext.{pyx.stem}", [str(pyx.relative_to(HERE))],
            include_dirs=["include", "src_pyx", np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=base + omp_c + san_c,  # san_c last: its -O1 wins over -O3
            extra_link_args=omp_l + san_l,
            depends=[str(p.relative_to(HERE)) for p in (HERE / "include").rglob("*")
                     if p.suffix in (".h", ".inc")],
        ))
    return cythonize(exts, include_path=["src_pyx"], language_level=3,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


setup(ext_modules=extensions())
