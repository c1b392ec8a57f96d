"""Quantized ONNX files written by other tools: the inputs qengine's QDQ importer must accept, for
tests (tests/test_qdq_producers.py) and for comparison tables (bench scripts).

Every producer has the signature `producer(model, out, calib, **options) -> Path`:
  model  path of a float ONNX model
  out    path of the quantized file to write
  calib  {input name: array}; axis 0 indexes calibration samples, and each is fed as a batch of
         one (arr[i:i + 1]), so models exported with a static batch of 1 calibrate as they are
Producers that need no calibration (ort_dynamic) accept and ignore `calib`.

Importing this module needs none of the tools. A producer whose tool is missing, or that cannot
write its form with the installed versions, raises ProducerUnavailable(reason); tests turn that
into a skip. The reason says "could not import X" only for a missing module, which conftest.py's
strict mode (CI) counts as an undeclared test dependency; PRODUCERS records which tools the
`test` extra declares and which are optional.

What each one writes (checked by tests/test_qdq_producers.py):
  ort_qdq             ORT quantize_static, QuantFormat.QDQ; activation "uint8" (U8S8) or
                      "int8" (S8S8, ORT's own default); weights int8, symmetric
  ort_qoperator       the same calibration, QuantFormat.QOperator (QLinearConv, QLinearMatMul…)
  ort_dynamic         ORT quantize_dynamic (IntegerOps: DynamicQuantizeLinear + ConvInteger /
                      MatMulInteger); weights uint8 by default, as ORT's CPU ConvInteger wants
  nncf_qdq            nncf.quantize on the ONNX model (NNCF's ONNX backend): QDQ, u8 activations
                      (s8 after ReLU-free ops), s8 per-channel symmetric weights
  torch_qdq           PyTorch: "fx_qat" (fake-quantized FX graph → TorchScript exporter, the
                      PyTorch QAT export route), "fx_convert" (converted int8 model →
                      TorchScript exporter), "pt2e" (torchao's PT2E + dynamo exporter)
  tensorrt_style_qdq  the form NVIDIA's tools write: int8 activations, symmetric, zero point 0;
                      int8 per-channel symmetric weights; float bias
"""
from __future__ import annotations

import contextlib
import importlib
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["ProducerUnavailable", "PRODUCERS", "ort_qdq", "ort_qoperator", "ort_dynamic",
           "nncf_qdq", "torch_qdq", "tensorrt_style_qdq"]


class ProducerUnavailable(Exception):
    """The producer's tool is missing or cannot write this form here; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _require(module: str, declared: bool = True):
    """Import `module` or raise ProducerUnavailable. `declared`: the `test` extra installs it,
    so its absence must fail a strict (CI) run — hence pytest's own "could not import" words."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if declared:
            raise ProducerUnavailable(f"could not import {module!r}: {e}") from e
        raise ProducerUnavailable(f"{module} is not installed (an optional producer, not in "
                                  f"the test extra): {e}") from e


def _samples(calib):
    """One {name: batch-of-one array} per calibration sample."""
    arrays = {k: np.asarray(v) for k, v in calib.items()}
    n = {a.shape[0] for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"calibration inputs have different sample counts: {sorted(n)}")
    return [{k: a[i:i + 1] for k, a in arrays.items()} for i in range(n.pop())]


# ---- ONNX Runtime ------------------------------------------------------------------------------
def _ort_reader(calib):
    q = _require("onnxruntime.quantization")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._data = _samples(calib)
            self._it = iter(self._data)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(self._data)

    return Reader()


def _preprocessed(model, workdir):
    """ORT's recommended pre-step (symbolic shape inference + graph optimization), which runs
    offline; if it rejects the model, quantize the model as it is rather than fail."""
    q = _require("onnxruntime.quantization")
    pre = Path(workdir) / "preprocessed.onnx"
    model = Path(model).resolve()
    try:
        # its symbolic shape inference writes a temporary file into the current directory
        with contextlib.chdir(workdir):
            q.quant_pre_process(str(model), str(pre))
    except Exception:   # noqa: BLE001 — any failure of an optional pre-step: skip the step
        return model
    return pre


def _quant_type(q, name):
    types = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    if name not in types:
        raise ValueError(f"activation/weight type must be 'uint8' or 'int8', got {name!r}")
    return types[name]


def _ort_static(model, out, calib, fmt, activation, per_channel, preprocess, extra=None):
    q = _require("onnxruntime.quantization")
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocessed(model, tmp) if preprocess else Path(model)
        q.quantize_static(str(src), str(out), _ort_reader(calib), quant_format=fmt,
                          per_channel=per_channel, activation_type=_quant_type(q, activation),
                          weight_type=q.QuantType.QInt8, extra_options=extra or {})
    return Path(out)


def ort_qdq(model, out, calib, activation="uint8", per_channel=True, preprocess=True):
    """ORT quantize_static in QDQ form: U8S8 (activation='uint8') or S8S8 ('int8'; ORT's default
    when activation_type is not given). Min-max calibration."""
    q = _require("onnxruntime.quantization")
    return _ort_static(model, out, calib, q.QuantFormat.QDQ, activation, per_channel, preprocess)


def ort_qoperator(model, out, calib, activation="uint8", per_channel=True, preprocess=True):
    """ORT quantize_static in QOperator form (QLinearConv, QLinearMatMul, QLinearAdd, …)."""
    q = _require("onnxruntime.quantization")
    return _ort_static(model, out, calib, q.QuantFormat.QOperator, activation, per_channel,
                       preprocess)


def ort_dynamic(model, out, calib=None, weight="uint8", per_channel=False):
    """ORT quantize_dynamic (IntegerOps). weight='uint8' by default: ORT's CPU ConvInteger has
    no int8-weight kernel, so an int8-weight CNN file would not run in ORT itself."""
    q = _require("onnxruntime.quantization")
    q.quantize_dynamic(str(model), str(out), per_channel=per_channel,
                       weight_type=_quant_type(q, weight))
    return Path(out)


