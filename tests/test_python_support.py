"""The package keeps to the oldest Python that pyproject.toml's requires-python claims.

Two checks, since grammar alone is not enough: every module must parse with that version's
grammar (ast's feature_version), and no `X | Y` on types may be *evaluated* at import or call
time before 3.10 (PEP 604), which the grammar allows but the interpreter rejects — the bug that
made qengine/graph/ir.py fail on 3.9. Annotations are exempt in modules with
`from __future__ import annotations`, where they are never evaluated. .ci/run also imports and
runs the package on a real 3.9 when the machine has one.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPE_NAMES = {"int", "str", "float", "bool", "bytes", "list", "dict", "tuple", "set", "type",
              "object", "complex", "frozenset"}


def _oldest_python():
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', text, re.M)
    assert m, "pyproject.toml must state requires-python as \">=X.Y\""
    return int(m.group(1)), int(m.group(2))


def _sources():
    files = sorted((ROOT / "qengine").rglob("*.py"))
    assert len(files) > 50, "package sources not found"
    return files


def _is_type_operand(node):
    return ((isinstance(node, ast.Name) and node.id in TYPE_NAMES)
            or (isinstance(node, ast.Constant) and node.value is None)
            or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
                and _is_type_operand(node.left) and _is_type_operand(node.right)))


def _annotation_nodes(tree):
    """ids of every node inside an annotation (never evaluated under postponed evaluation)."""
    out = set()
    for node in ast.walk(tree):
        anns = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(node.returns)
            a = node.args
            anns += [x.annotation for x in a.posonlyargs + a.args + a.kwonlyargs]
            anns += [x.annotation for x in (a.vararg, a.kwarg) if x is not None]
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for ann in anns:
            if ann is not None:
                out.update(id(n) for n in ast.walk(ann))
    return out


def _evaluated_pep604_unions(tree):
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names) for n in tree.body)
    exempt = _annotation_nodes(tree) if postponed else set()
    return sorted({n.lineno for n in ast.walk(tree)  # a set: `a | b | c` nests two BinOps
                   if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                   and _is_type_operand(n) and id(n) not in exempt})


def test_every_module_parses_with_the_oldest_claimed_grammar():
    oldest = _oldest_python()
    bad = []
    for path in _sources():
        try:
            ast.parse(path.read_text(), filename=str(path), feature_version=oldest)
        except SyntaxError as e:
            bad.append(f"{path.relative_to(ROOT)}:{e.lineno}: {e.msg}")
    assert not bad, f"not valid Python {oldest[0]}.{oldest[1]} syntax:\n" + "\n".join(bad)


def test_no_evaluated_type_unions_before_3_10():
    if _oldest_python() >= (3, 10):
        pytest.skip("requires-python is >= 3.10: `int | str` is evaluable everywhere claimed")
    bad = [f"{path.relative_to(ROOT)}:{line}"
           for path in _sources() for line in _evaluated_pep604_unions(ast.parse(path.read_text()))]
    assert not bad, ("`X | Y` on types evaluated at run time fails before Python 3.10 "
                     "(use typing.Optional/Union):\n" + "\n".join(bad))


def test_the_union_check_catches_the_ir_py_bug():
    # The form that broke 3.9, in a module with postponed annotations as ir.py has.
    src = ("from __future__ import annotations\n"
           "Dim = int | str | None\n"
           "def f(x: int | None) -> str | None: ...\n")
    assert _evaluated_pep604_unions(ast.parse(src)) == [2]
