"""Telling model files and model objects apart, so that every entry point takes what a user
naturally hands it and says what to call when it cannot.

`read_model(path)` is how the CLI and `quantize_dynamic` / `quantize_static` read a model: an
ONNX file or a qengine engine file, told apart by their first bytes (a suffix can lie).
`as_graph(model)` also takes a Graph or an onnx.ModelProto. `sniff(path)` names a file's kind
from 16 bytes, cheaply enough to run before every load.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError, UsageError
from .graph.ir import Graph

# the one-byte tags of onnx.ModelProto's fields 1-8 (protobuf writes fields in order, so a
# model starts with one of these; exporters start with ir_version, tag 0x08); 0x72 is field 14,
# metadata_props
_ONNX_FIRST_BYTES = {0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}

_KIND_TEXT = {"onnx": "an ONNX model", "npz": "a NumPy .npz archive", "npy": "a NumPy .npy "
              "array", "text": "a text file", "empty": "empty (0 bytes)"}


def sniff(path) -> str:
    """'safetensors' (an engine file, or another safetensors file), 'onnx', 'npz', 'npy',
    'text', 'empty' or 'unknown', from the first bytes of the file (and the .onnx suffix for a
    protobuf that does not start with ir_version). A file that cannot be read is 'unknown':
    the reader that follows reports why."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        size = path.stat().st_size
    except OSError:
        return "unknown"
    if not head:
        return "empty"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    n = int.from_bytes(head[:8].ljust(8, b"\0"), "little")
    if len(head) > 8 and 0 < n <= size - 8 and head[8:9] == b"{":
        return "safetensors"
    # ir_version (a small varint) and then another ModelProto field tag; an engine file's
    # length field has zero bytes there (a tag of 0 is invalid protobuf)
    if len(head) > 2 and head[0] == 0x08 and 1 <= head[1] <= 20 and \
            head[2] in _ONNX_FIRST_BYTES | {0x72}:
        return "onnx"
    if path.suffix.lower() == ".onnx" and head[0] in _ONNX_FIRST_BYTES:
        return "onnx"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at byte 512 is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return "unknown"


def refuse_non_engine_file(path) -> None:
    """Raise a ModelError naming what the file is when it certainly is not an engine file
    (ONNX, NumPy, text); let anything else through to the engine file reader, whose messages
    say what is wrong with a damaged engine file."""
    kind = sniff(path)
    name = Path(path).name
    if kind == "onnx":
        raise ModelError(f"{name} is an ONNX model, not a qengine engine file: import it with "
                         f"qengine.from_onnx(path), then run it with qengine.Session(graph) or "
                         f"quantize it (qengine.quantize_dynamic / quantize_static) and write an "
                         f"engine file with qengine.save")
    if kind in ("npz", "npy", "text", "empty"):
        raise ModelError(f"{name} is {_KIND_TEXT[kind]}, not a qengine engine file (engine "
                         f"files are written by qengine.save and `qengine quantize`)")


def read_model(path) -> Graph:
    """A Graph from an ONNX file or an engine file, told apart by content (an unrecognised file
    named .onnx goes to the ONNX importer, for its message)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist or is not a file")
    kind = sniff(path)
    if kind == "empty":
        raise ModelError(f"model file {str(path)!r} is empty (0 bytes): was it written "
                         f"completely? Give an .onnx file or a qengine engine file")
    if kind == "onnx" or (kind == "unknown" and path.suffix.lower() == ".onnx"):
        from .frontends.onnx import from_onnx
        try:
            return from_onnx(path)
        except ModelError:
            raise
        except Exception as e:  # protobuf DecodeError and friends: the file is not ONNX
            raise ModelError(f"cannot read ONNX model {str(path)!r}: "
                             f"{type(e).__name__}: {e}") from e
    if kind in ("npz", "npy", "text"):
        raise ModelError(f"{str(path)!r} is {_KIND_TEXT[kind]}, not a model: give an .onnx "
                         f"file or a qengine engine file")
    from .engine_file import load_graph
    return load_graph(path)


def type_name(obj) -> str:
    """How an argument is named in an error: 'str 'm.onnx'', 'onnx.ModelProto', 'Session'."""
    if isinstance(obj, (str, os.PathLike)):
        return f"{type(obj).__name__} {os.fspath(obj)!r}"
    t = type(obj)
    return "onnx.ModelProto" if t.__name__ == "ModelProto" else t.__name__


def require_graph(obj, who: str) -> None:
    """UsageError unless `obj` is a Graph, saying what `who` (Session or save) wants instead."""
    if isinstance(obj, Graph):
        return
    got = type_name(obj)
    if who == "save":
        hint = {"Session": "save its graph: qengine.save(session.graph, path)",
                "onnx.ModelProto": "import it first: qengine.save(qengine.from_onnx(model), "
                                   "path)"}.get(got, "the arguments are save(graph, path)")
    else:
        hint = ("for an ONNX file call qengine.Session(qengine.from_onnx(path)) (for an "
                "onnx.ModelProto: qengine.from_onnx(model)), for an engine file "
                "qengine.load(path)")
    raise UsageError(f"{who} takes a qengine Graph, got {got}; {hint}")


def as_graph(model, who: str) -> Graph:
    """`model` as a Graph: a Graph itself, the path of an ONNX or engine file, or an
    onnx.ModelProto. `who` names the caller in the error for anything else."""
    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        return read_model(model)
    if type(model).__name__ == "ModelProto":
        from .frontends.onnx import from_onnx
        return from_onnx(model)
    from .session import Session
    if isinstance(model, Session):
        raise UsageError(f"{who} takes a model, got a Session; pass its graph: "
                         f"{who}(session.graph, ...)")
    raise UsageError(f"{who} takes a qengine Graph, an onnx.ModelProto or the path of an .onnx "
                     f"or engine file, got {type_name(model)}")
