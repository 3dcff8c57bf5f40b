"""Rows of the ATen table for ``sign``, ``cumsum`` and ``sort`` (issue 18: ``nn.Softshrink``,
``torch.cumsum`` and ``torch.sort`` were refused).

- ``sign``: the op table's piecewise-constant ``sign`` (derivative 0; a jump at 0, a kink as
  ``Abs`` / ``Heaviside`` are: a sample at exactly 0 takes ``sign(0) = 0``, as torch).
- ``cumsum``: exact and linear: an einsum with the lower-triangular 0/1 matrix along ``dim``.
- ``sort``: ``topk`` of all n entries along the last axis (``symgrad.capture.route``; another
  axis is moved last and back): ranks from pairwise Piecewise comparisons, ties (equal entries)
  are kinks and the lower index comes first, as a stable sort; the indices are a ``Selection``
  nothing differentiable reads (scatter's index along the last axis, as topk's; gather's and
  take_along_dim's along the sorted axis: ``index``). Along an axis of one entry the sort is
  the identity (its index 0).

>>> aten.sign.default in SCAN_ROWS, aten.cumsum.default in SCAN_ROWS
(True, True)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, const, einsum, transpose
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


def _sort(a, shape) -> tuple[Node, Selection]:
    """topk of all n entries along the last axis (ties are kinks; stable order); another
    axis is moved last and back"""
    x = node(a["self"], "sort")
    if x.ndim == 0:
        raise SymgradError("capture: sort of a 0-dim tensor is the entry itself; drop the sort")
    d = a.get("dim", -1) % x.ndim
    if x.shape[d] == 1:  # one entry along the axis: itself, its index 0
        lead = x.shape[:d] + x.shape[d + 1:]
        return x, Selection(const(np.ones(lead + (1, 1)), "sort_one"), "sort",
                            None if d == x.ndim - 1 else d)
    perm = [i for i in range(x.ndim) if i != d] + [d]  # dim moved last
    back = [perm.index(i) for i in range(x.ndim)]
    moved = x if d == x.ndim - 1 else transpose(x, perm)
    values, picks = _topk({"self": moved, "k": x.shape[d], "dim": -1,
                           "largest": bool(a.get("descending", False))}, shape)
    if d == x.ndim - 1:
        return values, Selection(picks.onehot, "sort")
    # the one-hot rows lie along the moved axis: only the values are captured
    return transpose(values, back), Selection(picks.onehot, f"sort(dim={d})", d)


def _remainder(a, shape) -> Selection:
    """sort's / topk's indices % m, m at least the entries they rank: themselves
    (take_along_dim wraps its indices so)"""
    sel, m = a["self"], a["other"]
    if not isinstance(sel, Selection):
        raise SymgradError("capture: remainder (%) of a float tensor computed from a parameter "
                           "or float input is not supported (a jump at each multiple); write it "
                           "with supported ops, e.g. x - m * torch.floor(x / m)")
    if not isinstance(m, int) or m < sel.onehot.shape[-1]:
        raise SymgradError(f"capture: {sel.op}'s indices % {m!r} is not supported; only a "
                           "modulus at least the number of entries ranked leaves them unchanged")
    return sel


SCAN_ROWS: dict[Any, Callable] = {
    aten.sign.default: _named("map sign(x0) (piecewise constant, a jump at 0: a kink)",
                              lambda a, shape: elementwise(sp.sign(X[0]), a["self"])),
    aten.cumsum.default: _cumsum,
    aten.sort.default: _sort, aten.sort.stable: _sort,
    aten.remainder.Scalar: _named("sort's / topk's indices % m, m at least the entries ranked: "
                                  "themselves (take_along_dim)", _remainder),
}
