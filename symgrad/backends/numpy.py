"""The model's value and gradient program as numpy, vectorised over the batch of samples.

Every node is an array of shape (N,): one Python statement per node, no loop per sample.
Also evaluates the running error bound E (``symgrad.bounds``) in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.special
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .. import bounds
from ..codegen import Target, compile_program
from ..derive import Program

# sympy node -> numpy spelling (everything not here is "not supported")
FUNCTIONS = {
    sp.exp: "numpy.exp({0})", expm1: "numpy.expm1({0})", sp.log: "numpy.log({0})", log1p: "numpy.log1p({0})",
    sp.sin: "numpy.sin({0})", sp.cos: "numpy.cos({0})", sp.tan: "numpy.tan({0})",
    sp.asin: "numpy.arcsin({0})", sp.acos: "numpy.arccos({0})", sp.atan: "numpy.arctan({0})",
    sp.sinh: "numpy.sinh({0})", sp.cosh: "numpy.cosh({0})", sp.tanh: "numpy.tanh({0})",
    sp.erf: "erf({0})", sp.erfc: "erfc({0})", sp.Abs: "numpy.abs({0})",
    sp.sign: "numpy.sign({0})", sp.Heaviside: "numpy.heaviside({0}, {1})",
    sp.DiracDelta: "numpy.zeros_like({0})", "sqrt": "numpy.sqrt({0})",
    sp.Max: lambda a: _fold("numpy.maximum", a), sp.Min: lambda a: _fold("numpy.minimum", a),
}


def _fold(fn: str, args: list[str]) -> str:
    out = args[0]
    for a in args[1:]:
        out = f"{fn}({out}, {a})"
    return out


def _share(arg, members, h0):
    """d Max(members)/d X = Heaviside(X - Max(others)) with a tie shared evenly: at a k-way tie
    each tied argument gets 1/k (H(0) = 1/2 for every one would hand out k/2: no subgradient)."""
    best = members[0]
    for m in members[1:]:
        best = np.maximum(best, m)
    ties = sum(np.asarray(m == best, dtype=np.result_type(arg)) for m in members)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(arg > 0, 1, np.where(arg < 0, 0, np.where(ties > 2, 1 / ties, h0)))
    return out.astype(np.result_type(arg), copy=False)  # stay in the run's dtype


def _share_min(arg, members, h0):
    return _share(arg, [-m for m in members], h0)


def _node(e, pr):
    """An n-ary Max/Min's derivative (Heaviside(X - Max(others))) shares ties evenly."""
    if isinstance(e, sp.Heaviside):
        from .arb import _select_pattern
        sel = _select_pattern(e.args[0])
        if sel is not None:
            op, x, others = sel
            h0 = pr(e.args[1]) if len(e.args) > 1 else "0.5"
            fn = "share" if op == "max" else "share_min"
            return f"{fn}({pr(e.args[0])}, [{', '.join(pr(m) for m in (x, *others))}], {h0})"
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
                   "share": _share, "share_min": _share_min},
                  constant=lambda e: np_dtype.type(float(e)), piecewise=_piecewise, node=_node)


def compile_gradient(program: Program, dtype: str):
    """``f(X) -> [value, grad_0, ...]`` for X of shape (n_leaves, N) in ``dtype``."""
    return compile_program(program.assignments, program.leaves,
                           (program.value, *program.gradient), target(dtype), fname="gradient")


def compile_bound(program: Program):
    """``f(X) -> [E_value, E_grad_0, ...]`` in float64 (units of the unit roundoff)."""
    return bounds.compile_bound(program.assignments, program.leaves,
                                (program.value, *program.gradient), target("float64"))


def run(fn, X: np.ndarray, dtype: str) -> np.ndarray:
    """Evaluate a compiled program on X (n_leaves, N); returns (N, n_outputs) float64."""
    n = X.shape[1]
    rows = list(X.astype(dtype))
    with np.errstate(all="ignore"):
        outs = fn(rows)
    return np.stack([np.broadcast_to(np.asarray(o, dtype=np.float64), (n,)) for o in outs],
                    axis=1)
