"""mpmath spelling of the program at a fixed ``dps`` (50 digits by default).

No longer the oracle (that is the tensor program's, ``symgrad.precise``: double-double and
certified ball arithmetic with precision escalation); kept for explanations that print a few digits of small expressions and as a third,
independent spelling of the table in ``tests/test_codegen.py``.
"""

from __future__ import annotations

import mpmath
import sympy as sp

from .. import functions
from ..codegen import Target, conditional_chain


def _heaviside(x, h0):
    """sympy's Heaviside(x, h0): explanations print sympy's own value at 0 (1/2 by default)."""
    if x > 0:
        return mpmath.mpf(1)
    if x < 0:
        return mpmath.mpf(0)
    return h0


def _sign(x):
    return mpmath.sign(x)


def _real(f, lo=None, hi=None, open_lo=False):
    """f restricted to the reals: NaN outside its real domain (no complex intermediates)."""
    def g(x):
        if (lo is not None and (x < lo or (open_lo and x == lo))) or (hi is not None and x > hi):
            return mpmath.nan
        return f(x)
    return g


def _rpow(b, e):
    if b < 0 and not mpmath.isint(e):
        return mpmath.nan
    return mpmath.power(b, e)


def _nan_propagating(f):
    """max/min where an undefined (NaN) argument makes the result undefined, as in numpy."""
    return lambda *xs: mpmath.nan if any(mpmath.isnan(x) for x in xs) else f(xs)


REAL = {"nanmax": _nan_propagating(max), "nanmin": _nan_propagating(min),
        "rlog": _real(mpmath.log, 0, open_lo=True), "rlog1p": _real(mpmath.log1p, -1, open_lo=True),
        "rsqrt": _real(mpmath.sqrt, 0), "rasin": _real(mpmath.asin, -1, 1),
        "racos": _real(mpmath.acos, -1, 1), "rpow": _rpow}

FUNCTIONS = functions.spellings("mpmath")  # sympy node -> mpmath spelling (symgrad.functions)


def target(dps: int) -> Target:
    def constant(e):
        with mpmath.workdps(dps + 10):
            return mpmath.mpf(str(sp.N(e, dps + 10)))
    return Target("mpmath", FUNCTIONS,
                  {"mp": mpmath, "heaviside": _heaviside, "sign": _sign, **REAL},
                  constant=constant, piecewise=conditional_chain("mp.nan"), logic_and="and",
                  logic_or="or")
