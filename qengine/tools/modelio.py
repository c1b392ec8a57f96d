"""Reading what the CLI is given: models (`read_model`, from qengine/model_files.py: .onnx or
engine files) and input arrays (.npy).

Every failure becomes a qengine error with a one-line message naming the file, so the CLI can
report it without a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from ..graph.ir import ValueInfo
from ..model_files import read_model, sniff  # noqa: F401  (read_model: for the CLI)


def parse_input_specs(specs: Iterable[str]) -> dict[str, Path]:
    """["NAME=FILE.npy", ...] → {NAME: path}; each name once."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise ConfigError(f"--input {spec!r}: expected NAME=FILE.npy")
        if name in out:
            raise ConfigError(f"--input {name!r} is given twice")
        out[name] = Path(file)
    return out


def load_array(path: Path, what: str) -> np.ndarray:
    """One array from a .npy file, never unpickling anything (the file is untrusted)."""
    if Path(path).is_file() and sniff(path) not in ("npy", "npz"):
        # np.load would call anything else a pickle and suggest allow_pickle=True
        raise ConfigError(f"{what}: {str(path)!r} is not a .npy file; save the array with "
                          f"np.save(path, array)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{what}: cannot read {str(path)!r}: {e}") from e
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise ConfigError(f"{what}: {str(path)!r} is an .npz archive; give one array per input "
                          f"as a .npy file")
    return arr


def load_inputs(specs: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: load_array(path, f"--input {name}")
            for name, path in parse_input_specs(specs).items()}


def random_inputs(inputs: Sequence[ValueInfo], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs made up from the declared static shapes: floats ~ N(0, 1); integers and bools
    are zeros (index 0 is valid for any embedding or gather, random ids might not be)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in inputs:
        if info.shape is None or not all(isinstance(d, int) for d in info.shape):
            dims = ("unknown rank" if info.shape is None else
                    "shape [" + ", ".join(str(d) for d in info.shape) + "]")
            raise ConfigError(f"input {info.name!r} has {dims} (not all dims static); pass "
                              f"--input {info.name}=FILE.npy")
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            feeds[info.name] = rng.standard_normal(info.shape).astype(dtype)
        else:
            feeds[info.name] = np.zeros(info.shape, dtype)
    return feeds


