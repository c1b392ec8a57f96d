"""Engine files: a safetensors file whose `__metadata__` carries the graph as JSON.

Layout (https://github.com/huggingface/safetensors#format):

    [8 bytes: N, little-endian u64][N bytes: JSON header, space padded][raw tensor bytes]

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
relative to the end of the header) and holds "__metadata__", a string→string map. We store:

    format          "qengine.engine"
    format_version  "1", or "2" for a graph with 4-bit weights (below); both are read
    producer        "qengine <version>"
    graph           JSON: {name, opset, inputs, outputs, nodes, initializers}
    tensor_crc32    JSON: {tensor name: CRC-32 of its bytes}, checked at load, so a flipped
                    byte in a weight is refused instead of run (files written before checksums
                    existed have none and load unverified)

Initializers are the tensors, stored little-endian in a portable canonical layout (int8 weights
are packed for the CPU at load, by the ops). 4-bit weights (a node attribute weight_bits=4) are
U8 tensors [.., N, ceil(K/2)] holding two int4 values per byte, value 2i in the low nibble
(qengine.quantized.weights.pack_int4, the ONNX int4 order), K in a node attribute; the op
validates them (no −8, zero padding nibble, shapes) when the Session is built. The 4-bit
weights of static layers stay int8 in the graph (the static kernels take int8): an int8 tensor
whose values all lie in [−7, 7] is stored the same two-per-byte way, flattened, and listed in
the metadata entry "int4_tensors" ({name: shape}); it is unpacked at load. A file holding
either is written as format_version "2", so a qengine that predates 4-bit weights refuses it by
its version instead of misreading the bytes; every other graph is written as "1", byte for
byte as before. Reader and writer are ours, in pure Python/NumPy,
so the runtime needs nothing else; they interoperate with the `safetensors` package.

Loading is defensive: the file is untrusted input. Everything is validated before anything
runs — header length (≤ file size and ≤ MAX_HEADER_BYTES), JSON well-formedness (no duplicate
keys, no NaN), dtype allowlist, shapes, offsets (in bounds, contiguous, non-overlapping, sizes
matching shape × itemsize), per-tensor CRC-32, no NaN in float tensors, format version,
graph schema, op types and attributes (by the op
classes), graph structure (`Graph.verify`), then op construction (weight shapes). No size read
from the file is used to allocate before it was checked against the file size; tensors are
views of a read-only memory map (np.frombuffer), never pickled objects. Any problem raises
ModelError saying what and why.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import secrets
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, QEngineError
from .graph.ir import Graph, Node, ValueInfo
from .quant import find_nan

FORMAT = "qengine.engine"
FORMAT_VERSION = "1"
FORMAT_VERSION_INT4 = "2"          # written when some node has weight_bits=4
READ_VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_INT4)
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors limit
MAX_RANK = 32

# safetensors dtype tag ↔ NumPy dtype (little-endian); BF16/F8 have no NumPy dtype and are refused
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
_TAG_OF = {np.dtype(v).name: k for k, v in _DTYPES.items()}


# ---- writing ---------------------------------------------------------------------------------
def _safetensors_parts(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> list[bytes]:
    """The pieces of a safetensors file, in order: length field, header, tensor data."""
    entries, blobs, offset = {}, [], 0
    # largest items first keeps every tensor aligned to its itemsize (the data start is 8-aligned)
    for name in sorted(tensors, key=lambda k: (-np.asarray(tensors[k]).dtype.itemsize, k)):
        arr = np.asarray(tensors[name])
        tag = _TAG_OF.get(arr.dtype.name)
        if tag is None:
            raise ModelError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored (allowed: "
                             f"{sorted(_TAG_OF)})")
        data = np.ascontiguousarray(arr, dtype=np.dtype(_DTYPES[tag])).tobytes()
        entries[name] = {"dtype": tag, "shape": list(arr.shape),
                         "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header = {"__metadata__": dict(metadata), **entries}
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)
    return [len(raw).to_bytes(8, "little"), raw, *blobs]


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write `tensors` and string `metadata` as a safetensors file (atomically)."""
    parts = _safetensors_parts(tensors, metadata)
    path = Path(path)
    # Written beside the target and renamed over it, so a reader never sees half a file. Not
    # tempfile.mkstemp: it creates mode 0600 whatever the umask, and a serving account other
    # than the owner could not read the engine. os.open with 0o666 lets the umask decide, as
    # for any file the user creates; O_EXCL and a random name keep it from clobbering anything.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for b in parts:
                f.write(b)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(graph: Graph, path) -> None:
    """Verify `graph` and write it to `path` as an engine file."""
    write_safetensors(path, *_engine_contents(graph, "save"))


