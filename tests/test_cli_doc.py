"""docs/cli.md is current (regenerated from the parser) and every command's --json object has
exactly the top-level keys the doc lists."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.cli import main
from qengine.engine_file import read_safetensors

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(qengine.__file__).parent / "data"
MODEL = DATA / "demo_cnn_digits.qe"


def _cli_doc():
    spec = importlib.util.spec_from_file_location("cli_doc", ROOT / "scripts" / "cli_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_cli_md_is_current():
    doc = _cli_doc()
    assert doc.DOC.read_text(encoding="utf-8") == doc.render(), \
        "docs/cli.md is stale: run python scripts/cli_doc.py"


def test_every_command_is_documented():
    doc = _cli_doc()
    commands = {name for name, _, _ in doc._subcommands(doc._parser())}
    assert commands == set(doc.JSON_KEYS) | set(doc.NO_JSON), \
        "every command has --json (its keys documented), or says in NO_JSON why not"
    assert not set(doc.JSON_KEYS) & set(doc.NO_JSON)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_doc")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    x = calib[:64, None].astype(np.float32) / 16
    np.savez(d / "calib.npz", image=x)
    np.save(d / "x.npy", x[:2])
    return d


def _json(capsys, *argv):
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_json_keys_match_the_doc(files, capsys):
    doc = _cli_doc()
    q = files / "q.qe"
    x = f"image={files / 'x.npy'}"
    runs = {
        "info": ["info"],
        "quantize": ["quantize", MODEL, "-o", q, "--mode", "static", "--calib",
                     files / "calib.npz", "--force"],
        "analyze": ["analyze", MODEL, "--calib", files / "calib.npz"],
        "run": ["run", MODEL, "--input", x, "-o", files / "o.npz", "--force"],
        "bench": ["bench", MODEL, "--input", x, "--runs", 2, "--warmup", 0, "--profile"],
        "inspect": ["inspect", MODEL],
        "demo": ["demo", "--runs", 1],
    }
    for name, argv in runs.items():
        got = set(_json(capsys, *argv, "--json"))
        assert got == set(doc.JSON_KEYS[name]), (name, got ^ set(doc.JSON_KEYS[name]))
