"""The numpy printer (``target``): how a program's expressions run as numpy, vectorised over
the batch of samples; the tensor program's map bodies (``symgrad.tensor.tables``) and its
running error bound (``symgrad.tensor.bound``) are printed with it.

Every node is an array of shape (N,): one Python statement per node, no loop per sample.
"""

from __future__ import annotations

import functools

import numpy
import numpy as np
import scipy.special
import sympy as sp

from .. import functions
from ..codegen import Target

FUNCTIONS = functions.spellings("numpy")  # sympy node -> numpy spelling (symgrad.functions)


def select_pattern(arg: sp.Expr):
    """``X - Max(others)`` -> ("max", X, others); ``Min(others) - X`` -> ("min", X, others)."""
    if not arg.is_Add or len(arg.args) != 2:
        return None
    for a, b in (arg.args, arg.args[::-1]):
        if isinstance(b, sp.Mul) and b.args[0] == -1 and len(b.args) == 2:
            inner = b.args[1]
            if isinstance(inner, sp.Max) and not isinstance(a, (sp.Max, sp.Min)):
                return "max", a, inner.args
            if isinstance(a, sp.Min) and not isinstance(inner, (sp.Max, sp.Min)):
                return "min", inner, a.args
    return None


def _share(arg, members, h0):
    """d Max(members)/d X = Heaviside(X - Max(others)) with a tie shared evenly: at a k-way tie
    each tied argument gets 1/k (H(0) = 1/2 for every one would hand out k/2: no subgradient)."""
    best = functools.reduce(np.maximum, members)
    ties = sum(np.asarray(m == best, dtype=np.result_type(arg)) for m in members)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(arg > 0, 1, np.where(arg < 0, 0, np.where(ties > 2, 1 / ties, h0)))
    return out.astype(np.result_type(arg), copy=False)  # stay in the run's dtype


def _share_min(arg, members, h0):
    return _share(arg, [-m for m in members], h0)


def _node(e, pr):
    """An n-ary Max/Min's derivative (Heaviside(X - Max(others))) shares ties evenly."""
    if isinstance(e, sp.Heaviside):
        sel = select_pattern(e.args[0])
        if sel is not None:
            op, x, others = sel
            h0 = pr(e.args[1]) if len(e.args) > 1 else "0.5"
            fn = "share" if op == "max" else "share_min"
            return f"{fn}({pr(e.args[0])}, [{', '.join(pr(m) for m in (x, *others))}], {h0})"
    return None


def _flatmul(z, rest):
    """z * rest, but 0 where z is exactly 0: z is a step's local derivative on its flat side
    (the path is constant there) or x**y at x = 0 (y > 0), so an infinite or undefined co-factor
    (1/sqrt(relu(w)) at w < 0, log(x) at x = 0) does not make the product NaN."""
    return numpy.where(z == 0, z, z * rest)


def _annul(z, src):
    """``src`` (a product's error bound), but 0 where the factor z is exactly 0 (``_flatmul``)."""
    return numpy.where(z == 0, 0.0, src)


def _annulling(f: sp.Expr) -> bool:
    """A factor whose exact 0 annuls the product: a Heaviside, or a power with a symbolic
    exponent (x**y = 0 at x = 0 for y > 0)."""
    return isinstance(f, sp.Heaviside) or (f.is_Pow and not f.exp.is_number)


def _mul(e: sp.Expr, pr) -> str | None:
    """Products with an annulling factor (``_flatmul``); None: the plain product."""
    for i, f in enumerate(e.args):
        if _annulling(f) and len(e.args) > 1:
            others = e.args[:i] + e.args[i + 1:]
            rest = others[0] if len(others) == 1 else sp.Mul(*others, evaluate=False)
            return f"flatmul({pr(f)}, {pr(rest)})"
    return None


def _piecewise(pairs: list[tuple[str, str]]) -> str:
    out = "numpy.nan"
    for value, cond in reversed(pairs):
        out = value if cond == "True" else f"numpy.where({cond}, {value}, {out})"
    return out


def target(dtype: str) -> Target:
    np_dtype = np.dtype(dtype)
    return Target("numpy", FUNCTIONS,
                  {"numpy": np, "erf": scipy.special.erf, "erfc": scipy.special.erfc,
                   "share": _share, "share_min": _share_min, "flatmul": _flatmul,
                   "annul": _annul},
                  constant=lambda e: np_dtype.type(float(e)), piecewise=_piecewise, node=_node,
                  mul=_mul)
