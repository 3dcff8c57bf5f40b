"""Rows of the ATen table for ``sign``, ``cumsum`` and ``sort`` (issue 18: ``nn.Softshrink``,
``torch.cumsum`` and ``torch.sort`` were refused).

- ``sign``: the op table's piecewise-constant ``sign`` (derivative 0; a jump at 0, a kink as
  ``Abs`` / ``Heaviside`` are: a sample at exactly 0 takes ``sign(0) = 0``, as torch).
- ``cumsum``: exact and linear: an einsum with the lower-triangular 0/1 matrix along ``dim``.
- ``sort``: ``topk`` of all n entries along the last axis (``symgrad.capture.route``): ranks
  from pairwise Piecewise comparisons, ties (equal entries) are kinks and the lower index comes
  first, as a stable sort; the indices are a ``Selection`` nothing differentiable reads.

>>> aten.sign.default in SCAN_ROWS, aten.cumsum.default in SCAN_ROWS
(True, True)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, const, einsum
from .route import _topk
from .values import Selection, elementwise, named as _named, node

aten = torch.ops.aten
_L = "abcdefghijklmnop"


def _cumsum(a, shape) -> Node:
    """einsum with the lower-triangular 0/1 matrix along dim (exact)"""
    x = node(a["self"], "cumsum")
    dtype = a.get("dtype")
    if dtype is not None and not dtype.is_floating_point:
        raise SymgradError(f"capture: cumsum of a float tensor with dtype={dtype} has no "
                           "derivative; leave dtype out or pass a float dtype")
    if x.ndim == 0:
        return x
    d = a["dim"] % x.ndim
    n = x.shape[d]
    if x.ndim + 1 > len(_L):
        raise SymgradError(f"capture: cumsum of a {x.ndim}-dim tensor is not supported")
    sub = _L[:x.ndim]
    out = sub[:d] + _L[x.ndim] + sub[d + 1:]
    tril = const(np.tril(np.ones((n, n))), "cumsum_tril")  # [i, j]: 1 where j <= i
    return einsum(f"{sub},{_L[x.ndim]}{sub[d]}->{out}", x, tril)


def _sort(a, shape) -> tuple[Node, Any]:
    """topk of all n entries along the last axis (ties are kinks; stable order)"""
    x = node(a["self"], "sort")
    d = a.get("dim", -1)
    if x.ndim == 0 or d % x.ndim != x.ndim - 1:
        raise SymgradError("capture: sort along an axis other than the last is not supported; "
                           "move that axis last (x.movedim(dim, -1).sort(-1)) and back")
    if x.shape[-1] < 2:
        raise SymgradError("capture: sort of a single entry is the entry itself; drop the sort")
    values, picks = _topk({"self": x, "k": x.shape[-1], "dim": -1,
                           "largest": bool(a.get("descending", False))}, shape)
    return values, Selection(picks.onehot, "sort")


SCAN_ROWS: dict[Any, Callable] = {
    aten.sign.default: _named("map sign(x0) (piecewise constant, a jump at 0: a kink)",
                              lambda a, shape: elementwise(sp.sign(X[0]), a["self"])),
    aten.cumsum.default: _cumsum,
    aten.sort.default: _sort, aten.sort.stable: _sort,
}
