"""The compiled float32 elementwise chains (include/qengine/chain/, qengine/ops/chain.py):
every step against NumPy (bit for bit for the IEEE steps, NaN and ±0 included), the
transcendental steps against float64 within their stated ulp bounds, every ISA bit-identical to
the scalar kernel, in place, threaded, and programs that are refused."""
import math

import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine._ext import _chain
from qengine.errors import ModelError
from qengine.graph.ir import Graph, Node, ValueInfo
from qengine.ops.chain import chain_ref, check_program

ISAS = [i for i in ("scalar", "avx2", "avx512vnni") if i in _runtime.available_isas()]
SPECIAL = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1e-38, 3.0,
                    -3.0, 6.0, 88.72, 89.0, -104.0, 1e30, -1e30], np.float32)


def _inputs(n=4099, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-8, 5, n))).astype(np.float32)
    return np.concatenate([SPECIAL, x])


def _run(steps, x, isa="scalar"):
    y = np.empty_like(x)
    _chain.Program(steps).run(_runtime.isa_index(isa), np.ascontiguousarray(x), y)
    return y


def _same_bits(a, b):
    """Equal including the sign of zero; any NaN matches any NaN."""
    a, b = np.asarray(a), np.asarray(b)
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a.view(np.int32)[~nan], b.view(np.int32)[~nan])


# ---------------------------------------------------------------- IEEE steps: exact vs NumPy
NUMPY = {
    "add": lambda x, c: x + c, "sub": lambda x, c: x - c, "rsub": lambda x, c: c - x,
    "mul": lambda x, c: x * c, "div": lambda x, c: x / c, "rdiv": lambda x, c: c / x,
    "max": lambda x, c: np.maximum(x, c), "rmax": lambda x, c: np.maximum(c, x),
    "min": lambda x, c: np.minimum(x, c), "rmin": lambda x, c: np.minimum(c, x),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("c", [0.0, -0.0, 3.0, -0.1666666716337204, 1e-40])
def test_binary_constant_steps_equal_numpy(isa, name, c):
    x = _inputs()
    with np.errstate(all="ignore"):
        want = NUMPY[name](x, np.float32(c))
    _same_bits(_run([(name, -1, c)], x, isa), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", sorted(NUMPY))
def test_binary_register_steps_equal_numpy(isa, name):
    """acc = f(acc, register): the chain (x + 1.5) op x (register 0 is the input)."""
    x = _inputs(seed=1)
    with np.errstate(all="ignore"):
        want = NUMPY[name](x + np.float32(1.5), x)
    _same_bits(_run([("add", -1, 1.5), (name, 0, 0.0)], x, isa), want)


@pytest.mark.parametrize("isa", ISAS)
def test_unary_ieee_steps_equal_numpy(isa):
    x = _inputs(seed=2)
    with np.errstate(all="ignore"):
        cases = {
            # np.clip's rule spelled out: a value is replaced only when strictly beyond the
            # bound, so -0 stays -0 at a 0 bound and NaN passes (NumPy >= 2.1's np.clip; 2.0's
            # gives +0 for -0, so np.clip itself is no version-independent oracle)
            ("cliplo", 0.0): np.where(x < np.float32(0), np.float32(0), x),
            ("cliphi", 6.0): np.where(x > np.float32(6), np.float32(6), x),
            ("leaky", 0.01): np.where(x >= 0, x, x * np.float32(0.01)),
            # x·x, correctly rounded (NumPy >= 2.1's power(x, 2); 2.0's is off by 1 ulp)
            ("square", 0.0): x * x,
            ("neg", 0.0): np.negative(x),
            ("sqrt", 0.0): np.sqrt(x),
        }
    for (name, c), want in cases.items():
        _same_bits(_run([(name, -1, c)], x, isa), want)
    got = _run([("abs", -1, 0.0)], x, isa)          # |NaN| may keep its sign bit: values only
    np.testing.assert_array_equal(got, np.abs(x))
    assert not np.signbit(got[1])


def test_clip_matches_numpy_clip_and_graph_clip_matches_maximum_minimum():
    """np.clip keeps -0 at a 0 bound (cliplo); ONNX Clip runs np.maximum (max), which gives +0."""
    x = np.array([-0.0, 0.0, np.nan, -1.0], np.float32)
    assert np.signbit(_run([("cliplo", -1, 0.0)], x)[0])
    assert not np.signbit(_run([("max", -1, 0.0)], x)[0])
    g = Graph([ValueInfo("x", "float32", (4,))], [ValueInfo("y", "float32", (4,))],
              [Node("Clip", "c", ("x", "lo", "hi"), ("y",))],
              {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)})
    y = qengine.Session(g, nan="allow").run({"x": x})["y"]
    _same_bits(y, np.minimum(np.maximum(x, np.float32(0)), np.float32(6)))


# ---------------------------------------------------------------- transcendental accuracy
def _ulp_error(got, ref):
    ref32 = ref.astype(np.float32)
    ulp = np.spacing(np.abs(ref32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / ulp


_F64 = {"exp": np.exp, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
        "erf": np.vectorize(math.erf, otypes=[np.float64])}
# stated in include/qengine/chain/qe_f32_math.h (normal results)
_ULP = {"exp": 1.0, "sigmoid": 2.5, "tanh": 1.5, "erf": 1.2}


@pytest.mark.parametrize("name", sorted(_F64))
def test_transcendental_steps_within_stated_ulp(name):
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-20, 20, 40001), rng.uniform(-1e-6, 1e-6, 2000),
                        rng.uniform(-88, 88, 20000)]).astype(np.float32)
    got = _run([(name, -1, 0.0)], x, "scalar")
    ref = _F64[name](x.astype(np.float64))
    normal = np.abs(ref) >= np.finfo(np.float32).tiny
    normal &= np.abs(ref) <= np.finfo(np.float32).max
    err = _ulp_error(got[normal], ref[normal])
    assert err.max() <= _ULP[name], (name, err.max(), x[normal][err.argmax()])


