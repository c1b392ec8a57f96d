"""Run an engine file on every ISA this machine can run, each in a child process (QENGINE_ISA
picks the ISA at import), and return the bytes of its first output."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import qengine
from qengine import _runtime

_CHILD = ("import sys, numpy as np, qengine; s = qengine.load(sys.argv[1]); "
          "x = np.load(sys.argv[2]); sys.stdout.buffer.write(next(iter(s.run("
          "{s.input_names[0]: x}).values())).tobytes())")


def first_output_bytes_per_isa(graph, x, tmp_path) -> dict:
    """{isa: bytes of the first output of `graph` (a Graph) run on input array x}."""
    qengine.save(graph, tmp_path / "isa_children.qe")
    np.save(tmp_path / "isa_children_x.npy", x)
    out = {}
    for isa in _runtime.available_isas():
        env = dict(os.environ, QENGINE_ISA=isa, PYTHONPATH=str(Path(qengine.__file__).parents[1]))
        r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "isa_children.qe"),
                            str(tmp_path / "isa_children_x.npy")], capture_output=True,
                           env=env, timeout=300, check=False)
        assert r.returncode == 0, r.stderr.decode()[-800:]
        out[isa] = r.stdout
    return out
