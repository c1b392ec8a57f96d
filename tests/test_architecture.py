"""The oracles stay independent of what they check.

qengine/reference is the NumPy definition the compiled paths are tested against. If production
code imported it, a bug there would be in both sides of every comparison and no test could see
it; if the reference imported production numerics, the same in reverse. So: an import scan in
both directions, and, for each production helper that re-implements a reference one (window
sizes, SAME pads, multipliers, requant and activation tables, the torch gate re-layout), a test
that the two agree on many inputs, extremes included.
"""
import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import window
from qengine.frontends import torch_state_dict as tsd
from qengine.quantized import elementwise as E
from qengine.quantized import params as S
from qengine.reference import conv as R
from qengine.reference import rnn as RR

PKG = Path(qengine.__file__).resolve().parent
REF = "qengine.reference"
# what the reference may import: the standard library's arithmetic, NumPy, its own modules
# and qengine.errors (raising the package's error types is not numerics)
REF_ALLOWED = ("__future__", "math", "numpy", REF, "qengine.errors")


def _package(path, root):
    """Dotted package that `path` belongs to, `root` being the top package's directory."""
    parts = path.relative_to(root.parent).parent.parts
    return ".".join(parts)


def imported_modules(path, root=PKG):
    """Absolute names of every module `path` imports, in any form: import a.b, from a import b
    (both a and a.b, since b may be a submodule), relative imports resolved against the file's
    package, and importlib.import_module / __import__ with a constant string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    pkg = _package(path, root)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.append((mod, node.lineno))
            found += [(f"{mod}.{a.name}", node.lineno) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.args[0].value, node.lineno))
    return found


def _under(mod, prefix):
    return mod == prefix or mod.startswith(prefix + ".")


def _sources(inside_reference):
    ref_dir = PKG / "reference"
    return [p for p in sorted(PKG.rglob("*.py"))
            if (ref_dir in p.parents) == inside_reference]


def test_scan_sees_every_import_form(tmp_path):
    # the scan itself, on a throwaway package laid out like qengine/quantized/
    pkg = tmp_path / "qengine" / "quantized"
    pkg.mkdir(parents=True)
    src = pkg / "m.py"
    src.write_text("import qengine.reference.conv\n"
                   "from qengine import reference\n"
                   "from ..reference.conv import same_pads\n"
                   "from .. import reference as r\n"
                   "import importlib\n"
                   "importlib.import_module('qengine.reference.rnn')\n"
                   "def f():\n    from ..reference import gemm\n")
    hits = {line for mod, line in imported_modules(src, tmp_path / "qengine") if _under(mod, REF)}
    assert hits == {1, 2, 3, 4, 6, 8}


def test_production_never_imports_the_reference():
    files = _sources(inside_reference=False)
    assert len(files) > 50, "the scan found too few modules: wrong package path?"
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {mod}"
           for p in files for mod, line in imported_modules(p) if _under(mod, REF)]
    assert not bad, "production code imports the reference oracle:\n" + "\n".join(bad)


def test_reference_imports_no_production_code():
    files = _sources(inside_reference=True)
    assert files
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {mod}"
           for p in files for mod, line in imported_modules(p)
           if not any(_under(mod, ok) for ok in REF_ALLOWED)]
    assert not bad, "the reference depends on code it is meant to check:\n" + "\n".join(bad)


# ---- window geometry ---------------------------------------------------------------------------
def test_out_size_agrees_with_reference():
    rng = range
    for size, k, s, d, p0, p1, ceil in itertools.product(
            rng(0, 14), rng(1, 5), rng(1, 5), rng(1, 4), rng(0, 4), rng(0, 4), (False, True)):
        assert window.out_size(size, k, s, d, p0, p1, ceil) == \
            R.conv_out_size(size, k, s, d, p0, p1, ceil), (size, k, s, d, p0, p1, ceil)
    for args in ((2**31 - 1, 7, 3, 2, 5, 0), (10**12, 3, 1, 1, 1, 1), (1, 2**20, 1, 1, 0, 0),
                 (2**31, 1, 2**31 - 1, 1, 0, 0), (5, 3, 10**9, 1, 1, 1)):
        for ceil in (False, True):
            assert window.out_size(*args, ceil) == R.conv_out_size(*args, ceil), args


def test_same_pads_agree_with_reference():
    for size, k, s, d, upper in itertools.product(
            range(0, 40), range(1, 8), range(1, 6), range(1, 4), (True, False)):
        assert window.same_pads(size, k, s, d, upper) == R.same_pads(size, k, s, d, upper), \
            (size, k, s, d, upper)
    for size, k, s, d in ((2**31 - 1, 3, 2, 1), (10**12, 11, 7, 3), (1, 2**20, 1, 1),
                          (2**20, 1, 2**20 + 1, 1)):
        for upper in (True, False):
            assert window.same_pads(size, k, s, d, upper) == R.same_pads(size, k, s, d, upper)


# ---- multipliers and tables --------------------------------------------------------------------
TINY = np.finfo(np.float32).tiny
BIG = np.finfo(np.float32).max


def _scales(n, seed):
    """float32 scales from FLT_MIN to FLT_MAX: log-uniform, plus the ends and powers of two."""
    rng = np.random.default_rng(seed)
    logu = np.exp(rng.uniform(np.log(TINY), np.log(BIG), n)).astype(np.float32)
    usual = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n)).astype(np.float32)
    ends = np.array([TINY, BIG, 1.0, 2.0**-20, 2.0**20, np.nextafter(np.float32(1), 2)],
                    np.float32)
    return np.concatenate([logu, usual, ends])


def _same_bits(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_rescale_and_mul_multipliers_agree_with_reference():
    xs, ys, zs = _scales(300, 1), _scales(300, 2), _scales(300, 3)
    with np.errstate(over="ignore", under="ignore"):
        for a, b, y in zip(xs, ys, zs):
            ma, mb = R.add_multipliers(a, b, y)
            assert _same_bits(S.rescale_multiplier(a, y), ma)
            assert _same_bits(S.rescale_multiplier(b, y), mb)
            assert _same_bits(S.mul_multiplier(a, b, y), R.mul_multiplier(a, b, y))
        # Python floats not representable in float32 are rounded to float32 first on both sides
        assert _same_bits(S.mul_multiplier(0.1, 0.3, 0.7), R.mul_multiplier(0.1, 0.3, 0.7))


@pytest.mark.parametrize("ntaps", [1, 2, 9, 49, 4096])
def test_avgpool_multipliers_agree_with_reference(ntaps):
    with np.errstate(over="ignore", under="ignore"):
        for x, y in zip(_scales(40, ntaps), _scales(40, ntaps + 1)):
            assert _same_bits(S.avgpool_multipliers(x, y, ntaps),
                              R.avgpool_multipliers(x, y, ntaps))


def _qparams(n, seed):
    """(scale, zero point) pairs: typical, zero points at both ends, scales over a wide range
    (kept inside 2^±40 so that the tables' ratios stay finite, as a requantize needs)."""
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(np.log(2.0**-40), np.log(2.0**40), n)).astype(np.float32)
    z = rng.integers(0, 256, n)
    fixed = [(np.float32(2.0**-40), 0), (np.float32(2.0**40), 255), (np.float32(1.0), 128),
             (np.float32(0.02), 0), (np.float32(0.02), 255), (np.float32(1 / 255), 0)]
    return fixed + list(zip(s, (int(v) for v in z)))


