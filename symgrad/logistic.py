"""The logistic function as a sympy function of its own, so that models keep it as one step
(``sg.ops.sigmoid``) and the views print it as sigma; and how much the BCE adjoint
sigmoid(z) - y cancels (``adjoint_cancellation``, for ``symgrad.causes``)."""

from __future__ import annotations

import numpy as np
import sympy as sp


class sigma(sp.Function):
    """The logistic function, for display: prints as sigma, differentiates as s (1 - s)."""

    def fdiff(self, argindex=1):
        return sigma(self.args[0]) * (1 - sigma(self.args[0]))

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _latex(self, printer, exp=None):
        inner = printer._print(self.args[0])
        out = rf"\sigma\left({inner}\right)"
        return out if exp is None else rf"{out}^{{{exp}}}"


def adjoint_cancellation(z: float, y: float) -> float:
    """How much the BCE adjoint sigmoid(z) - y cancels, max(sigmoid(z), |y|) / |sigmoid(z) -
    y|, the worse of the two sign conventions (BCE(z, y) = BCE(-z, 1 - y)); 1 + e^|z| at an
    unknown target (NaN). 1: nothing cancels (y = 0 at z << 0: sigmoid(z) is exact to u).

    >>> adjoint_cancellation(-30.0, 0.0), f"{adjoint_cancellation(30.0, 1.0):.3g}"
    (1.0, '1.07e+13')
    """
    if np.isnan(y):
        return 1.0 + float(np.exp(min(abs(z), 700.0)))
    sig = [float(1 / (1 + np.exp(-np.clip(s, -700.0, 700.0)))) for s in (z, -z)]
    worst = 1.0
    for p, q in (sig, sig[::-1]):  # p - y, formed as (1 - y) - q where y > 1/2 (q = 1 - p)
        diff = p - y if y <= 0.5 else (1.0 - y) - q
        worst = max(worst, max(p, abs(y)) / abs(diff) if diff else float("inf"))
    return worst
