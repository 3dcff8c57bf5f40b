"""A contraction's own roundings, the rule ``symgrad.tensor.bound`` charges each einsum and sum
for what it rounds itself (beside the errors of its operands it carries): E = a A + b |v| in
the worst case, sigma = alpha A + beta |v| in the probabilistic scale, A the sum of |terms| of
an output and v the output's value (the sum of its terms).

Of the m terms of an output, the m - 1 additions each round their result once
(|fl(s) - s| <= u |s| to first order), in whatever order or blocking the backend adds them
(recursive, pairwise, BLAS blocks, FMA): the last result is v itself; every other is the sum of
a subset of the terms, so it lies between -N and P (P, N: the sums of the positive terms and
of |the negative ones|; P + N = A, P - N = v) and |s| <= max(P, N) = (A + |v|) / 2 = M. Each
term's k - 1 products round it by at most u |term|: (k - 1) A over the m terms.

    worst case       (m - 2) M + |v| + (k - 1) A    (m >= 2; m = 1: (k - 1) A)
                     = a A + b |v|, a = (m - 2) / 2 + k - 1, b = m / 2
    probabilistic    the additions independent, each sub-Gaussian with proxy |s| <= M, grown
                     as g(m - 1) (``growth``: sqrt up to n0 terms, linear beyond); the products
                     as k - 1 worst-case roundings of A: sqrt(g^2 M^2 + (k - 1)^2 A^2), convex
                     in M on [A / 2, A], hence below its chord:
                     alpha A + beta |v|, alpha = sqrt(g^2 / 4 + (k - 1)^2),
                     beta = sqrt(g^2 + (k - 1)^2) - alpha

Both are never above Wilkinson's (m - 1 + k - 1) A (resp. g(m - 1 + k - 1) A in the sqrt range)
that the bound charged before, and half of it where the terms cancel (|v| << A: a gradient
entry that is small against its terms, the entries float32 left inconclusive). Linear in A and
|v|: a large GEMM's row blocks (``Operands.rows_pair``) take a (alpha) as their factor of A and
b |v| (beta |v|) is added after, as on the whole-array path. An einsum whose value is not
formed (an output no node reads: ``bound._shape_of``) keeps the rule before, b = beta = 0
(A >= M >= |v|).

>>> import numpy as np
>>> from symgrad.tensor.program import param, sum_
>>> s = sum_(param("x", (4,)))
>>> own(s, None, np.array([0.5]), None)  # 4 terms: a = (4 - 2) / 2, b = 4 / 2
(1.0, 2.0)
"""

from __future__ import annotations

import numpy as np

from ..parallel import by_pieces
from .memorder import cut
from .operands import plus
from .program import Node


def einsum_terms(node: Node) -> int:
    """Terms per output of an einsum: the product of its contracted sizes."""
    ins, out = node.attrs["spec"].split("->")
    sizes = {}
    for sub, a in zip(ins.split(","), node.args):
        sizes.update(zip(sub, a.shape))
    return int(np.prod([n for c, n in sizes.items() if c not in out], dtype=np.int64))


def additions(node: Node, count: np.ndarray | None) -> np.ndarray | int:
    """Roundings of a contraction per output: (m - 1) additions of its m nonzero terms and
    k - 1 products of each term."""
    k = len(node.args) if node.op == "einsum" else 1
    n = einsum_terms(node) if node.op == "einsum" else int(np.prod(
        [node.args[0].shape[a] for a in node.attrs["axes"]], dtype=np.int64))
    if count is None:
        return n - 1 + k - 1
    rounds = np.subtract(count, 1)  # exact small integers: formed in one array
    np.maximum(rounds, 0, out=rounds)
    rounds += k - 1
    return rounds


def growth(rounds, n0: int):
    """sqrt(r) roundings' worth up to n0, linear beyond: max(sqrt(r), r / sqrt(n0))."""
    grow, linear = np.sqrt(rounds), np.asarray(rounds, dtype=np.float64) / np.sqrt(n0)
    mine = isinstance(grow, np.ndarray) and grow.shape == np.broadcast_shapes(*map(np.shape, (
        grow, linear)))
    return np.maximum(grow, linear, out=grow if mine else None)


def own(node: Node, count: np.ndarray | None, value, n0: int | None) -> tuple:
    """The own roundings' factors of an einsum or sum node (module docstring).

    Arguments:
        node: the einsum or sum.
        count: its nonzero terms per output (None: every term may be nonzero).
        value: its value (``bound._shape_of``'s NaN stand-in: the rule before).
        n0: None for the worst case, else the probabilistic sqrt-growth limit.
    Returns:
        (a, b) with E_own = a A + b |v|, or (alpha, beta) with sigma_own = alpha A + beta |v|;
        floats, or arrays per output where ``count`` is one.
    """
    k = len(node.args) if node.op == "einsum" else 1
    rounds = additions(node, count)
    if unformed(value):
        return (rounds if n0 is None else growth(rounds, n0)), 0.0
    m = np.asarray(rounds, dtype=np.float64) - (k - 2)  # terms per output (1 where none)
    if n0 is None:
        a = np.maximum(m - 2, 0) / 2 + (k - 1)
        b = np.where(m >= 2, m / 2, 0.0)
    else:
        g2 = np.square(growth(np.maximum(m - 1, 0), n0))
        a = np.sqrt(g2 / 4 + (k - 1) ** 2)
        b = np.sqrt(g2 + (k - 1) ** 2) - a
    return (a, b) if np.ndim(a) else (float(a), float(b))


def unformed(value) -> bool:
    """Whether ``value`` is ``bound._shape_of``'s stand-in (one NaN broadcast)."""
    return (isinstance(value, np.ndarray) and value.size > 0 and not any(value.strides)
            and bool(np.isnan(value.flat[0])))


def with_value(total, b, value):
    """total + b |v| (b = 0: ``total`` as it is)."""
    if not np.any(b):
        return total
    shape = np.shape(total)
    if not (isinstance(total, np.ndarray) and total.flags.writeable
            and shape == np.broadcast_shapes(shape, np.shape(b), np.shape(value))):
        return plus(total, np.multiply(b, np.abs(value)))

    def piece(at: tuple) -> None:  # on the pool's threads: the same per-entry arithmetic
        x = np.abs(cut(value, at, shape))
        w = cut(b, at, shape)
        x = np.multiply(w, x, out=x if x.shape == np.broadcast_shapes(x.shape, np.shape(w))
                        else None)
        np.add(total[at], x, out=total[at])
    by_pieces(piece, total)
    return total
