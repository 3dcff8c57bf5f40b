"""Rows of the ATen table for torch's rounding functions: ``floor``, ``ceil``, ``round``
(``decimals=`` too), ``trunc`` (and ``frac``, which export writes as ``x - trunc(x)``) - issue
18's stop-34 follow-up: ``aten.round`` was refused.

What symgrad claims: each is piecewise constant, its derivative 0 wherever it is continuous (as
torch's backward, zeros), with a jump at each integer (floor, ceil, trunc away from 0) or each
half-integer (round). The jumps are kinks, as ``sign``'s at 0 (``symgrad.capture.scan``): a
sample whose argument lies within rounding of a jump has both sides allowed (the value and every
gradient entry the jump reaches; never a proven failure there), anywhere else the exact value.

Each is written with ``functions.nearest`` (floor(x + 1/2): exact, derivative 0), whose own
jumps fall where the function written is continuous, and one Piecewise whose condition holds the
jump: floor(x) = N - 1 if x < N else N, with N = nearest(x); ceil(x) = N + 1 if x > N else N;
trunc(x) = floor(x) for x > 0 else ceil(x); round(x) (half to even, as torch) = M - 1 below
M - 1/2, M above it, and the even one of the two at it, with M = nearest(x + 1/2).
``round(x, decimals=d)`` is round(x 10^d) / 10^d (d < 0: round(x / 10^-d) 10^-d), as torch's
kernel computes it, the scaling exact in the program and rounded in torch's bound.

>>> sorted(str(op) for op in STEP_ROWS)[:2]
['aten.ceil.default', 'aten.floor.default']
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp
import torch

from ..functions import nearest
from ..tensor.program import X, Node
from .values import elementwise, named

aten = torch.ops.aten
_HALF = sp.Rational(1, 2)


def floor_of(x: sp.Expr) -> sp.Expr:
    """floor(x): a jump at each integer (the Piecewise's condition x < N)."""
    n = nearest(x)
    return sp.Piecewise((n - 1, x < n), (n, True))


def ceil_of(x: sp.Expr) -> sp.Expr:
    """ceil(x): a jump at each integer (x > N)."""
    n = nearest(x)
    return sp.Piecewise((n + 1, x > n), (n, True))


def trunc_of(x: sp.Expr) -> sp.Expr:
    """trunc(x): floor above 0, ceil below (continuous at 0: both are 0 there)."""
    return sp.Piecewise((floor_of(x), x > 0), (ceil_of(x), True))


def round_of(x: sp.Expr) -> sp.Expr:
    """round(x), half to even: a jump at each half-integer M - 1/2, M = nearest(x + 1/2)."""
    m = nearest(x + _HALF)
    return sp.Piecewise((m - 1, x < m - _HALF), (m, x > m - _HALF),
                        (2 * nearest((m - 1) / 2), True))  # the tie: the even of m - 1, m


def _round(a, shape) -> Node:
    """map round(x0) (half to even; decimals: round(x0 10^d) / 10^d): a jump at each half-integer"""
    d = int(a.get("decimals", 0) or 0)
    scale = sp.Integer(10) ** d  # exact (d < 0: 1 / 10^-d)
    return elementwise(round_of(X[0] * scale) / scale, a["self"])


def _map(f: Callable[[sp.Expr], sp.Expr], what: str) -> Callable:
    return named(what, lambda a, shape: elementwise(f(X[0]), a["self"]))


STEP_ROWS: dict[Any, Callable] = {
    aten.floor.default: _map(floor_of, "map floor(x0) (a jump at each integer: a kink)"),
    aten.ceil.default: _map(ceil_of, "map ceil(x0) (a jump at each integer: a kink)"),
    aten.trunc.default: _map(trunc_of, "map trunc(x0) (a jump at each nonzero integer: a kink)"),
    aten.round.default: named("map round(x0), half to even (a jump at each half-integer: a "
                              "kink)", _round),
    aten.round.decimals: named("map round(x0 10^d) / 10^d (a jump at each half-step: a kink)",
                               _round),
}
