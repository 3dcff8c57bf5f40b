"""The rigorous enclosure of a max reduction's derivative: which entries are the maximum.

The derived program routes a max reduction's cotangent through ``top = Heaviside(x - max(x),
1)`` (``symgrad.tensor.derive``: 1 at the maximal entries, shared evenly among them). Walked
as written in ball arithmetic, ``x_i - max(x)`` forgets that ``max(x)`` is one of the ``x``: at
the winning entry both balls are the same ball, their difference straddles 0, ``top`` is
[0, 1], the tie count contains 0 and everything behind a max-pool is unbounded - no entry
behind it could ever be proven wrong.

The same function, with no dependency lost: ``top_i = Heaviside(x_i - m_i, 1)``, ``m_i`` the
maximum of the *other* entries (x_i >= max(x) exactly when x_i >= m_i), its two balls now
independent. ``top_i`` is exactly 1 where x_i's ball lies at or above every other entry's,
exactly 0 where another entry's ball lies above it, and [0, 1] only where the balls overlap
(a tie within the enclosure's own rounding, or an exact one: a window of relu's zeros).
``m_i`` is the maximum of the entries before and after i (two running maxima: O(k) per
window). The tie count ``sum(top)`` is at least 1 (some entry is the maximum; a float sum of
non-negative terms with a 1 among them is >= 1 in any rounding): its ball is cut to [1, .),
so a tie's share top / count stays within [0, 1] instead of dividing by a ball holding 0.

>>> import numpy as np
>>> from flint import arb
>>> x = np.array([[arb(1, 1e-9), arb(3, 1e-9), arb(2, 1e-9), arb(3, 1e-12)]], dtype=object)
>>> [str(v) for v in top(x, (1,))[0]]
['0', '[+/- 1.01]', '0', '[+/- 1.01]']
>>> [str(v) for v in top(x[:, :3], (1,))[0]]
['0', '1.00000000000000', '0']
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from flint import arb, ctx

from ..backends import arb as arb_backend
from ..tensor.interpret import RULES
from ..tensor.program import X, Node
from .balls import PREC

TOP = sp.Heaviside(X[0] - X[1], 1)  # the max reduction's derivative (tensor/derive.py)


def _at_least(a, m) -> arb:
    """Heaviside(a - m, 1) of two independent balls: 1 or 0 where certain, else [0, 1]."""
    d = arb_backend._a(a) - arb_backend._a(m)
    if d.is_nan():
        return arb.nan()
    if d >= 0:
        return arb(1)
    if d < 0:
        return arb(0)
    return arb(0.5, 0.5)


def _one_or_more(c) -> arb:
    """A tie count's ball cut to [1, .) (module docstring)."""
    c = arb_backend._a(c)
    if c.is_finite() and c.upper() >= 1 and not c >= 1:
        return c.intersection(arb(1).union(c.upper()))
    return c


_at_least_u = np.frompyfunc(_at_least, 2, 1)
_one_or_more_u = np.frompyfunc(_one_or_more, 1, 1)
_max2 = np.frompyfunc(lambda a, b: arb_backend._a(a).max(arb_backend._a(b)), 2, 1)


def reduced_axes(node: Node) -> tuple[int, ...] | None:
    """The axes of the max reduction whose ``top`` this node is (``map(Heaviside(X0 - X1, 1),
    x, reshape(max(x, axes), kept))``, exactly as ``derive`` builds it), else None."""
    if node.op != "map" or len(node.args) != 2 or node.attrs.get("expr") != TOP:
        return None
    x, r = node.args
    m = r.args[0] if r.op == "reshape" else r
    if m.op != "max" or m.args[0].id != x.id or node.shape != x.shape:
        return None
    axes = tuple(m.attrs["axes"])
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    return axes if r.shape == kept else None


def top(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``Heaviside(x - max(x, axes), 1)`` enclosed without losing that the max is one of x.

    Arguments:
        x: balls (an object array of ``arb``), any shape.
        axes: the reduced axes of ``x``.
    Returns:
        An object array of x's shape: 1, 0 or [0, 1] per entry (module docstring).
    """
    x = np.asarray(x, dtype=object)
    last = tuple(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, last)
    flat = moved.reshape(moved.shape[:x.ndim - len(axes)] + (-1,))
    k = flat.shape[-1]
    before, after = np.empty_like(flat), np.empty_like(flat)
    run = np.full(flat.shape[:-1], arb.neg_inf(), dtype=object)
    for i in range(k):
        before[..., i] = run
        run = _max2(run, flat[..., i])
    run = np.full(flat.shape[:-1], arb.neg_inf(), dtype=object)
    for i in reversed(range(k)):
        after[..., i] = run
        run = _max2(run, flat[..., i])
    out = np.asarray(_at_least_u(flat, _max2(before, after)), dtype=object)
    return np.moveaxis(out.reshape(moved.shape), last, axes)


def top_rule(node: Node, table, vals: list, context) -> np.ndarray:
    """The interpreter's ``map`` rule for the rigorous walk (``torch_forms.RULES`` wraps it):
    a max reduction's ``top`` by ``top``; any other map as usual."""
    axes = reduced_axes(node)
    if axes is None:
        return RULES["map"](node, table, vals, context)
    with ctx.workprec(getattr(table, "prec", PREC)):
        return top(vals[0], tuple(a + 1 for a in axes))  # after the batch axis



def count_rule(node: Node, table, vals: list, context) -> np.ndarray:
    """The interpreter's ``sum`` rule for the rigorous walk: the sum of a ``top`` over its
    reduced axes (the tie count) cut to [1, .); any other sum as usual."""
    out = RULES["sum"](node, table, vals, context)
    axes = reduced_axes(node.args[0])
    if axes is None or tuple(node.attrs["axes"]) != axes:
        return out
    with ctx.workprec(getattr(table, "prec", PREC)):
        return np.asarray(_one_or_more_u(np.asarray(out, dtype=object)), dtype=object)
