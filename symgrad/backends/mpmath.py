"""The oracle: the exact value and gradient evaluated with mpmath at high precision.

The same program, one sample at a time, at ``dps`` significant digits (default 50). Results come
back as double-double (hi, lo) float64 pairs so that errors of float64 backends are measured to
far below one ULP. A complex or non-finite result is NaN: the model is undefined there.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..codegen import Target, compile_program
from ..derive import Program


def _heaviside(x, h0):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(0) if x < 0 else h0)


def _sign(x):
    return mpmath.sign(x)


FUNCTIONS = {
    sp.exp: "mp.exp({0})", sp.log: "mp.log({0})", log1p: "mp.log1p({0})",
    sp.sin: "mp.sin({0})", sp.cos: "mp.cos({0})", sp.tan: "mp.tan({0})",
    sp.asin: "mp.asin({0})", sp.acos: "mp.acos({0})", sp.atan: "mp.atan({0})",
    sp.sinh: "mp.sinh({0})", sp.cosh: "mp.cosh({0})", sp.tanh: "mp.tanh({0})",
    sp.erf: "mp.erf({0})", sp.erfc: "mp.erfc({0})", sp.Abs: "abs({0})",
    sp.sign: "sign({0})", sp.Heaviside: "heaviside({0}, {1})", sp.DiracDelta: "0",
    "sqrt": "mp.sqrt({0})",
    sp.Max: lambda a: "max(" + ", ".join(a) + ")", sp.Min: lambda a: "min(" + ", ".join(a) + ")",
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
    return Target("mpmath", FUNCTIONS,
                  {"mp": mpmath, "heaviside": _heaviside, "sign": _sign},
                  constant=constant, piecewise=_piecewise, logic_and="and", logic_or="or")


def compile_oracle(program: Program, dps: int):
    with mpmath.workdps(dps):
        return compile_program(program.assignments, program.leaves,
                               (program.value, *program.gradient), target(dps), fname="oracle")


def run(fn, X: np.ndarray, dps: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact outputs for each column of X (n_leaves, N): (hi, lo) arrays of shape (N, width).

    A sample where the model is undefined (log of a negative, 0/0, complex) gives NaN.
    """
    n = X.shape[1]
    hi = np.full((n, width), np.nan)
    lo = np.zeros((n, width))
    with mpmath.workdps(dps):
        for j in range(n):
            try:
                outs = fn([mpmath.mpf(float(v)) for v in X[:, j]])
            except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                continue
            for k, o in enumerate(outs):
                if isinstance(o, mpmath.mpc):
                    continue
                o = mpmath.mpf(o)
                if not mpmath.isfinite(o):
                    continue
                h = float(o)  # +-inf when beyond float64: compare reports it as overflow
                hi[j, k] = h
                lo[j, k] = float(o - h) if np.isfinite(h) else 0.0
    return hi, lo
