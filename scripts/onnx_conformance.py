"""ONNX's own backend node tests (onnx.backend.test) through qengine, and onnxruntime.

The installed onnx wheel carries the generators of its node tests (`onnx.backend.test.case.node`,
the code that writes `onnx/backend/test/data/node/*` in the onnx repository), not the data: we
generate the cases in memory — one model plus input/output arrays each, at the opset onnx wrote
them for — keep those whose op qengine imports (the op of a function-expanded case is the op
it expands), and run each one. A case written for an older opset is run a second time re-stamped
to `MAX_OPSET` when the table in `qengine/frontends/onnx_opsets.py` says none of its ops changed
semantics in between (the re-stamped model must also pass onnx's checker).

Outcomes: "pass" (shapes, dtypes and values within the case's rtol/atol, as onnx's runner
checks), "fail" (a wrong result), "refused" (a QEngineError: qengine said what it does not
support), "crash" (any other exception). A case is *excluded* for a reason listed below —
dtypes, value kinds or features qengine does not implement — and an excluded case must be
refused, never run into a wrong answer. `tests/test_onnx_backend.py` holds qengine to that;
`python scripts/onnx_conformance.py` writes docs/onnx_conformance.md (per-op counts for
qengine and, through the same cases, onnxruntime).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a source checkout's in-place build

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from qengine import QEngineError, Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.frontends.onnx_opsets import MAX_OPSET, MIN_OPSET, OP_VERSIONS, SAME  # noqa: E402
from qengine.graph.ir import DTYPES  # noqa: E402

DOC = ROOT / "docs" / "onnx_conformance.md"

#: Inputs qengine packs at load (RNN weights): real models hold them as initializers, the node
#: tests feed them as graph inputs, so the harness turns them into initializers (for both
#: engines, so both run the same model). Node input indices.
PACKED_INPUTS = {"LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3)}

#: Cases qengine does not run, by name (without the "@opsetN" of a re-stamped copy).
EXCLUDED = {
    "test_batchnorm_epsilon_training_mode": "training mode (running-statistics outputs); "
                                            "qengine is inference-only",
    "test_batchnorm_example_training_mode": "training mode (running-statistics outputs); "
                                            "qengine is inference-only",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is not "
                                                    "implemented",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is not "
                                                       "implemented",
    "test_gelu_tanh_1": "Gelu approximate='tanh' (its X³ is a Pow whose float32 rounding "
                        "qengine does not reproduce)",
    "test_gelu_tanh_2": "Gelu approximate='tanh' (its X³ is a Pow whose float32 rounding "
                        "qengine does not reproduce)",
}
#: ... and by name pattern.
EXCLUDED_PATTERNS = {
    r"^test_training_dropout": "Dropout with a run-time training_mode input (random training "
                               "dropout); qengine is inference-only",
}

#: Cases qengine runs with a known difference (the test requires exactly this difference).
_F32 = ("the executor computes floats in float32, so a float16/float64 graph input comes out "
        "as float32 (values match)")
DEVIATIONS = {"test_max_float16": _F32, "test_max_float64": _F32,
              "test_min_float16": _F32, "test_min_float64": _F32,
              **{f"test_cumsum_{k}": _F32 for k in (
                  "1d", "1d_exclusive", "1d_reverse", "1d_reverse_exclusive", "2d_axis_0",
                  "2d_axis_1", "2d_negative_axis")},
              **{f"test_einsum_{k}": _F32 for k in (
                  "transpose", "sum", "batch_diagonal", "inner_prod", "batch_matmul", "scalar")},
              "test_range_float16_type_positive_delta": _F32,
              **{f"test_mod_{k}": _F32 for k in (
                  "mixed_sign_float64", "mixed_sign_float16", "float64_mixed_sign_fmod_0",
                  "float16_mixed_sign_fmod_0", "float_edge_cases_fmod_0_float16",
                  "float_edge_cases_fmod_0_float64")},
              **{f"test_reduce_log_sum_exp_{k}_{d}{e}": _F32 for d in ("example", "random")
                 for k in ("do_not_keepdims", "keepdims", "default_axes_keepdims",
                           "negative_axes_keepdims") for e in ("", "_expanded")},
              **{f"test_castlike_{k}": _F32 for k in (
                  "FLOAT_to_FLOAT16", "FLOAT_to_DOUBLE", "FLOAT16_to_DOUBLE", "DOUBLE_to_FLOAT16")}}


@dataclass(frozen=True)
class Case:
    name: str
    op: str
    model: onnx.ModelProto = field(repr=False)
    inputs: tuple = field(repr=False)
    outputs: tuple = field(repr=False)
    rtol: float
    atol: float
    opset: int
    restamped: bool = False

    @property
    def base_name(self) -> str:
        return self.name.split("@")[0]


@dataclass(frozen=True)
class Outcome:
    status: str  # pass | fail | refused | crash
    detail: str = ""


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


@lru_cache(maxsize=1)
def _onnx_cases():
    """onnx's node test cases with the op each one tests (generated once; seeded, since some
    generators draw random inputs)."""
    from onnx.backend.test.case import node
    state = np.random.get_state()
    np.random.seed(0)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            cases = list(node.collect_testcases())
    finally:
        np.random.set_state(state)
    op_of, out = {}, []
    for c in cases:
        if "_expanded" in c.name:  # test_x_expanded[_verN]: op x as a function body
            op = op_of.get(c.name.split("_expanded")[0])
        else:
            nodes = c.model.graph.node
            op = nodes[0].op_type if len(nodes) == 1 and nodes[0].domain in ("", "ai.onnx") \
                else None
            op_of[c.name] = op
        out.append((op, c))
    return out


def _as_array(x) -> np.ndarray:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def _bake_packed(model, op, inputs):
    """Make PACKED_INPUTS initializers; returns the model and the remaining inputs."""
    idx = PACKED_INPUTS.get(op)
    if not idx or len(model.graph.node) != 1:
        return model, inputs
    node = model.graph.node[0]
    names = {node.input[i] for i in idx if i < len(node.input) and node.input[i]}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph_inputs = list(model.graph.input)
    keep, rest = [], []
    for vi, x in zip(graph_inputs, inputs):
        if vi.name in names:
            model.graph.initializer.append(numpy_helper.from_array(_as_array(x), vi.name))
        else:
            keep.append(vi)
            rest.append(x)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model, tuple(rest)


def _restampable(model, opset_from: int, opset_to: int) -> bool:
    """True when no op of the model changes semantics between the two opsets (per our table;
    onnx's checker then validates the re-stamped model against the newer schemas)."""
    for n in _all_nodes(model.graph):
        versions = OP_VERSIONS.get(n.op_type)
        if versions is None:
            return False
        if any(opset_from < v.since <= opset_to and v.kind != SAME for v in versions):
            return False
    return True


def _all_nodes(g):
    """The nodes of g and of its subgraphs (If branches, Loop bodies), depth first."""
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_nodes(a.g)


def _restamp(model, opset: int):
    m = onnx.ModelProto.FromString(model.SerializeToString())
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = opset
    m.ir_version = max(m.ir_version, onnx.helper.find_min_ir_version_for(
        [onnx.helper.make_opsetid("", opset)]))
    onnx.checker.check_model(m, full_check=True)
    return m


@lru_cache(maxsize=1)
def node_cases() -> tuple[Case, ...]:
    """Every node case of an op qengine imports, plus re-stamped copies (see module doc)."""
    out = []
    for op, c in _onnx_cases():
        if op not in OP_VERSIONS:
            continue
        (inputs, outputs), = c.data_sets
        model, inputs = _bake_packed(c.model, op, tuple(inputs))
        opset = _opset(model)
        case = Case(c.name, op, model, inputs, tuple(outputs), c.rtol, c.atol, opset)
        out.append(case)
        if opset < MAX_OPSET and _restampable(model, opset, MAX_OPSET):
            out.append(replace(case, name=f"{c.name}@opset{MAX_OPSET}", opset=MAX_OPSET,
                               model=_restamp(model, MAX_OPSET), restamped=True))
    return tuple(out)


def exclusion(case: Case) -> str | None:
    """Why qengine does not run this case, or None."""
    if case.base_name in EXCLUDED:
        return EXCLUDED[case.base_name]
    for pattern, reason in EXCLUDED_PATTERNS.items():
        if re.search(pattern, case.base_name):
            return reason
    g = case.model.graph
    for vi in (*g.input, *g.output):
        if not vi.type.HasField("tensor_type"):
            return f"{vi.type.WhichOneof('value')} values (qengine imports tensors only)"
    types = {vi.type.tensor_type.elem_type for vi in (*g.input, *g.output)}
    types |= {a.i for n in g.node for a in n.attribute if n.op_type == "Cast" and a.name == "to"}
    bad = sorted(onnx.TensorProto.DataType.Name(t) for t in types if not _dtype_ok(t))
    if bad:
        return f"element types {', '.join(bad)} (not qengine dtypes)"
    missing = sorted({n.op_type for n in g.node if n.op_type not in OP_VERSIONS})
    if missing:
        return f"the function body uses {', '.join(missing)}, which qengine does not implement"
    if case.opset < MIN_OPSET:
        return f"opset {case.opset} < {MIN_OPSET}, the oldest qengine imports"
    return None


def _dtype_ok(elem_type: int) -> bool:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name in DTYPES
    except (KeyError, TypeError, ValueError):
        return False


def _compare(case: Case, got: list) -> Outcome:
    """pass, or the first difference; a dtype difference says whether the values match."""
    dtype_note = None
    for i, (want, have) in enumerate(zip(case.outputs, got)):
        want, have = _as_array(want), np.asarray(have)
        if have.shape != want.shape:
            return Outcome("fail", f"output {i}: shape {have.shape}, expected {want.shape}")
        try:
            np.testing.assert_allclose(have.astype(want.dtype), want, rtol=case.rtol,
                                       atol=case.atol)
        except AssertionError as e:
            msg = " ".join(str(e).split())
            return Outcome("fail", f"output {i}: {msg[:300]}")
        if have.dtype != want.dtype and dtype_note is None:
            dtype_note = f"output {i}: dtype {have.dtype}, expected {want.dtype} (values match)"
    return Outcome("pass") if dtype_note is None else Outcome("fail", dtype_note)


def _feeds(case: Case) -> dict:
    return {vi.name: _as_array(x) for vi, x in zip(case.model.graph.input, case.inputs)}


def run_qengine(case: Case) -> Outcome:
    try:
        sess = Session(from_onnx(case.model), nan="allow")   # the cases feed NaN on purpose
        out = sess.run(_feeds(case))
        return _compare(case, [out[o.name] for o in case.model.graph.output])
    except QEngineError as e:
        return Outcome("refused", f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - that is the point: any other exception is a bug
        return Outcome("crash", f"{type(e).__name__}: {e}")


def run_ort(case: Case) -> Outcome:
    import onnxruntime as ort
    ort.set_default_logger_severity(4)  # its failures are outcomes here, not log noise
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        sess = ort.InferenceSession(case.model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        return _compare(case, sess.run(None, _feeds(case)))
    except Exception as e:  # noqa: BLE001 - ORT raises its own error types
        return Outcome("refused", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")


# ---- the report -------------------------------------------------------------------------------
_OUTCOMES: dict[tuple[str, str], Outcome] = {}


def outcome(case: Case, engine: str = "qengine") -> Outcome:
    """run_qengine / run_ort of a case, computed once per process."""
    key = (engine, case.name)
    if key not in _OUTCOMES:
        _OUTCOMES[key] = (run_qengine if engine == "qengine" else run_ort)(case)
    return _OUTCOMES[key]


def verdict(case: Case, out: Outcome) -> str:
    """qengine's result against the expectations: "pass", "excluded" (refused, for a listed
    reason), "deviation" (the listed difference), or "unexpected: ..." (a bug, or a list to
    update)."""
    reason, deviation = exclusion(case), DEVIATIONS.get(case.base_name)
    if deviation is not None:
        ok = out.status == "fail" and "dtype float32, expected float" in out.detail and \
            out.detail.endswith("(values match)")
        return "deviation" if ok else f"unexpected: {out.status} for a listed deviation"
    if reason is None:
        return "pass" if out.status == "pass" else f"unexpected: {out.status}"
    if out.status == "refused":
        return "excluded"
    return f"unexpected: {out.status} for an excluded case ({reason})"


def counts(engine: str) -> dict[str, collections.Counter]:
    """op → Counter over native and re-stamped ("r_" prefix) cases: for qengine of verdicts,
    for onnxruntime of pass / not."""
    table = collections.defaultdict(collections.Counter)
    for case in node_cases():
        out = outcome(case, engine)
        status = verdict(case, out) if engine == "qengine" else \
            ("pass" if out.status == "pass" else "not")
        table[case.op][("r_" if case.restamped else "") + status.split(":")[0]] += 1
    return table


def render(q_counts, ort_counts=None, ort_version: str | None = None) -> str:
    """docs/onnx_conformance.md."""
    lines = [
        "# ONNX backend node tests",
        "",
        "Generated by `python scripts/onnx_conformance.py`; `tests/test_onnx_backend.py` runs "
        "the same cases and checks that this page is current.",
        "",
        f"Cases: onnx {onnx.__version__}'s node tests (`onnx.backend.test.case.node`, the "
        f"generators of `onnx/backend/test/data/node`) for the {len(OP_VERSIONS)} ONNX ops "
        f"qengine imports, at the opset onnx wrote each for; *re-stamped*: the same cases "
        f"again at opset {MAX_OPSET}, for those where none of the case's ops changed "
        f"semantics since (per `qengine/frontends/onnx_opsets.py`; onnx's checker validates "
        f"each re-stamped model). *pass*: shapes, dtypes and values within the case's "
        f"tolerances, as onnx's runner checks. *excluded*: dtypes, value kinds or features "
        f"qengine does not implement — qengine refuses each with a clear error (reasons "
        f"below). *deviation*: runs with the listed difference. *fail*: anything else "
        f"(the test requires 0).",
        "",
    ]
    if ort_counts is not None:
        lines += [f"onnxruntime {ort_version} (CPU) ran the same models and inputs through the "
                  f"same harness and checks (a case it errors on or gets wrong is not a pass).",
                  ""]
    head = ["op", "cases", "pass", "excluded", "deviation", "fail", "re-stamped",
            "re-stamped pass"]
    if ort_counts is not None:
        head += ["onnxruntime pass", "onnxruntime re-stamped pass"]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    total = [0] * (len(head) - 1)
    for op in sorted(OP_VERSIONS):
        c = q_counts.get(op, collections.Counter())
        native = sum(v for k, v in c.items() if not k.startswith("r_"))
        re_n = sum(v for k, v in c.items() if k.startswith("r_"))
        row = [native, c["pass"], c["excluded"], c["deviation"], c["unexpected"], re_n,
               c["r_pass"]]
        if ort_counts is not None:
            o = ort_counts.get(op, collections.Counter())
            row += [o["pass"], o["r_pass"]]
        total = [t + x for t, x in zip(total, row)]
        lines.append(f"| {op} | " + " | ".join(str(x) for x in row) + " |")
    lines.append("| **total** | " + " | ".join(f"**{t}**" for t in total) + " |")

    lines += ["", f"## Operator versions (opsets {MIN_OPSET}–{MAX_OPSET})", "",
              "From `qengine/frontends/onnx_opsets.py`: each op's versions from the one in "
              f"effect at opset {MIN_OPSET}; *implemented*: a semantic change qengine "
              "implements; *same*: only types or wording changed (the listed notes say what).",
              "", "| op | base | implemented changes | same semantics | refused |",
              "|---|---|---|---|---|"]
    for op, versions in sorted(OP_VERSIONS.items()):
        by_kind = collections.defaultdict(list)
        for v in versions:
            by_kind[v.kind].append(f"{v.since}: {v.note}" if v.kind != SAME else str(v.since))
        lines.append(f"| {op} | {by_kind['base'][0]} | {'; '.join(by_kind['implemented'])} | "
                     f"{', '.join(by_kind['same'])} | {'; '.join(by_kind['refused'])} |")

    cases = node_cases()
    reasons = collections.Counter(exclusion(c) for c in cases
                                  if exclusion(c) and c.base_name not in DEVIATIONS)
    lines += ["", "## Exclusions (cases, re-stamped copies included)", "",
              "| reason | cases |", "|---|---:|"]
    lines += [f"| {r} | {n} |" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "## Deviations", ""]
    lines += [f"- `{c.name}`: {DEVIATIONS[c.base_name]}" for c in cases
              if c.base_name in DEVIATIONS]
    if ort_counts is not None:
        lines += ["", "## onnxruntime's cases that are not a pass", ""]
        dtype_cases = 0
        for c in cases:
            o = outcome(c, "ort")
            if o.status == "pass":
                continue
            if (exclusion(c) or "").startswith("element types"):
                dtype_cases += 1  # the harness feeds NumPy arrays: no float8/int4/bfloat16
                continue
            lines.append(f"- `{c.name}`: {o.status}: {_short(o.detail)}")
        lines.append(f"- and {dtype_cases} cases with element types qengine has no dtype for "
                     f"(NumPy cannot feed or receive most of them)")
    return "\n".join(lines) + "\n"


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[:n - 3] + "..."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-ort", action="store_true", help="skip the onnxruntime columns")
    p.add_argument("--list", action="store_true",
                   help="print every case's outcome instead of writing the page")
    args = p.parse_args(argv)
    if args.list:
        for case in node_cases():
            o = outcome(case)
            print(f"{case.op:<18} {case.name:<60} {verdict(case, o):<10} "
                  f"{_short(o.detail, 200) if o.status != 'pass' else ''}")
        return 0
    ort_counts = ort_version = None
    if not args.no_ort:
        import onnxruntime
        ort_counts, ort_version = counts("ort"), onnxruntime.__version__
    DOC.write_text(render(counts("qengine"), ort_counts, ort_version))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