def tensorrt_style_qdq(model, out, calib, preprocess=True):
    """Symmetric int8 activations (zero point 0), int8 per-channel symmetric weights and a float
    bias — the QDQ form TensorRT's explicit quantization expects and NVIDIA's tools
    (pytorch-quantization, ModelOpt) write. Written with ORT's static quantizer."""
    q = _require("onnxruntime.quantization")
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    return _ort_static(model, out, calib, q.QuantFormat.QDQ, "int8", True, preprocess, extra)


# ---- NNCF --------------------------------------------------------------------------------------
def nncf_qdq(model, out, calib, subset_size=None, fast_bias_correction=True):
    """nncf.quantize with NNCF's ONNX backend (post-training, min-max + fast bias correction by
    default); writes a QDQ ONNX file. subset_size: calibration samples used (default: all)."""
    onnx = _require("onnx")
    nncf = _require("nncf", declared=NNCF_DECLARED)
    samples = _samples(calib)
    quantized = nncf.quantize(onnx.load(str(model)), nncf.Dataset(samples),
                              subset_size=subset_size or len(samples),
                              fast_bias_correction=fast_bias_correction)
    onnx.save(quantized, str(out))
    return Path(out)


# ---- PyTorch -----------------------------------------------------------------------------------
def torch_qdq(module, out, calib, method="fx_qat", exporter=None, opset=None):
    """A PyTorch-quantized model exported to ONNX. Unlike the others it starts from the torch
    module (an nn.Module in eval mode), since torch quantizes its own graph; calib as above,
    with one input (its key is not used).

    method "fx_qat": FX prepare_qat with fake quantizers (observers calibrated, then frozen):
      FakeQuantize becomes QuantizeLinear/DequantizeLinear around float ops, the route PyTorch
      QAT models take to ONNX.
    method "fx_convert": FX prepare/convert to a real int8 model (quantized::conv2d …).
    method "pt2e": torchao's PT2E flow (X86InductorQuantizer); needs torchao.
    exporter "torchscript" (torch.onnx.export dynamo=False; default for the FX methods) or
    "dynamo" (default for pt2e). Combinations the installed torch cannot export raise
    ProducerUnavailable with the exporter's error."""
    torch = _require("torch")
    (x,) = [torch.from_numpy(np.ascontiguousarray(v, np.float32)) for v in calib.values()]
    example = (x[:1],)
    if method == "pt2e":
        m = _torch_pt2e(torch, module, x, example)
    elif method in ("fx_qat", "fx_convert"):
        m = _torch_fx(torch, module, x, example, method)
    else:
        raise ValueError(f"method must be 'fx_qat', 'fx_convert' or 'pt2e', got {method!r}")
    exporter = exporter or ("dynamo" if method == "pt2e" else "torchscript")
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    dynamo = exporter == "dynamo"
    # 18 is the dynamo exporter's native opset (asking it for less runs a version converter)
    opset = opset or (18 if dynamo else 17)
    try:
        torch.onnx.export(m, example, str(out), input_names=["input"], output_names=["output"],
                          opset_version=opset, dynamo=dynamo)
    except Exception as e:   # noqa: BLE001 — report the exporter's own words
        raise ProducerUnavailable(f"torch {torch.__version__}: the {exporter} exporter cannot "
                                  f"export a {method} model: {_summary(e)}") from e
    return Path(out)


def _summary(e):
    """The line of an exporter error that names the cause: torch.export's errors put it under
    "## Exception summary", after a page of generic advice."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1:]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _calibrate(torch, m, x):
    with torch.no_grad():
        for i in range(x.shape[0]):
            m(x[i:i + 1])


def _torch_fx(torch, module, x, example, method):
    import copy

    from torch.ao import quantization as tq
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx
    m = copy.deepcopy(module)
    if method == "fx_convert":
        m = prepare_fx(m.eval(), tq.get_default_qconfig_mapping("x86"), example)
        _calibrate(torch, m, x)
        return convert_fx(m)
    # version 0: plain FakeQuantize modules. The default (version 1) fuses observer and fake
    # quantizer into aten::fused_moving_avg_obs_fake_quant, which no ONNX exporter knows.
    mapping = tq.QConfigMapping().set_global(tq.get_default_qat_qconfig("x86", version=0))
    m = prepare_qat_fx(m.train(), mapping, example).eval()
    # calibrate in eval mode (observers observe in either mode): in train mode the fused
    # Conv+BN modules would overwrite BN's running statistics with the calibration batches'
    m.apply(tq.disable_fake_quant)   # observe in float first, as post-training does
    _calibrate(torch, m, x)
    m.apply(tq.disable_observer)
    m.apply(tq.enable_fake_quant)
    return m


def _torch_pt2e(torch, module, x, example):
    _require("torchao", declared=False)
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config())
    m = prepare_pt2e(torch.export.export(module.eval(), example).module(), quantizer)
    _calibrate(torch, m, x)
    m = convert_pt2e(m)
    move_exported_model_to_eval(m)
    return m


#: whether pyproject.toml's `test` extra installs nncf (then its absence fails a strict run)
NNCF_DECLARED = True

#: name → (producer, whether it reads an ONNX file (True) or a torch module (False))
PRODUCERS = {"ort_qdq": (ort_qdq, True), "ort_qoperator": (ort_qoperator, True),
             "ort_dynamic": (ort_dynamic, True), "nncf_qdq": (nncf_qdq, True),
             "tensorrt_style_qdq": (tensorrt_style_qdq, True), "torch_qdq": (torch_qdq, False)}
