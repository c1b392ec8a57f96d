"""Canonical QDQ: the forms other tools write, rewritten into the DQ → op → Q units the lowering
rules read. Each rewrite keeps the graph's ONNX meaning (folded scales up to float32 rounding):

1. Data movement on quantized tensors (ONNX Runtime's QOperator files run MaxPool / Reshape /
   Flatten / Transpose ... on uint8 directly): Q → op → DQ becomes Q → DQ → op → Q → DQ with
   the same qparams. Moving or taking the max of grid values leaves them on the grid.
2. DQ propagated through data movement (NNCF quantizes a MaxPool's input but not its output, the
   next conv reading the MaxPool's float output): DQ → op → consumers becomes
   DQ → op → Q → DQ → consumers, with the input's qparams (exact, as in 1). ONNX Runtime's
   QDQPropagationTransformer does the same.
3. Per-channel affine ops after a conv whose weights come through DQ — BatchNormalization (NNCF
   leaves it unfolded; PyTorch's QAT Conv+BN exports as Conv → Div → Add → BatchNormalization),
   Mul / Div by a per-channel constant, Add of a per-channel bias — fold into the DQ's
   per-channel scale (sign into the int8 values) and a float bias: conv(x, s·q)·k + b =
   conv(x, (s·|k|)·(sign(k)·q)) + b.
4. Recurrent weights through DQ (qengine's own export of dynamic LSTM / GRU, weight-only
   quantized files): ONNX LSTM / GRU take W, R and B as tensors their layers prepack, so a
   DequantizeLinear of a constant (then a Reshape by a constant shape) feeding them becomes the
   float initializer it computes, (q − z)·s in float32 — what ONNX Runtime runs. The LSTM stays
   float; quantize_dynamic quantizes it again (to the same codes when they span ±127 per row).
"""
from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node
from ..graph.passes import remove_dead_nodes
from .lower import _Weight
from .names import Names

MOVERS = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"})


def canonicalize(graph: Graph) -> Graph:
    g = graph.copy()
    _Rewriter(g).run()
    return remove_dead_nodes(g)


