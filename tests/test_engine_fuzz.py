"""Engine-file fuzzing: a slice of the structure-aware fuzzer (tests/engine_fuzz.py; the full
10 000+ case run is scripts/fuzz_engine.py)."""
import numpy as np
import pytest

import qengine

import engine_fuzz

SEED = 20240607
SLICE = 1000         # cases in the default suite (~12 s); the CLI runs in-process on every 3rd


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return engine_fuzz.build_corpus(tmp_path_factory.mktemp("fuzz_corpus"))


def test_corpus_loads_and_runs(corpus):
    for base in corpus:
        feeds = {k: np.load(v) for k, v in base.inputs.items()}
        path = base.inputs[next(iter(base.inputs))].with_name(f"{base.name}.qe")
        out = qengine.load(path).run(feeds)
        assert all(np.isfinite(v).all() for v in out.values() if v.dtype.kind == "f"), base.name


def test_cases_are_reproducible(corpus):
    for i in (0, 7, 123):
        a, b = engine_fuzz.make_case(corpus, SEED, i), engine_fuzz.make_case(corpus, SEED, i)
        assert a[1] == b[1] and a[2] == b[2]


def test_fuzz_slice(corpus, tmp_path):
    """Every mutant loads and runs, or raises a QEngineError; the CLI answers exit code 0 or
    one error line with exit code 2; no crash, no hang."""
    report = engine_fuzz.run_fuzz(corpus, SEED, range(SLICE), tmp_path, timeout=60,
                                  cli_every=3, cli_subprocess_every=SLICE // 2)
    assert report.ok(), "\n".join(report.lines())
    # the slice reaches every stage: rejected at load, built and run, failing at run time
    assert report.outcomes["rejected"] > SLICE // 2, report.lines()
    assert report.outcomes["ran"] > SLICE // 20, report.lines()
    assert report.cli["ok"] and report.cli["error"] and report.cli_subprocess["error"] + \
        report.cli_subprocess["ok"] == 4, report.lines()