def test_transcendental_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -200.0], np.float32)
    with np.errstate(all="ignore"):
        for name, want in {"exp": np.exp(x), "tanh": np.tanh(x),
                           "erf": chain_ref(x.astype(np.float64), [("erf", -1, 0.0)]),
                           "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64)))}.items():
            got = _run([(name, -1, 0.0)], x)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got[2:], np.asarray(want, np.float32)[2:], rtol=0,
                                       atol=1e-44)
            if name != "exp" and name != "sigmoid":
                assert np.signbit(got[4])               # odd functions keep -0


# ---------------------------------------------------------------- ISAs, threads, in place
PROGRAMS = {
    "hardswish": [("add", -1, 3.0), ("max", -1, 0.0), ("min", -1, 6.0), ("mul", 0, 0.0),
                  ("div", -1, 6.0)],
    "gelu": [("div", -1, 1.4142135381698608), ("erf", -1, 0.0), ("add", -1, 1.0),
             ("mul", 0, 0.0), ("mul", -1, 0.5)],
    "silu_affine": [("sigmoid", -1, 0.0), ("mul", 0, 0.0), ("mul", -1, 0.7), ("add", -1, 0.2)],
    "registers": [("tanh", -1, 0.0), ("store", 1, 0.0), ("exp", -1, 0.0), ("store", 2, 0.0),
                  ("load", 0, 0.0), ("square", -1, 0.0), ("sub", 1, 0.0), ("rdiv", 2, 0.0),
                  ("leaky", -1, 0.1), ("rmin", 0, 0.0)],
}


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
def test_every_isa_equals_scalar_and_numpy_reference(prog):
    x = _inputs(1000 + 257, seed=4)     # not a multiple of the block or of any vector width
    want = _run(PROGRAMS[prog], x, "scalar")
    for isa in ISAS[1:]:
        _same_bits(_run(PROGRAMS[prog], x, isa), want)
    ref = chain_ref(x.astype(np.float64), PROGRAMS[prog])
    ok = np.isfinite(ref) & (np.abs(ref) < 1e30)
    np.testing.assert_allclose(want[ok], ref[ok], rtol=1e-5, atol=1e-6)   # float32 rounding


def test_in_place_and_threads_do_not_change_results():
    x = np.random.default_rng(5).standard_normal(300_001).astype(np.float32)
    p = _chain.Program(PROGRAMS["gelu"])
    isa = _runtime.isa_index(None)
    y1 = np.empty_like(x)
    old = qengine.get_num_threads()
    try:
        qengine.set_num_threads(1)
        p.run(isa, x, y1)
        qengine.set_num_threads(2)
        y2 = p.run(isa, x, np.empty_like(x))
        x2 = x.copy()
        p.run(isa, x2, x2)                    # in place, and register 0 (x) is read late
    finally:
        qengine.set_num_threads(old)
    _same_bits(y1, y2)
    _same_bits(y1, x2)


@pytest.mark.parametrize("steps, what", [
    ([("nope", -1, 0.0)], "unknown chain step"),
    ([("add", 1, 0.0)], "registers"),             # read before stored
    ([("store", 0, 0.0)], "registers"),           # the input register is read-only
    ([("add", 7, 0.0)], "registers"),
    ([("load", -1, 0.0)], "registers"),
    ([("add", -1, 0.0)] * 65, "at most"),
])
def test_bad_programs_are_refused(steps, what):
    with pytest.raises(ValueError, match=what):
        _chain.Program(steps)
    with pytest.raises(ModelError):
        check_program(steps, "node 'n'")


def test_non_finite_constants_are_refused():
    with pytest.raises(ModelError, match="non-finite"):
        check_program([("add", -1, float("inf"))], "node 'n'")


def test_standalone_ops_run_compiled_and_match_numpy():
    """Relu/Clip/LeakyRelu/HardSigmoid/HardSwish/Neg/Abs/Sqrt keep their NumPy results bit
    for bit on the compiled path; float64 Sessions still run NumPy."""
    x = _inputs(seed=6)
    with np.errstate(all="ignore"):
        want = {"Relu": np.maximum(x, np.float32(0)), "Neg": -x, "Sqrt": np.sqrt(x),
                "LeakyRelu": np.where(x >= 0, x, x * np.float32(0.01)),
                "HardSigmoid": np.clip(x * np.float32(0.2) + np.float32(0.5), 0, 1),
                "HardSwish": x * np.clip(x * np.float32(1 / 6) + np.float32(0.5), 0, 1)}
    for op, w in want.items():
        g = Graph([ValueInfo("x", "float32", x.shape)], [ValueInfo("y", "float32", x.shape)],
                  [Node(op, "n", ("x",), ("y",))])
        with np.errstate(all="ignore"):
            _same_bits(qengine.Session(g, nan="allow").run({"x": x})["y"], w)
            y64 = qengine.Session(g, nan="allow", float_dtype=np.float64).run({"x": x})["y"]
        assert y64.dtype == np.float64