class _Rewriter:
    def __init__(self, g: Graph):
        self.g = g
        self.fresh = Names(g).fresh


    def const(self, v):
        return self.g.initializers.get(v) if v else None

    def per_tensor(self, n: Node) -> bool:
        """A Q/DQ node with constant per-tensor qparams."""
        s = self.const(n.inputs[1])
        z_name = n.inputs[2] if len(n.inputs) > 2 else ""
        return s is not None and s.size == 1 and (not z_name or self.const(z_name) is not None) \
            and not n.attrs.get("block_size", 0)

    def run(self):
        self._movers()
        self._fold_affine()
        self._recurrent_weights()
        self.g.toposort()

    # ---- 4 --------------------------------------------------------------------------------------
    def _recurrent_weights(self):
        g = self.g
        producers = g.producers()
        nodes = []
        for n in g.nodes:
            if n.op_type in ("LSTM", "GRU"):
                ins = list(n.inputs)
                for i in (1, 2, 3):
                    w = self._constant_dq(ins[i], producers) if i < len(ins) and ins[i] else None
                    if w is not None:
                        ins[i] = self.fresh(f"{n.name}.{'WRB'[i - 1]}")
                        g.initializers[ins[i]] = w
                n = n.replace(inputs=tuple(ins))
            nodes.append(n)
        g.nodes = nodes

    def _constant_dq(self, v, producers):
        """The float32 value of v when it is DQ(constants) or Reshape(DQ(constants), shape)."""
        p = producers.get(v)
        shape = None
        if p is not None and p.op_type == "Reshape" and self.const(p.inputs[1]) is not None:
            shape = [int(d) for d in self.const(p.inputs[1])]
            p = producers.get(p.inputs[0])
        if p is None or p.op_type != "DequantizeLinear" or \
                any(self.const(x) is None for x in p.inputs if x):
            return None
        z = p.inputs[2] if len(p.inputs) > 2 else ""
        w = _Weight(self.const(p.inputs[0]), np.asarray(self.const(p.inputs[1])),
                    self.const(z), p.attrs.get("axis", 1),
                    p.attrs.get("block_size", 0)).dequantized()
        if shape is not None:
            shape = [w.shape[k] if d == 0 else d for k, d in enumerate(shape)]
            w = w.reshape(shape)
        return np.ascontiguousarray(w)

    # ---- 1 and 2 --------------------------------------------------------------------------------
    def _movers(self):
        g = self.g
        int_q = {}          # integer tensor -> (scale, zero point) names
        dq_of = {}          # DQ output -> (scale, zero point) names
        nodes = []
        consumers = g.consumers()
        for n in g.nodes:
            if n.op_type == "QuantizeLinear" and self.per_tensor(n):
                int_q[n.outputs[0]] = tuple(n.inputs[1:3])
            elif n.op_type == "DequantizeLinear" and self.per_tensor(n) and \
                    n.inputs[0] not in g.initializers:
                dq_of[n.outputs[0]] = tuple(n.inputs[1:3])
            if n.op_type not in MOVERS or not n.inputs or any(o for o in n.outputs[1:]):
                nodes.append(n)
                continue
            x, y = n.inputs[0], n.outputs[0]
            users = consumers.get(y, [])
            if x in int_q:                                          # 1: on the integer tensor
                qp = int_q[x]
                xd = self.fresh(f"{x}.dq")
                yf = self.fresh(f"{y}.float")
                nodes += [Node("DequantizeLinear", self.fresh(f"{n.name}.dq_in"), (x, *qp),
                               (xd,)),
                          n.replace(inputs=(xd, *n.inputs[1:]), outputs=(yf,)),
                          Node("QuantizeLinear", self.fresh(f"{n.name}.q_out"), (yf, *qp), (y,))]
                int_q[y] = qp
            elif x in dq_of and not (users and all(u.op_type == "QuantizeLinear"
                                                   for u in users)):   # 2: DQ forward
                qp = dq_of[x]
                yf, yq = self.fresh(f"{y}.float"), self.fresh(f"{y}.q")
                nodes += [n.replace(outputs=(yf,)),
                          Node("QuantizeLinear", self.fresh(f"{n.name}.q_out"), (yf, *qp), (yq,)),
                          Node("DequantizeLinear", self.fresh(f"{n.name}.dq_out"), (yq, *qp),
                               (y,))]
                dq_of[y] = qp
            else:
                nodes.append(n)
        g.nodes = nodes
        g.toposort()

    # ---- 3 ----------------------------------------------------------------------------------
    def _fold_affine(self):
        changed = True
        while changed:
            changed = False
            producers, consumers = self.g.producers(), self.g.consumers()
            for conv in self.g.nodes:
                if conv.op_type != "Conv" or len(conv.inputs) < 2:
                    continue
                users = consumers.get(conv.outputs[0], [])
                if len(users) != 1 or conv.outputs[0] in self.g.output_names:
                    continue
                wdq = producers.get(conv.inputs[1])
                if wdq is None or wdq.op_type != "DequantizeLinear" or \
                        wdq.inputs[0] not in self.g.initializers:
                    continue
                if self._fold(conv, wdq, users[0], consumers):
                    changed = True
                    break

    def _fold(self, conv, wdq, op, consumers) -> bool:
        g = self.g
        q = g.initializers[wdq.inputs[0]]
        s = self.const(wdq.inputs[1])
        zn = wdq.inputs[2] if len(wdq.inputs) > 2 else ""
        z = self.const(zn) if zn else None
        cout = q.shape[0]
        if q.dtype != np.int8 or q.ndim != 4 or s is None or (z is not None and np.any(z)) or \
                wdq.attrs.get("block_size", 0) or \
                (s.size != 1 and (s.size != cout or wdq.attrs.get("axis", 1) % 4 != 0)):
            return False
        if len(consumers.get(conv.inputs[1], [])) != 1:
            return False                                     # a shared weight: leave it
        k = b = None
        if op.op_type == "BatchNormalization" and len(op.outputs) == 1 or \
                op.op_type == "BatchNormalization" and not any(op.outputs[1:]):
            prm = [self.const(v) for v in op.inputs[1:5]]
            if any(p is None for p in prm):
                return False
            gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in prm)
            k = gamma / np.sqrt(var + float(op.attrs.get("epsilon", 1e-5)))
            b = beta - mean * k
        elif op.op_type in ("Mul", "Div", "Add") and len(op.inputs) == 2:
            other = op.inputs[1] if op.inputs[0] == conv.outputs[0] else op.inputs[0]
            c = _per_channel(self.const(other), cout)
            if c is None or (op.op_type == "Div" and (op.inputs[1] != other or np.any(c == 0))):
                return False
            if op.op_type == "Add":
                k, b = np.ones(cout), c
            else:
                k, b = (1.0 / c if op.op_type == "Div" else c), np.zeros(cout)
        else:
            return False
        if k.shape != (cout,) or not np.all(np.isfinite(k)) or np.any(k == 0):
            return False
        neg = k < 0
        if np.any(q[neg] == -128):
            return False                                     # -(-128) does not fit int8
        q2 = np.where(neg[:, None, None, None], -q, q).astype(np.int8)
        s2 = (np.broadcast_to(np.asarray(s, np.float64).reshape(-1), (cout,)) *
              np.abs(k)).astype(np.float32)
        old_b = self.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        bias = (np.zeros(cout) if old_b is None else np.asarray(old_b, np.float64)) * k + b
        base = conv.name
        qn, sn = self.fresh(f"{base}.W_folded"), self.fresh(f"{base}.W_scale_folded")
        zn2 = self.fresh(f"{base}.W_zero_point_folded")
        bn = self.fresh(f"{base}.B_folded")
        g.initializers[qn], g.initializers[sn] = q2, s2
        g.initializers[zn2] = np.zeros(cout, np.int8)
        g.initializers[bn] = bias.astype(np.float32)
        wd = self.fresh(f"{base}.W_dequantized")
        new_dq = Node("DequantizeLinear", self.fresh(f"{base}.W_dequantize"), (qn, sn, zn2),
                      (wd,), {"axis": 0})
        new_conv = conv.replace(inputs=(conv.inputs[0], wd, bn), outputs=op.outputs[:1])
        g.nodes = [new_dq if n is wdq else new_conv if n is conv else n for n in g.nodes
                   if n is not op]
        g.toposort()
        return True


def _per_channel(c, cout):
    """A constant's values per output channel of an NCHW tensor: a scalar, [C, 1, 1] or
    [1, C, 1, 1] (not [C], which NumPy broadcasting puts on the last axis), else None."""
    if c is None or c.dtype.kind != "f":
        return None
    c = np.asarray(c, np.float64)
    if c.size == 1:
        return np.full(cout, float(c.reshape(-1)[0]))
    shape = tuple(c.shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 3 and shape == (cout, 1, 1):
        return c.reshape(-1)
    return None
