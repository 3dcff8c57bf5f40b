"""How symbols and steps print: LaTeX and MathML views of the same sympy expressions.

``W1_{i,j}`` prints as W^{(1)}_{i,j}; intermediates print as their step's label; sigmoid as
sigma. Used by ``explain`` and the reports.

>>> import sympy as sp
>>> latex(sp.Symbol("W1_{0,3}") * sp.Symbol("x_{3}"))
'W^{(1)}_{0,3} x_{3}'
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter

from .graph import Intermediate

_NAME = re.compile(r"^(?P<base>[A-Za-z]+?)(?P<num>\d*)"
                   r"(?:_\{(?P<idx>[\d,]+)\}|_(?P<sub>[A-Za-z][A-Za-z0-9]*))?$")


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


def split_name(name: str) -> tuple[str, str, str]:
    """``W1_{0,3}`` -> (``W``, ``(1)``, ``0,3``); names that do not parse stay whole."""
    m = _NAME.match(name)
    if not m:
        return name, "", ""
    sup = f"({m.group('num')})" if m.group("num") else ""
    return m.group("base"), sup, m.group("idx") or m.group("sub") or ""


def _name_of(sym: sp.Symbol) -> str:
    if isinstance(sym, Intermediate):
        return sym.label or sym.op
    return sym.name


class _Latex(LatexPrinter):
    def _print_Symbol(self, expr, style="plain"):
        base, sup, sub = split_name(_name_of(expr))
        out = sp.latex(sp.Symbol(base)) if len(base) > 1 else base
        if sup:
            out += f"^{{{sup}}}"
        if sub:
            out += f"_{{{sub}}}"
        return out

    _print_Dummy = _print_Symbol

    def _print_Derivative(self, expr):
        (var, count), = expr.variable_count
        power = "" if count == 1 else f"^{{{count}}}"
        return (rf"\frac{{\partial{power} {self._print(expr.expr)}}}"
                rf"{{\partial {self._print(var)}{power}}}")


class _MathML(MathMLPresentationPrinter):
    def _print_Symbol(self, sym, style="plain"):
        base, sup, sub = split_name(_name_of(sym))
        mi = self.dom.createElement("mi")
        mi.appendChild(self.dom.createTextNode(_GREEK.get(base, base)))
        if not sup and not sub:
            return mi
        tag = "msubsup" if (sup and sub) else ("msub" if sub else "msup")
        node = self.dom.createElement(tag)
        node.appendChild(mi)
        for text in ([sub] if sub else []) + ([sup] if sup else []):
            mn = self.dom.createElement("mi" if text.isalpha() else "mn")
            mn.appendChild(self.dom.createTextNode(text))
            node.appendChild(mn)
        return node

    _print_Dummy = _print_Symbol

    def _print_sigma(self, e):
        row = self.dom.createElement("mrow")
        mi = self.dom.createElement("mi")
        mi.appendChild(self.dom.createTextNode("σ"))
        row.appendChild(mi)
        row.appendChild(self._print(sp.Tuple(*e.args)) if len(e.args) > 1 else
                        self._paren(self._print(e.args[0])))
        return row

    def _paren(self, inner):
        row = self.dom.createElement("mrow")
        for t in ("(", None, ")"):
            if t is None:
                row.appendChild(inner)
            else:
                mo = self.dom.createElement("mo")
                mo.appendChild(self.dom.createTextNode(t))
                row.appendChild(mo)
        return row


_GREEK = {"sigma": "σ", "delta": "δ", "alpha": "α", "beta": "β", "gamma": "γ", "mu": "μ",
          "epsilon": "ε", "theta": "θ", "lambda": "λ"}


def latex(expr) -> str:
    """LaTeX of an expression with symgrad's symbol names."""
    return _Latex({"mul_symbol": None, "order": "none"}).doprint(sp.sympify(expr))


def mathml(expr, *, display: bool = False) -> str:
    """A complete ``<math>`` element (presentation MathML) for the expression."""
    inner = _MathML().doprint(sp.sympify(expr))
    mode = ' display="block"' if display else ""
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML"{mode}>{inner}</math>'
