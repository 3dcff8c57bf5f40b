"""Routing rows: ``topk`` (top-k gating of a mixture of experts) and ``scatter`` of its picks.

``topk`` along the last axis is exact in the tensor program: the rank of entry i is the number
of other entries that beat it (a Piecewise of each pair, derivative 0; of two equal entries the
lower index wins, as torch's CPU topk), rank r's one-hot row is a Piecewise of the rank, and
the values are an einsum of the one-hot rows with the input. Ties (two entries equal) are the
Piecewise boundaries: kinks, as symgrad treats any kink. The
indices are a ``Selection`` (the one-hot rows), consumed by ``scatter`` into dense gates.

>>> aten.topk.default in ROUTE_ROWS
True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, const, einsum, map_, reshape, sum_
from .values import Selection, is_known, node

aten = torch.ops.aten
_L = "abcdefghijklmnop"


def _others(n: int) -> np.ndarray:
    """(n, n-1, n) 0/1: row i, column m picks the m-th entry other than i."""
    S = np.zeros((n, n - 1, n))
    for i in range(n):
        for m, j in enumerate(j for j in range(n) if j != i):
            S[i, m, j] = 1
    return S


def _topk(a, shape) -> tuple[Node, Selection]:
    """values: einsum of the one-hot rank rows (Piecewise of pairwise comparisons; ties are
    kinks) with the input; indices: those rows (a Selection, for scatter)"""
    x = node(a["self"], "topk")
    k, d = int(a["k"]), a["dim"] % max(x.ndim, 1)
    if x.ndim == 0 or d != x.ndim - 1:
        raise SymgradError("capture: topk along an axis other than the last is not supported; "
                           "move that axis last (movedim) before topk")
    n, lead = x.shape[-1], x.shape[:-1]
    if n < 2 or not 0 < k <= n:
        raise SymgradError(f"capture: topk of k={k} among {n} entries is not supported")
    sub = _L[:len(lead)]
    others = einsum(f"{sub}j,imj->{sub}im", x, const(_others(n), "others"))  # (..., n, n-1)
    beats, loses = (X[1] > X[0], X[1] < X[0]) if a.get("largest", True) else (X[1] < X[0],
                                                                            X[1] > X[0])
    earlier = const(np.tril(np.ones((n, n - 1)), -1), "earlier")  # other m of i is j < i: m < i
    wins = map_(sp.Piecewise((1, beats), (0, loses), (X[2], True)),  # a tie: the lower index
                reshape(x, lead + (n, 1)), others, earlier)
    rank = sum_(wins, (len(lead) + 1,))  # (..., n): how many others beat entry i
    ranks = const(np.arange(k, dtype=np.float64).reshape(k, 1), "ranks")
    half = sp.Rational(1, 2)
    onehot = map_(sp.Piecewise((0, X[0] < X[1] - half), (1, X[0] < X[1] + half), (0, True)),
                  reshape(rank, lead + (1, n)), ranks)  # (..., k, n)
    return einsum(f"{sub}ri,{sub}i->{sub}r", onehot, x), Selection(onehot)


def _scatter(a, shape) -> Any:
    """dense gates: einsum of topk's one-hot rows with the weights (into known zeros)"""
    index, src, base = a["index"], a["src"], a["self"]
    if not isinstance(index, Selection):
        raise SymgradError("capture: scatter is supported only with topk's indices (dense "
                           "gates of a mixture of experts)")
    if index.op not in ("topk", "sort"):  # rows along a moved axis: not scatter's layout
        raise SymgradError(f"capture: scatter of {index.op}'s indices is not supported; sort "
                           "along the last axis (movedim) to scatter its indices")
    onehot = index.onehot
    nd = onehot.ndim - 1
    if a["dim"] % nd != nd - 1:
        raise SymgradError("capture: scatter of topk's indices along another axis than topk's "
                           "is not supported")
    if not (is_known(base) and isinstance(base, torch.Tensor) and not bool(base.any())):
        raise SymgradError("capture: scatter of topk's indices into a non-zero tensor is not "
                           "supported; scatter into torch.zeros_like(...)")
    sub = _L[:nd - 1]
    return einsum(f"{sub}ri,{sub}r->{sub}i", onehot, node(src, "scatter"))


ROUTE_ROWS: dict[Any, Callable] = {
    aten.topk.default: _topk,
    aten.scatter.src: _scatter,
}
