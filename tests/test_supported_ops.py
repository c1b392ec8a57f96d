"""docs/supported_ops.md is generated from the registries and stays current; an ONNX model
with ops qengine lacks is refused with every such op named (domain, node), while `qengine
inspect` still shows its graph."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qengine.errors import UnsupportedOpsError
from qengine.frontends.onnx_opsets import OP_VERSIONS
from qengine.workflows.dynamic import QUANTIZABLE
from qengine.workflows.ptq import STATIC_INT8_OPS

ROOT = Path(__file__).resolve().parent.parent


def test_supported_ops_doc_is_current():
    spec = importlib.util.spec_from_file_location("supported_ops",
                                                  ROOT / "scripts" / "supported_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.DOC.read_text(encoding="utf-8") == mod.render(), \
        "docs/supported_ops.md is stale: run python scripts/supported_ops.py"


def test_int8_ops_are_ops_the_importer_takes():
    assert set(STATIC_INT8_OPS) <= set(OP_VERSIONS)
    assert set(QUANTIZABLE) <= set(OP_VERSIONS)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("SpaceToDepth", ["a"], ["b"], blocksize=1),       # unnamed
             helper.make_node("Relu", ["b"], ["c"], name="r2"),
             helper.make_node("SpaceToDepth", ["c"], ["d"], blocksize=1, name="up2"),
             helper.make_node("FancyOp", ["d"], ["y"], name="mine", domain="com.example")]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", 1, None)], [scales])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.example", 1)])
    path = tmp_path_factory.mktemp("unsupported") / "m.onnx"
    onnx.save(m, path)
    return path


def test_every_unsupported_op_is_named(model):
    from qengine import from_onnx
    with pytest.raises(UnsupportedOpsError) as e:
        from_onnx(model)
    got = [(o["domain"], o["op"], o["node"]) for o in e.value.ops]
    assert got == [("ai.onnx", "SpaceToDepth", "SpaceToDepth_1"),
                   ("ai.onnx", "SpaceToDepth", "up2"),
                   ("com.example", "FancyOp", "mine")]
    msg = str(e.value)
    assert "SpaceToDepth [ai.onnx] x2 ('SpaceToDepth_1', 'up2')" in msg
    assert "FancyOp [com.example] x1 ('mine')" in msg and "qengine inspect" in msg


def _qe(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "qengine", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_inspect_still_shows_the_graph(model):
    p = _qe("inspect", model)
    assert p.returncode == 0, p.stderr
    assert "nodes (5)" in p.stdout and "unsupported ops (3 nodes)" in p.stdout
    assert "com.example" in p.stdout and "SpaceToDepth_1" in p.stdout
    d = json.loads(_qe("inspect", model, "--json").stdout)
    assert [n["name"] for n in d["nodes"]] == ["r", "SpaceToDepth_1", "r2", "up2", "mine"]
    assert [u["node"] for u in d["unsupported"]] == ["SpaceToDepth_1", "up2", "mine"]
    assert d["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 2, 4, 4]}]
    p = _qe("run", model, "-o", model.parent / "o.npz")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unsupported ONNX ops" in p.stderr
