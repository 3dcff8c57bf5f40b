"""Rows of the ATen table that compare: ``<``, ``<=``, ``>``, ``>=`` (a ``Pred``: the
condition of the Piecewise ``where`` builds), ``==`` (known where it is decided without a
derivative, a Piecewise on ``Eq`` of a tensor no parameter reaches), ``isnan`` and
``logical_not``.

>>> import sympy as sp
>>> from symgrad.tensor.program import input as leaf_input
>>> t = leaf_input("t", (3,))
>>> _eq({"self": t, "other": 0}, (3,)).expr
Eq(x0, 0)
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, topological
from .values import Masked, Pred, named as _named, number

aten = torch.ops.aten


def _compare(rel: Callable) -> Callable:
    return _named(f"comparison x0 {rel(X[0], X[1]).rel_op} x1 (where reads it as a Piecewise)",
                  lambda a, shape: Pred(rel(X[0], X[1]), (a["self"], a["other"])))


def _eq(a, shape) -> torch.Tensor:
    """known where a -inf fill is / ==+-inf, NaN: False; a held tensor == c: Eq (where)

    A program value is real (SDPA's fully-masked-row guard on unmasked scores is False); a
    tensor no parameter reaches compared with a number is a Piecewise condition (kl_div)."""
    x, other = a["self"], a["other"]
    if isinstance(x, Masked) and isinstance(other, (int, float)) and other == -math.inf:
        return torch.from_numpy(x.keep.attrs["value"] == 0).expand(shape)
    if isinstance(x, (Node, Masked)) and isinstance(other, float) and not math.isfinite(other):
        # SDPA's decomposition without a mask: where(all(scores == -inf), 0, softmax). The
        # exact program is real-valued; a backend that overflows to inf is compared there
        return torch.zeros(shape, dtype=torch.bool)
    if isinstance(x, Node) and isinstance(other, (int, float)) and not _differentiated(x):
        # F.kl_div / torch.xlogy: where(target == 0, 0, target * log(target)) of a held
        # target: its value is exact on either branch and no derivative flows through it
        return Pred(sp.Eq(X[0], number(other)), (x,))
    raise SymgradError("capture: == / != on a float tensor has no derivative and no kink "
                       "symgrad can place where a parameter reaches it (x == c; F.kl_div / "
                       "xlogy of a target that requires grad); hold that tensor "
                       "(requires_grad=False) or compare with < / > (a Piecewise) instead")


def _differentiated(x: Node) -> bool:
    """Does ``x`` depend on a parameter block (a differentiated tensor)?"""
    return any(n.op == "param" for n in topological([x]))


def _isnan(a, shape) -> torch.Tensor:
    """known False: the exact program is real-valued (a backend's NaN is compared as such)"""
    return torch.zeros(shape, dtype=torch.bool)


def _not(a, shape) -> Pred:
    """the negated comparison"""
    p = a["self"]
    if not isinstance(p, Pred):
        raise SymgradError("capture: logical_not of a float tensor is not supported")
    return Pred(sp.Not(p.expr), p.operands)


PREDICATE_ROWS: dict[Any, Callable] = {
    aten.gt.Scalar: _compare(operator.gt), aten.gt.Tensor: _compare(operator.gt),
    aten.ge.Scalar: _compare(operator.ge), aten.ge.Tensor: _compare(operator.ge),
    aten.lt.Scalar: _compare(operator.lt), aten.lt.Tensor: _compare(operator.lt),
    aten.le.Scalar: _compare(operator.le), aten.le.Tensor: _compare(operator.le),
    aten.logical_not.default: _not, aten.eq.Scalar: _eq, aten.isnan.default: _isnan,
}
