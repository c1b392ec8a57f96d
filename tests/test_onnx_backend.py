"""onnx's own backend node tests for every ONNX op qengine imports (the harness and the list of
exclusions, each with its reason, are in scripts/onnx_conformance.py).

Each case must pass; an excluded case must be *refused* with a QEngineError (never produce a
wrong answer), a listed deviation must show exactly that deviation. docs/onnx_conformance.md
must be what the script writes today.
"""
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import onnx_conformance as oc  # noqa: E402

from qengine.frontends.onnx_opsets import OP_VERSIONS  # noqa: E402

CASES = oc.node_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case):
    out = oc.outcome(case)
    verdict = oc.verdict(case, out)
    assert not verdict.startswith("unexpected"), f"{verdict}: {out.detail}"


def test_every_op_has_a_running_case():
    """A pass, or a listed deviation (float64 cases computed in float32, values matching: all
    of Einsum's float cases are float64; tests/test_ops_reach.py runs it on float32)."""
    ran = {c.op for c in CASES if oc.verdict(c, oc.outcome(c)) in ("pass", "deviation")}
    assert sorted(set(OP_VERSIONS) - ran) == []


def test_lists_name_real_cases():
    """An exclusion or deviation for a case onnx no longer generates is stale."""
    names = {c.base_name for c in CASES}
    assert sorted((set(oc.EXCLUDED) | set(oc.DEVIATIONS)) - names) == []


def test_doc_is_current():
    ort = pytest.importorskip("onnxruntime")
    text = oc.DOC.read_text()
    import onnx
    stamp = f"onnx {onnx.__version__}'s node tests"
    if stamp not in text or f"onnxruntime {ort.__version__} " not in text:
        pytest.skip(f"{oc.DOC.name} was written with other onnx/onnxruntime versions; "
                    f"regenerate it with python scripts/onnx_conformance.py")
    want = oc.render(oc.counts("qengine"), oc.counts("ort"), ort.__version__)
    assert text == want, "docs/onnx_conformance.md is stale: python scripts/onnx_conformance.py"
