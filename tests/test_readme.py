"""README.md's ```python blocks run as written, in order, in a fresh directory (they export a
model with torch, so this needs torch and onnx). A README that drifts from the code fails here."""
import re
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
