"""README.md's ```python blocks run as written, in order, in a fresh directory (they export a
model with torch, so this needs torch and onnx); then every shell command it shows (`$ ...` in
an indented block) runs there too, through a real subprocess. A README that drifts from the code
fails here."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import warnings

    import qengine
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    threads = qengine.get_num_threads()
    namespace = {"__name__": "readme"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # torch.onnx.export's deprecation chatter
            for i, code in enumerate(blocks):
                exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    finally:
        qengine.set_num_threads(threads)
    assert (tmp_path / "tagger.qe").is_file()


def _shell_examples(text):
    """(command, shown output lines) for every `$ command` of an indented block."""
    examples, current = [], None
    for line in text.splitlines():
        m = re.match(r"^ {4,}\$ (.+)$", line)
        if m:
            current = (m.group(1), [])
            examples.append(current)
        elif current is not None and line.startswith("    ") and line.strip():
            current[1].append(line.strip())
        else:
            current = None
    return examples


def _argv(command):
    argv = shlex.split(command)
    head = {"qengine": [sys.executable, "-m", "qengine"], "python": [sys.executable]}
    assert argv[0] in head, f"README shell example runs {argv[0]!r}: teach this test about it"
    return head[argv[0]] + argv[1:]


def test_readme_shell_examples(tmp_path, monkeypatch):
    test_readme_python_blocks(tmp_path, monkeypatch)       # makes tagger.qe, digits_fp32.qe, ...
    pytest.importorskip("matplotlib")                      # `analyze --plots`
    examples = _shell_examples(README.read_text(encoding="utf-8"))
    assert len(examples) >= 8
    env = dict(os.environ, PYTHONPATH=str(README.parent))
    for command, shown in examples:
        p = subprocess.run(_argv(command), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, f"README: `{command}` failed:\n{p.stderr}"
        # Lines without digits (table headers, value names) are stable: they must match.
        got = {" ".join(line.split()) for line in p.stdout.splitlines()}
        for line in shown:
            if line != "..." and not re.search(r"\d", line):
                assert " ".join(line.split()) in got, f"README: `{command}` no longer prints {line!r}"
