"""qat.prepare: trace a torch model with torch.fx and rebuild it as engine steps.

The prepared model is a program: a list of steps (qengine/qat/steps.py), each one engine
operator — a Conv with its BatchNorm and Relu, an Add with its Relu, a Concat... — grouped as
the engine's lowering groups them, so that what trains is what will run.

What cannot be traced: torch.fx's symbolic tracing sees Python control flow only once, so a
model whose forward branches or loops on tensor values (or on shapes) fails with a
torch.fx TraceError, which `prepare` passes on with the node it stopped at; and ops outside
the list below are refused by name (they have no engine step yet).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import ConfigError
from . import rnn as R
from . import steps as S

_ACTS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardtanh: "hardtanh", nn.Hardswish: "hardswish",
         nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "hardsigmoid",
         nn.LeakyReLU: "leakyrelu"}
_ACT_FNS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardtanh: "hardtanh",
            F.hardswish: "hardswish", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
            torch.tanh: "tanh", F.tanh: "tanh", F.hardsigmoid: "hardsigmoid",
            F.leaky_relu: "leakyrelu"}
_ACT_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_SUPPORTED = ("LSTM", "GRU", "Conv1d", "Conv2d (+ BatchNorm + ReLU/ReLU6/Hardtanh)", "Linear",
              "ReLU", "ReLU6",
              "Hardtanh", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "LeakyReLU",
              "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d(1)", "mean over (2, 3)",
              "Flatten / flatten(x, 1) / view(x.size(0), -1)", "+ / torch.add", "torch.cat",
              "Dropout", "Identity")


@dataclass(frozen=True)
class QATConfig:
    """Options of quantization-aware training.

    weight_bits: 8 or 4 — weights symmetric, narrow range ([−127, 127] / [−7, 7]).
    group_size: with 4-bit weights, one scale per group of 32 / 64 / 128 weights along K in
        the dynamic layers (LSTM, GRU, dynamic Linear); static Conv / Linear stay per channel.
    per_channel: one weight scale per output channel (default) or per tensor.
    symmetric_activations: activations on a symmetric uint8 grid (zero point 128).
    learn_scales: LSQ (weights and activations; LSQ+ zero points for asymmetric activations),
        initialized from the min/max qparams on the first training step.
    fold_bn: True: BatchNorm stays trainable with batch statistics, folded into the conv as
        deployment folds it (Krishnamoorthi 2018 §2.5); False: folded once at prepare with its
        running statistics, which then stay fixed.
    freeze_observers_after / freeze_bn_after: training steps (forward calls in train mode)
        after which the activation ranges / the BatchNorm statistics stop moving (None: never).
    averaging: the moving-average constant of the activation ranges.
    keep_float: names of steps left in float (module names, e.g. "features.0", or the fx node
        names of functional ops, e.g. "add_1"; `model.step_names()` lists them).
    mode: "static" — Conv / Linear / Add / Concat / pools / activations on the int8 grid with
        trained activation ranges (LSTM / GRU run dynamic: the static recurrent kernels are
        not there yet); "dynamic" — Linear, LSTM and GRU with int8 (or int4) weights and
        activations quantized per call, as quantize_dynamic runs them; the rest stays float.
    """
    weight_bits: int = 8
    group_size: int | None = None
    per_channel: bool = True
    symmetric_activations: bool = False
    learn_scales: bool = False
    fold_bn: bool = True
    freeze_observers_after: int | None = None
    freeze_bn_after: int | None = None
    averaging: float = 0.01
    keep_float: frozenset = field(default_factory=frozenset)
    mode: str = "static"

    def __post_init__(self):
        if self.mode not in ("static", "dynamic"):
            raise ConfigError(f"mode must be 'static' or 'dynamic', got {self.mode!r}")
        if self.weight_bits not in (4, 8):
            raise ConfigError(f"weight_bits must be 8 or 4, got {self.weight_bits!r}")
        if self.group_size is not None and (self.group_size not in (32, 64, 128) or
                                            self.weight_bits != 4):
            raise ConfigError(f"group_size must be None, or 32, 64 or 128 with weight_bits=4; "
                              f"got {self.group_size!r} with weight_bits={self.weight_bits}")
        for name in ("per_channel", "symmetric_activations", "learn_scales", "fold_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("freeze_observers_after", "freeze_bn_after"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"{name} must be None or an int >= 0, got {v!r}")
        if not 0.0 < float(self.averaging) <= 1.0:
            raise ConfigError(f"averaging must be in (0, 1], got {self.averaging!r}")
        kf = self.keep_float
        if isinstance(kf, str) or not all(isinstance(v, str) for v in kf):
            raise ConfigError(f"keep_float must be a collection of step names, got {kf!r}")
        object.__setattr__(self, "keep_float", frozenset(kf))

    def act_options(self):
        return dict(symmetric=self.symmetric_activations, averaging=float(self.averaging),
                    learn=self.learn_scales)

    def weight_options(self, dynamic=False):
        return dict(bits=self.weight_bits, per_channel=self.per_channel or dynamic,
                    learn=self.learn_scales, group_size=self.group_size if dynamic else None)


class QATModel(nn.Module):
    """A prepared model: run it, train it, then `qat.convert` it. Steps run in the traced
    order; `steps_seen` counts training-mode forward calls (for the freeze options)."""

    def __init__(self, config: QATConfig, inputs, outputs, program, shapes, single_output,
                 arg_names=None):
        super().__init__()
        self.config = config
        self.input_names, self.output_names = list(inputs), list(outputs)
        self.arg_names = list(arg_names or inputs)
        self.steps = nn.ModuleDict()
        self.program = []              # (key, input value names, output value name)
        for key, step, ins, out in program:
            self.steps[key] = step
            self.program.append((key, list(ins), out))
        self.shapes = dict(shapes)
        self.single_output = single_output
        self.qsrc = {}                 # value -> key of the step whose output quantizer it has
        for key, ins, out in self.program:
            step = self.steps[key]
            if not isinstance(out, str):
                continue
            if step.out is not None:
                self.qsrc[out] = key
            elif step.quantized and ins and ins[0] in self.qsrc:
                self.qsrc[out] = self.qsrc[ins[0]]
        self.register_buffer("steps_seen", torch.tensor(0, dtype=torch.long))

    def step_names(self):
        return [self.steps[k].name for k, _, _ in self.program]

    def quantizer_of(self, v):
        key = self.qsrc.get(v)
        return None if key is None else self.steps[key].out

    def forward(self, *args):
        given = dict(zip(self.arg_names, args))
        missing = [v for v in self.input_names if v not in given]
        if missing or len(args) > len(self.arg_names):
            raise TypeError(f"expected the inputs ({', '.join(self.arg_names)}) of which "
                            f"{', '.join(self.input_names)} are used; got {len(args)}")
        if self.training:
            self.steps_seen += 1
            self._apply_freezes()
        env = {v: given[v] for v in self.input_names}
        for key, ins, out in self.program:
            res = self.steps[key](*(env[v] for v in ins),
                                  qin=[self.quantizer_of(v) for v in ins])
            if isinstance(out, str):
                env[out] = res
            else:
                env.update(zip(out, res))
        outs = [env[v] for v in self.output_names]
        return outs[0] if self.single_output else tuple(outs)

    def _apply_freezes(self):
        n, c = int(self.steps_seen), self.config
        if c.freeze_observers_after is not None and n > c.freeze_observers_after:
            freeze_observers(self)
        if c.freeze_bn_after is not None and n > c.freeze_bn_after:
            freeze_bn(self)


def freeze_observers(model: QATModel):
    """Stop moving the activation ranges (learned scales keep learning)."""
    for m in model.modules():
        if isinstance(m, S.ActQuant):
            m.observing.fill_(False)


def freeze_bn(model: QATModel):
    """BatchNorm from now on uses (and keeps) its running statistics: training then sees the
    exact deployed folding."""
    for m in model.modules():
        if isinstance(m, S.Weighted) and m.bn is not None:
            m.bn_frozen.fill_(True)


# ------------------------------------------------------------------------------- tracing
def _activation(node, modules):
    """(kind, params) when fx node is an activation, else None. kind: relu, clip (bounds),
    or a LUT function name."""
    if node.op == "call_module":
        m = modules[node.target]
        kind = _ACTS.get(type(m))
        if kind is None:
            return None
        if kind == "relu6":
            return ("clip", 0.0, 6.0)
        if kind == "hardtanh":
            return ("clip", float(m.min_val), float(m.max_val))
        if kind == "leakyrelu":
            return ("leakyrelu", float(m.negative_slope))
        return (kind,)
    if node.op == "call_function" and node.target in _ACT_FNS:
        kind = _ACT_FNS[node.target]
        if kind == "relu6":
            return ("clip", 0.0, 6.0)
        if kind == "hardtanh":
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            return ("clip", float(lo), float(hi))
        if kind == "leakyrelu":
            a = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
            return ("leakyrelu", float(a))
        return (kind,)
    if node.op == "call_method" and node.target in _ACT_METHODS:
        return (_ACT_METHODS[node.target],)
    return None


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return None if meta is None or not hasattr(meta, "shape") else tuple(meta.shape)


def _describe(node):
    if node.op == "call_module":
        return f"module {node.target!r}"
    t = node.target
    return f"{node.op} {getattr(t, '__name__', t)!s} (node {node.name!r})"


class _Tracer:
    def __init__(self, gm, config: QATConfig):
        self.gm, self.config = gm, config
        self.modules = dict(gm.named_modules())
        self.alias = {}              # fx node -> value name that holds it
        self.program = []
        self.quantized = set()       # values on an int8 grid
        self.input_quant = {}        # float value -> its quantized value
        self.shapes = {}
        self.absorbed = set()
        self.names_seen = set()
        self.tuples = {}             # fx node of a multi-output step -> nested value names
        self.arg_names = []          # every forward argument, used or not

    def value(self, node):
        if not isinstance(node, torch.fx.Node):
            raise ConfigError(f"expected a tensor, got the constant {node!r}")
        return self.alias[node]

    def sole_user_activation(self, node):
        users = list(node.users)
        if len(users) != 1 or users[0].op == "output":
            return None
        act = _activation(users[0], self.modules)
        if act is None or act[0] not in ("relu", "clip"):
            return None
        return users[0], act

    def quantized_inputs(self, vals):
        out = []
        for v in vals:
            if v not in self.quantized:
                if v not in self.input_quant:
                    q = f"{v}_quantized"
                    step = S.InputQuant(f"{v}.quantize", True, self.config.act_options())
                    self.add(step, [v], q, key_hint=f"{v}_quantize")
                    self.shapes[q] = self.shapes[v]
                    self.input_quant[v] = q
                v = self.input_quant[v]
            out.append(v)
        return out

    def add(self, step, ins, out, key_hint=None):
        key = (key_hint or step.name).replace(".", "_")
        while key in {k for k, *_ in self.program}:
            key += "_"
        self.program.append((key, step, ins, out))
        if step.quantized and isinstance(out, str):
            self.quantized.add(out)

    def finish(self, node, last, step, ins):
        """Register step (covering fx nodes node..last) writing value `last.name`."""
        out = last.name
        self.shapes[out] = _shape(last)
        if step.quantized and step.produces_qparams:
            ins = self.quantized_inputs(ins)
        self.add(step, ins, out)
        self.alias[node] = out
        self.alias[last] = out

    def run(self):
        cfg = self.config
        inputs, outputs, single = [], [], True
        for node in self.gm.graph.nodes:
            if node in self.absorbed:
                continue
            if node.op == "placeholder":
                self.alias[node] = node.name
                self.shapes[node.name] = _shape(node)
                self.arg_names.append(node.name)
                if node.users:            # an unused argument (a default None) is no input
                    inputs.append(node.name)
            elif node.op == "output":
                res = node.args[0]
                single = isinstance(res, torch.fx.Node)
                outs = [res] if single else list(res)
                outputs = [self.value(o) for o in outs]
            elif node.op == "get_attr":
                raise ConfigError(f"prepare: the model reads the parameter {node.target!r} "
                                  f"directly in forward; only parameters of the supported "
                                  f"modules ({', '.join(_SUPPORTED)}) can be quantized")
            else:
                self.visit(node)
        for node, v in self.alias.items():
            if isinstance(v, str) and v not in self.shapes:
                self.shapes[v] = _shape(node)
        unused = cfg.keep_float - self.names_seen
        if unused:
            raise ConfigError(f"keep_float names steps that are not in the model: "
                              f"{sorted(unused)}; the steps are: {sorted(self.names_seen)}")
        return inputs, outputs, single

    def keep(self, name):
        """True unless `name` is kept float."""
        self.names_seen.add(name)
        return name not in self.config.keep_float

    def static(self, name):
        """True when step `name` runs on the static int8 grid."""
        return self.keep(name) and self.config.mode == "static"

    def visit(self, node):
        cfg, mods = self.config, self.modules
        m = mods.get(node.target) if node.op == "call_module" else None
        name = node.target if m is not None else node.name
        act = _activation(node, mods)
        if isinstance(m, _PASS_MODULES) or (node.op == "call_function" and
                                            node.target in (F.dropout, F.dropout2d)):
            self.alias[node] = self.value(node.args[0])
            return
        if node.op == "call_function" and node.target is operator.getitem and \
                node.args[0] in self.tuples:
            v = self.tuples[node.args[0]][node.args[1]]
            if isinstance(v, tuple):
                self.tuples[node] = v
            else:
                self.alias[node] = v
            return
        if isinstance(m, (nn.LSTM, nn.GRU)):
            self.rnn(node, m, name)
            return
        if isinstance(m, nn.Linear) and self.keep(name) and \
                (cfg.mode == "dynamic" or len(_shape(node.args[0]) or ()) != 2):
            # the static int8 Gemm takes [batch, features]; a Linear over a sequence (after an
            # LSTM) runs as the dynamic layer, whose activations are quantized per call
            step = R.DynamicLinear(name, m, cfg.weight_options(dynamic=True))
            self.finish(node, node, step, [self.value(node.args[0])])
            return
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if cfg.mode == "dynamic" and not isinstance(m, nn.Linear) and self.keep(name):
                raise ConfigError(f"prepare: {_describe(node)}: mode='dynamic' quantizes "
                                  f"Linear, LSTM and GRU; use mode='static' for convolutions "
                                  f"(or keep_float={{{name!r}}})")
            self.weighted(node, m, name)
            return
        if act is not None:
            q = self.static(name) and (act[0] not in ("relu", "clip") or
                                     self.value(node.args[0]) in self.quantized)
            fn = act[0]
            attrs = {"alpha": act[1]} if fn == "leakyrelu" else \
                {"alpha": act[1], "beta": act[2]} if fn == "clip" else \
                dict(S.LUTS[fn][1])
            step = S.Lut(name, fn, attrs, q, cfg.act_options())
            self.finish(node, node, step, [self.value(node.args[0])])
            return
        if (node.op == "call_function" and node.target in (operator.add, torch.add)) or \
                (node.op == "call_method" and node.target == "add"):
            a, b = node.args[:2]
            if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)) or \
                    node.kwargs.get("alpha", 1) != 1:
                raise ConfigError(f"prepare: {_describe(node)} adds a constant; only the sum "
                                  f"of two tensors has an int8 step")
            last, clamp = node, None
            hit = self.sole_user_activation(node)
            q = self.keep(name)
            if hit is not None:
                last, clamp = hit
                self.absorbed.add(last)
            step = S.Add(name, clamp, q and cfg.mode == "static", cfg.act_options())
            self.finish(node, last, step, [self.value(a), self.value(b)])
            return
        if node.op == "call_function" and node.target in (torch.cat, torch.concat):
            xs = node.args[0]
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            rank = len(_shape(node))
            step = S.Cat(name, int(dim) % rank, self.static(name), cfg.act_options())
            self.finish(node, node, step, [self.value(x) for x in xs])
            return
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise ConfigError(f"prepare: {_describe(node)} returns indices")
            x = self.value(node.args[0])
            step = S.MaxPool(name, m, self.static(name) and x in self.quantized,
                             cfg.act_options())
            self.finish(node, node, step, [x])
            return
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override:
                raise ConfigError(f"prepare: {_describe(node)} sets divisor_override")
            step = S.AvgPool(name, m, self.static(name), cfg.act_options())
            self.finish(node, node, step, [self.value(node.args[0])])
            return
        if self.is_global_pool(node, m):
            keepdim = m is not None or node.target != "mean" or \
                bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
            step = S.AvgPool(name, None, self.static(name), cfg.act_options(), keepdim=keepdim)
            self.finish(node, node, step, [self.value(node.args[0])])
            return
        if self.is_flatten(node, m):
            x = self.value(node.args[0])
            step = S.Flatten(name, self.static(name) and x in self.quantized, cfg.act_options())
            self.finish(node, node, step, [x])
            return
        if node.op == "call_method" and node.target == "size" or \
                (node.op == "call_function" and node.target is operator.getitem and
                 isinstance(node.args[0], torch.fx.Node) and node.args[0].op == "call_method"
                 and node.args[0].target == "size"):
            return                   # shape arithmetic for a view/reshape: checked there
        raise ConfigError(f"prepare: {_describe(node)} has no int8 engine step; supported: "
                          f"{', '.join(_SUPPORTED)}")

    def rnn(self, node, m, name):
        if not self.keep(name):
            raise ConfigError(f"prepare: keep_float of {_describe(node)}: float LSTM/GRU "
                              f"steps are not supported yet")
        try:
            step = R.RNN(name, m, self.config.weight_options(dynamic=True))
        except ValueError as e:
            raise ConfigError(f"prepare: {_describe(node)}: {e}") from None
        state = node.args[1] if len(node.args) > 1 else node.kwargs.get("hx")
        ins = [self.value(node.args[0])]
        if state is not None:         # (h0, c0) for an LSTM, h0 for a GRU: [layers·D, B, H]
            parts = list(state) if isinstance(state, (tuple, list)) else [state]
            if len(parts) != (2 if step.kind == "lstm" else 1):
                raise ConfigError(f"prepare: {_describe(node)}: the initial state must be "
                                  f"{'(h0, c0)' if step.kind == 'lstm' else 'h0'}")
            ins += [self.value(v) for v in parts]
        y = node.name
        outs = [y, f"{y}_h"] + ([f"{y}_c"] if step.kind == "lstm" else [])
        self.tuples[node] = (y, (outs[1], outs[2])) if step.kind == "lstm" else (y, outs[1])
        self.add(step, ins, outs)

    def is_global_pool(self, node, m):
        if isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size
            return size in (1, (1, 1), [1, 1])
        if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
            return node.args[1] in (1, (1, 1), [1, 1])
        if node.op == "call_method" and node.target == "mean" and len(_shape(node.args[0])) == 4:
            dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            return dims is not None and sorted(int(d) % 4 for d in dims) == [2, 3]
        return False

    def is_flatten(self, node, m):
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node):
            return False
        shp_in, shp_out = _shape(src), _shape(node)
        if shp_in is None or shp_out is None or len(shp_in) < 2:
            return False
        flat = len(shp_out) == 2 and shp_out[0] == shp_in[0]
        if isinstance(m, nn.Flatten):
            return m.start_dim == 1 and m.end_dim == -1
        if node.op == "call_function" and node.target is torch.flatten:
            return flat
        if node.op == "call_method" and node.target in ("flatten", "view", "reshape"):
            return flat
        return False

    def weighted(self, node, m, name):
        cfg = self.config
        last, bn, clamp = node, None, None
        users = list(node.users)
        if not isinstance(m, nn.Linear) and len(users) == 1 and users[0].op == "call_module" \
                and isinstance(self.modules[users[0].target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            last = users[0]
            bn = self.modules[last.target]
            self.absorbed.add(last)
        hit = self.sole_user_activation(last)
        if hit is not None:
            last, clamp = hit
            self.absorbed.add(last)
        if getattr(m, "padding_mode", "zeros") != "zeros" or isinstance(getattr(m, "padding", 0),
                                                                        str):
            raise ConfigError(f"prepare: {_describe(node)}: only explicit zero padding "
                              f"(padding_mode='zeros', integer padding) is supported")
        if bn is not None and not cfg.fold_bn:
            m, bn = _fold_now(m, bn), None
        step = S.Weighted(name, m, bn, clamp, self.keep(name), cfg.act_options(),
                          cfg.weight_options())
        self.finish(node, last, step, [self.value(node.args[0])])


def _fold_now(conv, bn):
    """A copy of conv with bn folded in (its running statistics), for fold_bn=False."""
    import copy
    c = copy.deepcopy(conv)
    with torch.no_grad():
        f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = c.bias if c.bias is not None else torch.zeros(c.weight.shape[0])
        c.weight.mul_(f.reshape((-1,) + (1,) * (c.weight.ndim - 1)))
        c.bias = nn.Parameter(bn.bias + (b - bn.running_mean) * f)
    return c


def prepare(model: nn.Module, example_inputs, config: QATConfig | None = None) -> QATModel:
    """The QAT model of `model` (a torch nn.Module): train it with your own loop, then
    `qat.convert` it. `example_inputs`: a tensor or a tuple of tensors (shapes are recorded;
    the batch size may differ later). The model's own parameters are shared, not copied."""
    config = QATConfig() if config is None else config
    if not isinstance(config, QATConfig):
        raise ConfigError(f"config must be a QATConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:          # TraceError, or any error the forward raised on proxies
        raise ConfigError(f"prepare: torch.fx could not trace {type(model).__name__}: {e} "
                          f"(control flow that depends on tensor values or shapes cannot be "
                          f"traced symbolically; move it out of forward or into a leaf "
                          f"module)") from e
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(*example_inputs)
    model.train(was_training)
    t = _Tracer(gm, config)
    inputs, outputs, single = t.run()
    # only ranks are kept: the example's sizes (batch, sequence length, time-major batch,
    # image size) must not be baked into the converted graph
    shapes = {v: (None,) * len(s) if s else s for v, s in t.shapes.items()}
    qm = QATModel(config, inputs, outputs, t.program, shapes, single, t.arg_names)
    qm.train(was_training)
    return qm
