"""tests/c/test_isa_kernels.c natively, in the default suite: every kernel of every ISA this CPU
runs, bit-exact against the scalar kernels and int64 references, through the C drivers the
extensions call (scripts/test_other_cpus.sh runs the same harness on emulated CPUs). Skips
without a C compiler."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qengine._ext import _cpu

ROOT = Path(__file__).resolve().parent.parent
# the flags setup.py builds with (no -march: ISA code is chosen at run time), plus warnings
CFLAGS = ["-O2", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing", "-fopenmp", "-Wall",
          "-Wextra", "-Werror", "-Wno-unused-function", f"-I{ROOT / 'include'}"]


@pytest.mark.skipif(sys.platform != "linux", reason="the harness uses fork/waitpid and SIGILL")
def test_c_kernel_harness(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "kernels"
    build = subprocess.run([cc, *CFLAGS, str(ROOT / "tests/c/test_isa_kernels.c"), "-o",
                            str(exe), "-lm"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    expect = ",".join(i for i in _cpu.runnable_isas() if i in _cpu.compiled_isas())
    run = subprocess.run([str(exe), f"--expect-runnable={expect}"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "0 failed" in run.stdout
