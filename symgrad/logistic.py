"""The logistic function as a sympy function of its own, so that models keep it as one step
(``sg.ops.sigmoid``) and the views print it as sigma."""

from __future__ import annotations

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
