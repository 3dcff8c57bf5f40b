"""mpmath spelling of the program at a fixed ``dps`` (50 digits by default).

No longer the oracle (that is ``symgrad.oracle``: certified ball arithmetic with precision
escalation); kept for explanations that print a few digits of small expressions and as a third,
independent spelling of the table in ``tests/test_codegen.py``.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..codegen import Target, compile_program
from ..derive import Program


class Kinks:
    """Heaviside for the oracle that notices exact kinks (argument exactly 0).

    At a kink the derivative does not exist; the oracle then evaluates the sample again with
    H(0) = 0 and H(0) = 1, and any value between the conventions is accepted (the subgradient).
    """

    def __init__(self) -> None:
        self.hit = False
        self.h0 = None  # None: sympy's own H(0) (1/2); else the convention being evaluated

    def heaviside(self, x, h0):
        if x > 0:
            return mpmath.mpf(1)
        if x < 0:
            return mpmath.mpf(0)
        self.hit = True
        return h0 if self.h0 is None else mpmath.mpf(self.h0)


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


REAL = {"nanmax": _nan_propagating(max), "nanmin": _nan_propagating(min),"rlog": _real(mpmath.log, 0, open_lo=True), "rlog1p": _real(mpmath.log1p, -1, open_lo=True),
        "rsqrt": _real(mpmath.sqrt, 0), "rasin": _real(mpmath.asin, -1, 1),
        "racos": _real(mpmath.acos, -1, 1), "rpow": _rpow}

FUNCTIONS = {
    sp.exp: "mp.exp({0})", sp.log: "rlog({0})", log1p: "rlog1p({0})", "pow": "rpow({0}, {1})",
    sp.sin: "mp.sin({0})", sp.cos: "mp.cos({0})", sp.tan: "mp.tan({0})",
    sp.asin: "rasin({0})", sp.acos: "racos({0})", sp.atan: "mp.atan({0})",
    sp.sinh: "mp.sinh({0})", sp.cosh: "mp.cosh({0})", sp.tanh: "mp.tanh({0})",
    sp.erf: "mp.erf({0})", sp.erfc: "mp.erfc({0})", sp.Abs: "abs({0})",
    sp.sign: "sign({0})", sp.Heaviside: "heaviside({0}, {1})", sp.DiracDelta: "0",
    "sqrt": "rsqrt({0})",
    sp.Max: lambda a: "nanmax(" + ", ".join(a) + ")",  # NaN (undefined) propagates, as in numpy
    sp.Min: lambda a: "nanmin(" + ", ".join(a) + ")",
}


def _piecewise(pairs):
    out = "mp.nan"
    for value, cond in reversed(pairs):
        out = value if cond == "True" else f"({value} if {cond} else {out})"
    return out


def target(dps: int) -> Target:
    def constant(e):
        with mpmath.workdps(dps + 10):
            return mpmath.mpf(str(sp.N(e, dps + 10)))
    kinks = Kinks()
    return Target("mpmath", FUNCTIONS,
                  {"mp": mpmath, "heaviside": kinks.heaviside, "sign": _sign, "kinks": kinks,
                   **REAL},
                  constant=constant, piecewise=_piecewise, logic_and="and", logic_or="or")


def compile_oracle(program: Program, dps: int):
    with mpmath.workdps(dps):
        return compile_program(program.assignments, program.leaves,
                               (program.value, *program.gradient), target(dps), fname="oracle")


def run(fn, X: np.ndarray, dps: int, width: int):
    """Exact outputs for each column of X (n_leaves, N).

    Returns (hi, lo, low, high): the double-double value (N, width) and, where the sample sits
    on a kink, the interval [low, high] spanned by the H(0) conventions 0, 1/2, 1 (NaN elsewhere).
    A sample where the model is undefined (log of a negative, 0/0, complex) gives NaN.
    """
    n = X.shape[1]
    hi = np.full((n, width), np.nan)
    lo = np.zeros((n, width))
    low = np.full((n, width), np.nan)
    high = np.full((n, width), np.nan)
    kinks = fn.__globals__["kinks"]
    with mpmath.workdps(dps):
        for j in range(n):
            args = [mpmath.mpf(float(v)) for v in X[:, j]]
            kinks.hit, kinks.h0 = False, None
            outs = _evaluate(fn, args)
            if outs is None:
                continue
            for k, o in enumerate(outs):
                if o is not None:
                    h = float(o)  # +-inf when beyond float64: compare reports it as overflow
                    hi[j, k] = h
                    lo[j, k] = float(o - h) if np.isfinite(h) else 0.0
            if kinks.hit:
                versions = [outs]
                for h0 in (0, 1):
                    kinks.h0 = h0
                    versions.append(_evaluate(fn, args) or [None] * width)
                kinks.h0 = None
                for k in range(width):
                    vals = [float(v[k]) for v in versions if v[k] is not None]
                    if vals:
                        low[j, k], high[j, k] = min(vals), max(vals)
    return hi, lo, low, high


def _evaluate(fn, args):
    """The outputs as real mpf (None for a complex or non-finite one), or None on an error."""
    try:
        outs = fn(args)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    real = []
    for o in outs:
        if isinstance(o, mpmath.mpc):
            real.append(None)
            continue
        o = mpmath.mpf(o)
        real.append(o if mpmath.isfinite(o) else None)
    return real