def dumps(graph: Graph) -> bytes:
    """The engine file of `graph` as bytes (what `save` writes); `loads` reads it back."""
    return b"".join(_safetensors_parts(*_engine_contents(graph, "dumps")))


def _engine_contents(graph: Graph, what: str):
    from . import __version__
    from .model_files import require_graph
    require_graph(graph, what)              # a Session or a ModelProto: say what to call
    graph.verify()
    for name, arr in graph.initializers.items():
        _refuse_nan(arr, f"initializer {name!r}")
    tensors, packed = _pack_int4_tensors(graph.initializers)
    nested = graph.subgraph_tensors()       # of If branches and Loop bodies
    clash = sorted(set(nested) & set(tensors))
    if clash:
        raise ModelError(f"initializers {clash[:5]} clash with the names the file gives "
                         f"subgraph initializers (<node>/<attribute>/<name>); rename them")
    for name, arr in nested.items():
        _refuse_nan(arr, f"subgraph initializer {name!r}")
    tensors.update(nested)
    int4 = bool(packed) or any(n.attrs.get("weight_bits") == 4 for n in graph.nodes)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION_INT4 if int4 else FORMAT_VERSION,
            "producer": f"qengine {__version__}",
            "graph": json.dumps(graph.to_json(), separators=(",", ":"), allow_nan=False),
            "tensor_crc32": json.dumps({k: _crc32(a) for k, a in tensors.items()},
                                       separators=(",", ":"))}
    if packed:
        meta["int4_tensors"] = json.dumps(packed, separators=(",", ":"))
    return tensors, meta


def _pack_int4_tensors(inits):
    """(tensors to store, {name: shape} of those stored as int4). An int8 tensor whose values
    all lie in [−7, 7] — the 4-bit weights of static layers (StaticQuantConfig(weight_bits=4),
    QAT) — is stored two values per byte (pack_int4 over the flattened tensor) and unpacked to
    the same int8 values at load (the ops then pack them for the 4-bit kernels): the file takes
    half the bytes.
    All-zero and tiny tensors stay as they are."""
    from .quantized.weights import pack_int4
    out, packed = {}, {}
    for k, a in inits.items():
        if a.dtype == np.int8 and a.size >= 16 and np.any(a) and \
                int(np.abs(a.astype(np.int16)).max()) <= 7:
            out[k] = pack_int4(np.ascontiguousarray(a).reshape(-1))
            packed[k] = list(a.shape)
        else:
            out[k] = a
    return out, packed


def _unpack_int4_tensors(tensors, meta, where):
    from .quantized.weights import unpack_int4
    spec = _strict_json(meta["int4_tensors"], "int4_tensors")
    if not isinstance(spec, dict):
        raise ModelError(f"{where}: int4_tensors must map tensor names to shapes")
    for name, shape in spec.items():
        if name not in tensors or not isinstance(shape, list) or len(shape) > MAX_RANK or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in shape):
            raise ModelError(f"{where}: int4_tensors entry {name!r}: no such tensor, or the "
                             f"shape {shape!r} is not a list of dims")
        size = int(np.prod(shape, dtype=np.int64))
        try:
            tensors[name] = unpack_int4(tensors[name], size).reshape(shape)
        except ValueError as e:
            raise ModelError(f"{where}: int4 tensor {name!r} (shape {shape}): {e}") from None


def _crc32(arr: np.ndarray) -> int:
    """CRC-32 of the bytes the engine file stores for `arr` (little-endian, C order)."""
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return zlib.crc32(memoryview(data).cast("B")) if data.size else 0


def _refuse_nan(arr: np.ndarray, what: str) -> None:
    """NaN in a weight is never intended (a diverged training run, a corrupted file): refuse it
    rather than let it reach the kernels, where int8 paths would read it as 0. ±Inf stays
    allowed: masks and clip bounds use it."""
    if arr.dtype.kind == "f":
        found = find_nan(arr)
        if found:
            raise ModelError(f"{what} holds {found[0]} NaN value(s) (first at index "
                             f"{found[1]}); weights must not be NaN")


