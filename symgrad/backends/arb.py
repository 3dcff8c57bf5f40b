"""Ball-arithmetic helpers (python-flint ``arb``) for the rigorous enclosures
(``symgrad.rigorous``) and the tensor program's sides (``symgrad.tensor.sides``).

Every value is a ball [mid +- rad] that provably contains the exact real number. Where a ball is
too wide to decide a domain (a square root's argument, a division by a ball holding 0) a helper
raises ``Imprecise``: more bits are needed.

>>> from flint import arb
>>> rsqrt(arb(4)), ipow(arb(2), -2)
(2.00000000000000, 0.250000000000000)
>>> rsqrt(arb("0 +/- 1e-30"))
Traceback (most recent call last):
...
symgrad.backends.arb.Imprecise: a ball holds the boundary of a function's domain
"""

from __future__ import annotations

import sympy as sp
from flint import arb, ctx, fmpq

NAN = arb.nan()


class Imprecise(Exception):
    """A ball is too wide to decide a branch or a domain at this precision: raise the bits."""


def _a(x) -> arb:
    return x if type(x) is arb else arb(x)


def _sign(x: arb) -> int | None:
    """The certain sign of a ball (0 for exact zero), None when the ball straddles 0."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    if x.is_zero():
        return 0
    return None


# ---------------------------------------------------------------- real-domain functions
def _need(sign: int | None) -> int:
    if sign is None:
        raise Imprecise("a ball holds the boundary of a function's domain")
    return sign


def rsqrt(x):
    """sqrt(x) on the reals: 0 at 0, NaN below; a ball holding 0 needs more bits."""
    x = _a(x)
    s = _need(_sign(x))
    return x.sqrt() if s > 0 else (arb(0) if s == 0 else NAN)


def ipow(b, k: int):
    """b ** k for an integer k; 1/0 is undefined (NaN), a ball holding 0 needs more bits."""
    b = _a(b)
    if k >= 0:
        return b ** k
    s = _need(_sign(b))
    if s == 0:
        return NAN
    return 1 / b if k == -1 else (1 / b) ** (-k)


# ---------------------------------------------------------------- constants
def constant(e: sp.Expr) -> arb:
    """A sympy number as a ball at the current precision (exact for rationals and floats)."""
    if e is sp.nan:
        return NAN
    if e in (sp.oo, -sp.oo):
        return arb.pos_inf() if e is sp.oo else arb.neg_inf()
    if e.is_Rational:
        return arb(fmpq(int(e.p), int(e.q)))
    if e.is_Float:
        r = sp.Rational(e)
        return arb(fmpq(int(r.p), int(r.q)))
    digits = int(ctx.prec * 0.30103) + 12
    v = sp.N(e, digits)
    if not v.is_real:
        raise TypeError(f"{e} is not real")
    return arb(str(v)) * arb(f"1 +/- 1e-{digits - 3}")
