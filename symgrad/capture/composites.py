"""Rows of the ATen table for torch's composite activations and losses whose own backward
formulas cancel: ``F.softplus``, ``F.logsigmoid`` and ``F.binary_cross_entropy_with_logits``.

``torch.export``'s default decompositions would write each as several maps (logsigmoid as
min(0, x) - log1p(e^-|x|)); symgrad's derivative of those is accurate where torch's own
backward is not (BCE-with-logits' sigmoid(x) - y, logsigmoid's double backward (s - 1) s,
softplus' (1 - s) s, all with s = sigmoid(x) rounded), so the allowance of the decomposed
program misses the rounding of a correct torch formula: a false "proven" failure
(``reports/wolf_torch_functions.md``). ``export`` keeps these ops whole (``KEPT``) and they
are lowered here into op-table maps (``symgrad.optable``: ``softplus``, ``logsigmoid``),
whose rows hold torch's formulas (``torch_backward``, ``torch_second``,
``tensor/torch_vjp``). BCE-with-logits is written lw softplus(x) - pw y x (lw = 1 + (pw - 1) y,
pw = 1 without pos_weight; the same function as torch's (1 - y) x + lw softplus(-x)), whose
derivative lw sigmoid(x) - pw y is torch's own formula, cancellation included.

>>> import sympy as sp
>>> from symgrad.tensor.program import param
>>> x = param("x", (3,))
>>> _log_sigmoid({"self": x}, (3,))[0].attrs["expr"] == OPS["logsigmoid"].computed
True
"""

from __future__ import annotations

import functools
from typing import Any

import sympy as sp
import torch

from ..optable import OPS
from ..tensor import ops as st_ops
from ..tensor.ops import ELEMENTWISE
from ..tensor.program import X, Node, sum_
from .values import Pred, elementwise, named as _named, node, number, where

aten = torch.ops.aten

KEPT = (aten.softplus.default, aten.log_sigmoid_forward.default,
        aten.binary_cross_entropy_with_logits.default)  # not decomposed by ``export``


@functools.cache
def decompositions() -> Any:
    """torch.export's default decompositions less ``KEPT`` (``export`` runs these; the ops
    kept are lowered here, their torch backward formulas in the op table)."""
    table = torch.export.default_decompositions()
    for op in KEPT:
        table.pop(op, None)
    return table


def _softplus(a, shape) -> Node:
    """op table: softplus of beta x, / beta; x where beta x > threshold (torch's cut-off)"""
    x = node(a["self"], "softplus")
    beta, threshold = number(a.get("beta", 1)), number(a.get("threshold", 20))
    inner = x if beta == 1 else elementwise(X[0] * beta, x)
    soft = ELEMENTWISE["softplus"](inner)
    if beta != 1:
        soft = elementwise(X[0] / beta, soft)
    return where(Pred(X[0] * beta > threshold, (x,)), x, soft)


def _log_sigmoid(a, shape) -> tuple:
    """op table: logsigmoid (the buffer e^-|x| is torch's backward's: not captured)"""
    return ELEMENTWISE["logsigmoid"](node(a["self"], "logsigmoid")), None


_REDUCTIONS = {0: None, 1: "mean", 2: "sum"}  # at::Reduction


def _bce_with_logits(a, shape) -> Node:
    """map lw softplus(x) - pw y x (torch's gradient lw sigmoid(x) - pw y), x weight, reduced"""
    x, y = node(a["self"], "binary_cross_entropy_with_logits"), a["target"]
    sp_x = OPS["softplus"].computed  # of X[0] (optable.X0 is X[0])
    pos = a.get("pos_weight")
    if pos is None:
        loss = elementwise(sp_x - X[1] * X[0], x, y)
    else:
        loss = elementwise((1 + (X[2] - 1) * X[1]) * sp_x - X[2] * X[1] * X[0], x, y, pos)
    if a.get("weight") is not None:
        loss = elementwise(X[0] * X[1], loss, a["weight"])
    how = _REDUCTIONS[int(a.get("reduction", 1))]
    if how is None:
        return loss
    axes = tuple(range(loss.ndim))
    return st_ops.mean(loss, axes) if how == "mean" else sum_(loss, axes)


COMPOSITE_ROWS: dict[Any, Any] = {
    aten.softplus.default: _named("softplus: op table softplus; x above the threshold",
                                  _softplus),
    aten.log_sigmoid_forward.default: _named("op table: logsigmoid", _log_sigmoid),
    aten.binary_cross_entropy_with_logits.default: _named(
        "map softplus(x) - y x (torch's gradient sigmoid(x) - y), weighted, reduced",
        _bce_with_logits),
}