def _verify_tensors(tensors: dict, meta: dict, where: str) -> None:
    text = meta.get("tensor_crc32")
    if text is not None:
        sums = _strict_json(text, f"{where}: tensor_crc32")
        if not isinstance(sums, dict) or sorted(sums) != sorted(tensors) or \
                not all(_is_int(v) for v in sums.values()):
            raise ModelError(f"{where}: tensor_crc32 must map every tensor name to an int")
        for name, arr in tensors.items():
            if _crc32(arr) != sums[name]:
                raise ModelError(f"{where}: tensor {name!r} is corrupted (its CRC-32 does not "
                                 f"match the one written with it); re-export or re-copy the "
                                 f"file")
    for name, arr in tensors.items():
        _refuse_nan(arr, f"{where}: tensor {name!r}")


# ---- reading ---------------------------------------------------------------------------------
def _strict_json(text: str, what: str) -> Any:
    def no_dupes(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ModelError(f"{what}: duplicate key {k!r}")
            d[k] = v
        return d

    def no_nan(c):
        raise ModelError(f"{what}: {c} is not allowed")
    try:
        return json.loads(text, object_pairs_hook=no_dupes, parse_constant=no_nan)
    except RecursionError:
        raise ModelError(f"{what}: JSON nested too deeply") from None
    except (ValueError, TypeError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"{what}: malformed JSON ({e})") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and validate a safetensors file; tensors are read-only views of a memory map."""
    tensors, metadata, _ = _read_safetensors(path)
    return tensors, metadata


def _read_safetensors(path):
    """read_safetensors, plus the memory map the tensors view (b"" for a file without data)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise ModelError(f"cannot open engine file {str(path)!r}: {e}") from e
    with f:
        if size < 8:
            raise ModelError(f"{path.name}: file is {size} bytes, too short for a header length")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return _parse_safetensors(buf, path.name)


def _parse_safetensors(buf, where: str):
    """Validate and read a whole safetensors file held in `buf` (a memory map or bytes); the
    tensors are read-only views of it. Returns (tensors, metadata, buf)."""
    size = len(buf)
    if size < 8:
        raise ModelError(f"{where}: {size} bytes, too short for a header length")
    n = int.from_bytes(buf[:8], "little")
    if n == 0 or n > size - 8 or n > MAX_HEADER_BYTES:
        raise ModelError(f"{where}: header length {n} is invalid (file has {size - 8} "
                         f"bytes after the length field; limit {MAX_HEADER_BYTES})")
    raw = bytes(buf[8:8 + n])
    data_len = size - 8 - n
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{where}: header is not UTF-8 ({e})") from None
    header = _strict_json(text, f"{where}: header")
    if not isinstance(header, dict):
        raise ModelError(f"{where}: header must be a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ModelError(f"{where}: __metadata__ must map strings to strings")
    specs = []
    for name, e in header.items():
        where = f"{where}: tensor {name!r}"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise ModelError(f"{where}: entry must have exactly dtype, shape, data_offsets")
        if e["dtype"] not in _DTYPES:
            raise ModelError(f"{where}: dtype {e['dtype']!r} is not supported (allowed: "
                             f"{sorted(_DTYPES)})")
        shape, offs = e["shape"], e["data_offsets"]
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(_is_int(d) and d >= 0 for d in shape)):
            raise ModelError(f"{where}: shape {shape!r} must be a list of at most {MAX_RANK} "
                             f"non-negative ints")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise ModelError(f"{where}: data_offsets {offs!r} must be [begin, end] with "
                             f"0 <= begin <= end <= {data_len} (the data size)")
        dtype = np.dtype(_DTYPES[e["dtype"]])
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if nbytes != offs[1] - offs[0]:
            raise ModelError(f"{where}: shape {shape} of {e['dtype']} needs {nbytes} bytes but "
                             f"data_offsets span {offs[1] - offs[0]}")
        specs.append((offs[0], offs[1], name, dtype, shape))
    specs.sort(key=lambda s: (s[0], s[1]))
    pos = 0
    for begin, end, name, _, _ in specs:
        if begin != pos:
            raise ModelError(f"{where}: tensor {name!r} starts at {begin} but the previous "
                             f"data ends at {pos} ({'overlap' if begin < pos else 'gap'})")
        pos = end
    if pos != data_len:
        raise ModelError(f"{where}: tensors cover {pos} bytes but the file has {data_len} "
                         f"bytes of data (trailing garbage or truncation)")
    tensors = {}
    for begin, end, name, dtype, shape in specs:
        start = 8 + n + begin
        if end == begin:
            arr = np.zeros(shape, dtype)
        else:
            arr = np.frombuffer(buf, dtype, math.prod(shape), start).reshape(shape)
            if start % dtype.itemsize:
                arr = arr.copy()  # misaligned data (foreign writers): copy once
        if arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        arr.setflags(write=False)
        tensors[name] = arr
    return tensors, metadata, buf


_GRAPH_KEYS = {"name", "opset", "inputs", "outputs", "nodes", "initializers"}
_VI_KEYS = {"name", "dtype", "shape"}
_NODE_KEYS = {"op_type", "name", "inputs", "outputs", "attrs"}


def _value_info(d, what) -> ValueInfo:
    if not isinstance(d, dict) or set(d) != _VI_KEYS:
        raise ModelError(f"{what}: must be an object with keys {sorted(_VI_KEYS)}")
    shape = d["shape"]
    if shape is not None and (not isinstance(shape, list) or len(shape) > MAX_RANK):
        raise ModelError(f"{what}: shape must be null or a list of at most {MAX_RANK} dims")
    return ValueInfo(d["name"], d["dtype"], None if shape is None else tuple(shape))


def _str_list(v, what):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ModelError(f"{what}: must be a list of strings")
    return v


_MAX_NESTING = 8       # If inside If...: real models nest two or three deep


def graph_from_json(g: Any, tensors: dict[str, np.ndarray]) -> Graph:
    """Build a Graph from the engine file's graph JSON, validating its schema."""
    claimed: set[str] = set()
    graph = _graph_from_json(g, tensors, "", 0, claimed)
    if claimed != set(tensors):
        raise ModelError(f"graph initializers {sorted(claimed)[:10]} do not match the file's "
                         f"tensors {sorted(tensors)[:10]}")
    graph.verify()
    return graph


def _attr_from_json(v, tensors, prefix, depth, claimed):
    """An attribute value; {"graph": ...} is a subgraph (its tensors under `prefix`)."""
    if not isinstance(v, dict):
        return v
    if set(v) != {"graph"}:
        raise ModelError("an object-valued attribute must be {\"graph\": subgraph}")
    if depth >= _MAX_NESTING:
        raise ModelError(f"subgraphs nest more than {_MAX_NESTING} deep")
    return _graph_from_json(v["graph"], tensors, prefix, depth + 1, claimed)


def _graph_from_json(g, tensors, prefix, depth, claimed) -> Graph:
    if not isinstance(g, dict) or set(g) != _GRAPH_KEYS:
        raise ModelError(f"graph JSON must be an object with keys {sorted(_GRAPH_KEYS)}")
    if not isinstance(g["name"], str):
        raise ModelError("graph name must be a string")
    opset = g["opset"]
    if not isinstance(opset, dict) or not all(_is_int(v) for v in opset.values()):
        raise ModelError("graph opset must map domain strings to ints")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(g[key], list):
            raise ModelError(f"graph {key} must be a list")
    inputs = [_value_info(v, f"graph input {i}") for i, v in enumerate(g["inputs"])]
    outputs = [_value_info(v, f"graph output {i}") for i, v in enumerate(g["outputs"])]
    nodes = []
    for i, d in enumerate(g["nodes"]):
        if not isinstance(d, dict) or set(d) != _NODE_KEYS:
            raise ModelError(f"node {i}: must be an object with keys {sorted(_NODE_KEYS)}")
        if not isinstance(d["attrs"], dict):
            raise ModelError(f"node {i}: attrs must be an object")
        if not isinstance(d["name"], str):
            raise ModelError(f"node {i}: name must be a string")
        attrs = {k: _attr_from_json(v, tensors, f"{prefix}{d['name']}/{k}/", depth, claimed)
                 for k, v in d["attrs"].items()}
        nodes.append(Node(d["op_type"], d["name"], tuple(_str_list(d["inputs"], f"node {i} inputs")),
                          tuple(_str_list(d["outputs"], f"node {i} outputs")), attrs))
    names = _str_list(g["initializers"], "graph initializers")
    if len(set(names)) != len(names) or claimed.intersection(names) or \
            not all(k.startswith(prefix) and k in tensors for k in names):
        raise ModelError(f"graph initializers {sorted(names)[:10]} do not match the file's "
                         f"tensors {sorted(tensors)[:10]}")
    claimed.update(names)
    return Graph(inputs, outputs, nodes, {k[len(prefix):]: tensors[k] for k in names},
                 dict(opset), g["name"])


def load_graph(path, *, verify: bool = True) -> Graph:
    """Read and fully validate an engine file; returns its Graph (nothing is run).
    verify=False skips the per-tensor CRC-32 and NaN checks (see `load`)."""
    return _load_graph(path, verify)[0]


def _load_graph(path, verify: bool = True):
    from .model_files import refuse_non_engine_file
    refuse_non_engine_file(path)            # an ONNX or NumPy file: say what it is, what to call
    tensors, meta, mapped = _read_safetensors(path)
    return _engine_graph(tensors, meta, Path(path).name, verify), mapped


def _engine_graph(tensors, meta, where: str, verify: bool) -> Graph:
    if meta.get("format") != FORMAT:
        raise ModelError(f"{where}: not a qengine engine file (metadata format is "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    version = meta.get("format_version")
    if version not in READ_VERSIONS:
        raise ModelError(f"{where}: engine format version {version!r} is not "
                         f"supported (this qengine reads versions {', '.join(READ_VERSIONS)}; "
                         f"re-export the model)")
    if "graph" not in meta:
        raise ModelError(f"{where}: metadata has no graph")
    if verify:
        _verify_tensors(tensors, meta, where)
    if "int4_tensors" in meta:
        if version == FORMAT_VERSION:
            raise ModelError(f"{where}: engine format version 1 cannot hold int4 "
                             f"tensors (version {FORMAT_VERSION_INT4} can)")
        _unpack_int4_tensors(tensors, meta, where)
    graph = graph_from_json(_strict_json(meta["graph"], "graph"), tensors)
    if version == FORMAT_VERSION and any(n.attrs.get("weight_bits") == 4 for n in graph.nodes):
        raise ModelError(f"{where}: engine format version 1 cannot hold 4-bit "
                         f"weights (weight_bits=4 needs version {FORMAT_VERSION_INT4})")
    return graph


def build_session(graph: Graph, where: str, **session_kwargs):
    """Session(graph) for a graph read from a file: an op constructor that trips over a value
    the checks let through is reported as a ModelError naming `where`, not as a bare
    TypeError from deep inside the op."""
    from .session import Session
    try:
        return Session(graph, **session_kwargs)
    except QEngineError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError) as e:
        raise ModelError(f"{where}: building the ops failed: {type(e).__name__}: {e}") from e


def load(path, *, nan="error", verify: bool = True, **session_kwargs):
    """Load an engine file into a Session. Raises ModelError for anything invalid.
    nan="error" (default) refuses float inputs holding NaN, nan="allow" lets them through
    (Session, docs/numerics.md "NaN and Inf"). verify=True (default) checks every tensor's
    CRC-32 and that no float tensor holds NaN: one pass over the weights, which building the
    Session reads anyway; verify=False skips it for the fastest start of a file you trust.

    Weights are held once: the ops pack their int8 weights into the CPU's layout while the
    Session is built, reading them from the file's memory map, and the file pages read for that
    are then handed back to the OS (madvise MADV_DONTNEED where the platform has it). The map
    stays valid, so `session.graph` still holds every tensor: what is read again later (the
    initializers float ops use at run time, or a second Session built from the graph) pages
    back in from the OS file cache, and only what is read stays resident."""
    graph, mapped = _load_graph(path, verify)
    session = build_session(graph, Path(path).name, nan=nan, **session_kwargs)
    if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)
    return session


def loads(data, *, nan="error", verify: bool = True, **session_kwargs):
    """`load` for an engine file held in memory (bytes, e.g. from `dumps`, a network message or
    a pickled Session): the same checks, and the Session's tensors view `data`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelError(f"loads expects the bytes of an engine file, got {type(data).__name__}")
    tensors, meta, _ = _parse_safetensors(bytes(data), "engine bytes")
    graph = _engine_graph(tensors, meta, "engine bytes", verify)
    return build_session(graph, "engine bytes", nan=nan, **session_kwargs)
