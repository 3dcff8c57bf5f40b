"""Rows of the ATen table for norms and distances: vector norms (``F.normalize``,
``F.cosine_similarity``, ``torch.linalg.vector_norm``), group norm, pairwise distances
(``F.pdist``, ``torch.cdist``).

Each decomposes into nodes the program already has. A 2-norm is the square root of a sum of
squares, ``sqrt(s)`` taken as the Piecewise ``(sqrt(s), s > 0), (0, True)`` (``ROOT``): the same
value, and a kink at s = 0 (a zero vector, two equal points) that symgrad's kink machinery
decides (the square root's infinite slope there is only on the s > 0 side, never 0 * inf on the
actual one): torch's 0 at the cone's tip passes, another subgradient there is inconclusive
(with a plain sqrt, torch's correct pdist / cdist at equal points were a false "domain" FAIL,
the exact derivative 0 * inf); a 1-norm is a sum of ``Abs`` (a kink at each 0 entry); an inf-norm a max
reduction of ``Abs`` (ties are kinks). A pair's difference is exact data flow: ``pdist`` picks
``x_i - x_j`` with a (pairs, n) matrix of +1/-1 (one subtraction per entry, as torch does),
``cdist`` broadcasts ``x1[..., :, None, :] - x2[..., None, :, :]``.

>>> _pairs(3).tolist()
[[1.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]
>>> float(_ord(2.0, "linalg_vector_norm")), float(_ord(float("inf"), "cdist"))
(2.0, inf)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, const, einsum, max_, reshape, sum_
from .conv import moments, standardize
from .values import elementwise, node

aten = torch.ops.aten
ROOT = sp.Piecewise((sp.sqrt(X[0]), X[0] > 0), (0, True))  # sqrt(s) of a sum of squares s >= 0
ORDS = (1.0, 2.0, math.inf)  # the orders lowered (p-norms of those p; -inf: a min of |x|)


def _ord(p: Any, op: str) -> float:
    """The order ``p`` of a norm as a float, refused in one line unless in ``ORDS`` or -inf."""
    p = float(p)
    if p not in ORDS and p != -math.inf:
        raise SymgradError(f"capture: {op} with ord/p={p:g} is not supported yet (ord 1, 2, "
                           "inf and -inf are); write that norm with supported ops, e.g. "
                           "x.abs().pow(p).sum(dim).pow(1/p)")
    return p


def vector_norm(x: Node, p: float, axes: tuple[int, ...], *, keepdim: bool = False) -> Node:
    """The ``p``-norm of ``x`` over ``axes`` (p in ``ORDS`` or -inf).

    Arguments:
        x: the node.
        p: 1 (sum of |x|), 2 (``ROOT`` of the sum of squares), inf / -inf (max / min of |x|).
        axes: the reduced axes (sorted, non-negative).
        keepdim: keep the reduced axes with size 1.
    Returns:
        The norm node.

    >>> import symgrad.tensor as st
    >>> vector_norm(st.param("v", (2, 3)), 2.0, (1,), keepdim=True).shape
    (2, 1)
    """
    if p == 2.0:
        return elementwise(ROOT, sum_(elementwise(X[0] ** 2, x), axes, keepdims=keepdim))
    a = elementwise(sp.Abs(X[0]), x)
    if p == 1.0:
        return sum_(a, axes, keepdims=keepdim)
    if p == math.inf:
        return max_(a, axes, keepdims=keepdim)
    return elementwise(-X[0], max_(elementwise(-X[0], a), axes, keepdims=keepdim))  # -inf


def _vector_norm(a: dict, shape) -> Node:
    """p-norm over dim (vector_norm: ROOT of a sum of squares, sum or max/min of Abs)

    ord 2: sqrt of the sum of squares with a kink at 0; 1: a sum of Abs; inf / -inf: a max /
    min of Abs (ties are kinks); other orders are refused in one line."""
    x = node(a["self"], "linalg_vector_norm")
    dim = a.get("dim")
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        axes = tuple(range(x.ndim))
    else:
        axes = tuple(sorted(d % x.ndim for d in ([dim] if isinstance(dim, int) else dim)))
    p = _ord(a.get("ord", 2), "linalg_vector_norm")
    return vector_norm(x, p, axes, keepdim=bool(a.get("keepdim", False)))


def _pairs(n: int) -> np.ndarray:
    """(n (n - 1) / 2, n): row k is +1 at i and -1 at j for the k-th pair i < j (pdist's
    order: row-major over the upper triangle)."""
    i, j = np.triu_indices(n, 1)
    D = np.zeros((i.size, n))
    D[np.arange(i.size), i] = 1.0
    D[np.arange(i.size), j] = -1.0
    return D


def _pdist(a: dict, shape) -> Node:
    """vector_norm of each pair's difference x_i - x_j, i < j (einsum with +1/-1 rows)

    One subtraction per entry, as torch computes it; p as for ``vector_norm``."""
    x = node(a["self"], "pdist")
    p = _ord(a.get("p", 2.0), "pdist")
    diff = einsum("kn,nm->km", const(_pairs(x.shape[0]), "pairs"), x)
    return vector_norm(diff, p, (1,))


def _cdist(a: dict, shape) -> Node:
    """vector_norm over the last axis of map x1[..., :, None, :] - x2[..., None, :, :]

    torch's direct path; its matrix-product path for p = 2 (many points) exports as matmul,
    clamp_min and sqrt, which have rows of their own."""
    x1, x2 = node(a["x1"], "cdist"), node(a["x2"], "cdist")
    p = _ord(a["p"], "cdist")
    d1 = reshape(x1, x1.shape[:-1] + (1, x1.shape[-1]))
    d2 = reshape(x2, x2.shape[:-2] + (1,) + x2.shape[-2:])
    diff = elementwise(X[0] - X[1], d1, d2)
    return vector_norm(diff, p, (diff.ndim - 1,))


def _group_norm(a: dict, shape) -> tuple:
    """per (sample, group): mean, biased variance, (x - mu)/sqrt(var + eps), weight, bias"""
    x = node(a["input"], "group_norm")
    n, c, g = int(a["N"]), int(a["C"]), int(a["group"])
    xg = reshape(x, (n, g, (c // g) * int(a["HxW"])))
    mu, var = moments(xg, (2,))
    y = reshape(standardize(xg, mu, var, a["eps"]), x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if a.get("weight") is not None:
        y = elementwise(X[0] * X[1], y, reshape(node(a["weight"], "group_norm"), per_channel))
    if a.get("bias") is not None:
        y = elementwise(X[0] + X[1], y, reshape(node(a["bias"], "group_norm"), per_channel))
    return y, None, None  # the saved mean / rstd: not captured


NORM_ROWS: dict[Any, Callable] = {
    aten.linalg_vector_norm.default: _vector_norm,
    aten._pdist_forward.default: _pdist,
    aten._cdist_forward.default: _cdist,
    aten.native_group_norm.default: _group_norm,
}