def test_requant_tables_agree_with_reference():
    for (xs, xz), (ys, yz) in zip(_qparams(400, 4), _qparams(400, 5)):
        assert np.array_equal(S.requant_table(xs, xz, ys, yz),
                              R.requant_table_ref(xs, xz, ys, yz)), (xs, xz, ys, yz)


def test_quantize_agrees_with_reference():
    rng = np.random.default_rng(6)
    f = np.float32
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, TINY, -TINY, BIG, -BIG,
                         0.5, 1.5, 2.5, -0.5, -1.5, 127.5, 128.5, 254.5, 255.5, -255.5],
                        np.float32)
    r = np.concatenate([specials, rng.normal(0, 50, 2000).astype(f),
                        (rng.integers(-600, 600, 2000) + f(0.5)).astype(f),   # ties
                        rng.standard_cauchy(2000).astype(f) * f(1e6)])
    for s, z in _qparams(60, 7) + [(f(TINY), 0), (f(BIG), 255)]:
        with np.errstate(over="ignore", invalid="ignore"):
            on_grid = r * s   # values on the scale's own grid
        for v in (r, on_grid):
            assert np.array_equal(S.quantize_u8(v, s, z), R.quantize_u8_ref(v, s, z)), (s, z)


def test_activation_names_agree_with_reference():
    assert set(E.ACTIVATIONS) == set(R.ACTIVATIONS)


_KWARGS = {"hardsigmoid": [{}, {"alpha": 0.1666667, "beta": 0.5}, {"alpha": -3.0, "beta": 2.0}],
           "leakyrelu": [{}, {"alpha": 0.2}, {"alpha": -1.5}],
           "elu": [{}, {"alpha": 0.3}, {"alpha": 7.0}]}


@pytest.mark.parametrize("fn", sorted(R.ACTIVATIONS))
def test_activation_tables_agree_with_reference(fn):
    # input scales from 2^-40 (every code near 0) to 2^40 (exp overflows, sigmoid saturates)
    pairs = list(zip(_qparams(40, 8), _qparams(40, 9)))
    for kw in _KWARGS.get(fn, [{}]):
        for (xs, xz), (ys, yz) in pairs:
            assert np.array_equal(E.activation_table(fn, xs, xz, ys, yz, **kw),
                                  R.activation_table_ref(fn, xs, xz, ys, yz, **kw)), \
                (fn, kw, xs, xz, ys, yz)


def test_activation_table_of_a_callable_agrees_with_reference():
    def f(r):
        return np.where(r > 0, np.sqrt(np.abs(r)), np.nan)   # NaN lands on the zero point
    for (xs, xz), (ys, yz) in zip(_qparams(30, 10), _qparams(30, 11)):
        with np.errstate(invalid="ignore"):
            assert np.array_equal(E.activation_table(f, xs, xz, ys, yz),
                                  R.activation_table_ref(f, xs, xz, ys, yz))


def test_gelu_uses_erf_exactly():
    r = np.linspace(-10, 10, 2001)
    want = 0.5 * r * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in r]))
    assert np.array_equal(E.ACTIVATIONS["gelu"](r), want)


# ---- PyTorch → ONNX recurrent weight layout ----------------------------------------------------
@pytest.mark.parametrize("kind, gates", [("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("hidden, inp", [(1, 1), (3, 5), (16, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_rnn_weights_agree_with_reference(kind, gates, hidden, inp, bias):
    rng = np.random.default_rng(hidden * 10 + inp)
    w_ih = rng.normal(size=(gates * hidden, inp)).astype(np.float32)
    w_hh = rng.normal(size=(gates * hidden, hidden)).astype(np.float32)
    b = [rng.normal(size=gates * hidden).astype(np.float32) for _ in range(2)] if bias \
        else [None, None]
    ref = (RR.lstm_weights_from_torch if kind == "lstm" else RR.gru_weights_from_torch)(
        w_ih, w_hh, *b)
    got = tsd.rnn_weights_from_torch(tsd.onnx_gate_rows(kind, hidden), w_ih, w_hh, *b)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and np.array_equal(g, r)
