# Present so that pytest puts the repository root on sys.path: tests import the in-place build.
#
# Strict skips. A test that needs an optional package skips when it is missing
# (pytest.importorskip), which is right on a developer's machine and wrong in CI: there a missing
# package means an undeclared dependency, and a green run would hide it. With CI set (as .ci/run
# and most CI services do) or QENGINE_TEST_STRICT=1, every "could not import" skip fails the
# session, naming the modules; QENGINE_TEST_STRICT=0 turns this off (e.g. the runtime-only smoke
# run on the oldest Python, which installs no oracles on purpose).
import os

import pytest

_TRUE = ("1", "true", "yes")


def _strict():
    flag = os.environ.get("QENGINE_TEST_STRICT")
    if flag is not None:
        return flag.strip().lower() in _TRUE
    return os.environ.get("CI", "").strip().lower() in _TRUE


_MISSING = {}  # skip reason -> one test id that skipped for it


def _record(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if "could not import" in reason:
            _MISSING.setdefault(reason, report.nodeid)


def pytest_collectreport(report):
    _record(report)


def pytest_runtest_logreport(report):
    _record(report)


def pytest_sessionfinish(session, exitstatus):
    if _MISSING and _strict():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _MISSING and _strict():
        terminalreporter.section("undeclared test dependencies (strict skips: CI is set)")
        for reason, nodeid in sorted(_MISSING.items()):
            terminalreporter.write_line(f"{reason}  (first: {nodeid})")
        terminalreporter.write_line("declare them in pyproject.toml's `test` extra, or set "
                                    "QENGINE_TEST_STRICT=0 for a deliberately partial install")
