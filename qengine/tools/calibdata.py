"""Calibration / evaluation data for the CLI: an .npz with one array per model input, samples
along the first axis. Read without unpickling; checked against the model's inputs so a wrong
file fails with a one-line message before any work. Batching (a fixed batch dim of 1, or a
dynamic one) is the calibration driver's job, not this module's."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..graph.ir import Graph
from ..model_files import sniff


def load_calibration(path, graph: Graph) -> dict[str, np.ndarray]:
    """{input name: array} from `path`; float arrays are cast to the input's declared dtype
    (NumPy makes float64 by default, the model wants float32)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"calibration file {str(path)!r} does not exist or is not a file")
    kind = sniff(path)
    if kind not in ("npz", "npy"):
        # np.load would call it a pickle and suggest allow_pickle=True: never the fix here
        what = {"text": "a text file", "empty": "empty"}.get(kind, "of another format")
        example = ", ".join(f"{v.name}=samples" for v in graph.inputs) or "name=samples"
        raise ConfigError(f"calibration file {str(path)!r} is not an .npz archive (it is "
                          f"{what}); write one array per model input, samples along the first "
                          f"axis: np.savez(path, {example})")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"cannot read calibration file {str(path)!r}: {e}") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ConfigError(f"{str(path)!r} is a single .npy array; calibration data is an .npz "
                          f"with one array per model input")
    try:
        arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"cannot read calibration file {str(path)!r}: {e}") from e
    finally:
        z.close()
    inputs = {v.name: v for v in graph.inputs}
    if set(arrays) != set(inputs):
        raise ConfigError(f"calibration file {str(path)!r} holds arrays {sorted(arrays)}; the "
                          f"model's inputs are {sorted(inputs)}")
    out = {}
    for name, arr in arrays.items():
        want = np.dtype(inputs[name].dtype)
        if arr.dtype.kind in "fiu" and want.kind == "f":
            arr = arr.astype(want, copy=False)
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise ConfigError(f"calibration array {name!r} in {str(path)!r} has shape "
                              f"{list(arr.shape)}; expected samples along the first axis")
        out[name] = arr
    return out
