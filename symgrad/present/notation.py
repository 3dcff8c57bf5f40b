"""How symbols and steps print: LaTeX and MathML views of the same sympy expressions.

A user's ``x1`` prints as x_1; a layer's ``W1_{i,j}`` (``layer_names``) as W^{(1)}_{i,j};
intermediates print as their step's label; sigmoid as sigma. Used by ``explain`` and reports.

>>> import sympy as sp
>>> with layer_names({"W1"}):
...     latex(sp.Symbol("W1_{0,3}") * sp.Symbol("x1"))
'W^{(1)}_{0,3} x_{1}'
"""

from __future__ import annotations

import contextlib
import re
from xml.dom.minidom import parseString

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.mathml import MathMLPresentationPrinter

from ..errors import SymgradError
from ..graph import Intermediate
from .names import GREEK, ORDINAL, applied_name, is_word, layer_names, ordinal, split_name
from .names import GREEK_LETTERS as _GREEK, tex_base, tex_sup, updated
from .texmath import tex_fragment

__all__ = ["GREEK", "Raw", "applied_name", "latex", "layer_names", "mathml", "name_of",
           "names_from", "ordinal", "split_name", "tex_base", "tex_name", "tex_sup"]

_IDENT = re.compile(r"θ|[A-Za-z_][A-Za-z0-9_.]*")  # a name inside other notation


def tex_name(name: str) -> str:
    """A program name in LaTeX: ``d_<name>`` (an adjoint) as ``\bar{...}``."""
    applied = applied_name(name)
    if applied:  # a function of named arrays, as the layer rules write it: θ(h), lse(Z)
        func, args = applied
        head = r"\theta" if func == "θ" else tex_base(func) if len(func) > 1 else func
        return head + "(" + ", ".join(tex_name(a) for a in args) + ")"
    if "(" in name:  # other notation: each name in it as a name (W1_out never W1 sub o)
        return _IDENT.sub(lambda m: r"\theta" if m[0] == "θ" else tex_name(m[0]), name)
    if name.startswith("delta_") and len(name) > 6:  # a layer's delta: delta_{its name}
        return rf"\delta_{{{tex_name(name[6:])}}}"
    if name.startswith("d_") and len(name) > 2:
        base, sup, sub = split_name(name[2:])
        out = rf"\bar{{{tex_base(base)}}}"
    else:
        base, sup, sub = split_name(name)
        out = tex_base(base)
    if sup:
        out += f"^{{{tex_sup(sup)}}}"
    if sub:
        out += f"_{{{sub}}}"
    return out


_NAMES: dict = {}  # symbol -> display name, set by ``names_from`` for one printing


def name_of(sym: sp.Symbol) -> str:
    """The name a symbol prints by: ``names_from``'s, a step's label, else its own."""
    if sym in _NAMES:
        return _NAMES[sym]
    if isinstance(sym, Intermediate):
        return sym.label or sym.op
    return sym.name


def _coefficient_of_words(expr: sp.Mul):
    """(c, rest) of ``expr = c rest`` where a number c != ±1 would run into a word name
    (``10 emb_keep`` reads as one token "10emb_keep"): printed apart, as c · rest; else None."""
    c, rest = expr.as_coeff_Mul()
    if not isinstance(c, sp.Rational) or abs(c) == 1 or rest.is_Number:
        return None
    return (c, rest) if any(is_word(name_of(q)) for q in rest.free_symbols) else None


def _is_word(expr) -> bool:
    """Whether a factor prints as an upright word (``sigmoid``, ``log(a)``), or a power of one."""
    base = expr.base if expr.is_Pow else expr
    if isinstance(base, sp.Symbol):
        return not isinstance(base, Raw) and is_word(name_of(base))
    return base.is_Function and not isinstance(base, sp.exp)  # e^x is a letter


class _Latex(LatexPrinter):
    def _print_Mul(self, expr):
        apart = _coefficient_of_words(expr)
        if apart is None:
            return super()._print_Mul(expr)
        c, rest = apart
        p, q = abs(c.p), c.q
        head = ("-" if c < 0 else "") + (rf"\frac{{{p}}}{{{q}}}" if q != 1 else str(p))
        return rf"{head} \cdot {self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Symbol):  # names from _print_Symbol, never an object's _latex
            return self._print_Symbol(expr)
        return super()._print(expr, **kwargs)

    def _print_sigma(self, expr, exp=None):
        out = rf"\sigma\left({self._print(expr.args[0])}\right)"
        return out if exp is None else rf"{out}^{{{exp}}}"

    def _print_AppliedBase(self, expr, exp=None):  # an op-table op by its name (symgrad.optable)
        out = rf"{expr.entry.latex}\left({self._print(expr.args[0])}\right)"
        return out if exp is None else rf"{out}^{{{exp}}}"

    def _print_Symbol(self, expr, style="plain"):
        if isinstance(expr, Raw):
            return expr.tex
        return tex_name(name_of(expr))

    _print_Dummy = _print_Symbol

    def _print_Derivative(self, expr):
        (var, count), = expr.variable_count
        power = "" if count == 1 else f"^{{{count}}}"
        return (rf"\frac{{\partial{power} {self._print(expr.expr)}}}"
                rf"{{\partial {self._print(var)}{power}}}")


class _MathML(MathMLPresentationPrinter):
    def _print_Symbol(self, sym, style="plain"):
        name = name_of(sym)
        applied = applied_name(name)
        if applied:  # a function of named arrays: lse(W2_out), θ(h)
            func, args = applied
            inner = self.dom.createElement("mrow")
            for k, a in enumerate(args):
                if k:
                    inner.appendChild(self._mo(","))
                inner.appendChild(self._print_Symbol(sp.Symbol(a)))
            return self._applied(_GREEK.get(func, func), self._paren(inner))
        if name.startswith("delta_") and len(name) > 6:  # a layer's delta: delta_{its name}
            return self._row(self._print_Symbol(sp.Symbol("delta")),
                             self._print_Symbol(sp.Symbol(name[6:])), tag="msub")
        adjoint = name.startswith("d_") and len(name) > 2
        base, sup, sub = split_name(name[2:] if adjoint else name)
        mi = self._leaf("mi", _GREEK.get(base, base))
        if adjoint:
            mi = self._row(mi, self._mo("\u00af"), tag="mover")
            mi.setAttribute("accent", "true")
        if not sup and not sub:
            return mi
        tag = "msubsup" if (sup and sub) else ("msub" if sub else "msup")
        return self._row(mi, *(self._script(t) for t in (sub, sup) if t), tag=tag)

    def _script(self, text: str):
        """A sub- or superscript: digits as a number, an ordinal's ``(6th)`` as the number and
        its upright suffix, anything else as an identifier."""
        if ORDINAL.search(text):
            row = self.dom.createElement("mrow")
            for part in re.split(r"(\d+(?:st|nd|rd|th)\b|[(),])", text):
                m = ORDINAL.fullmatch(part)
                if m:
                    for tag, t in (("mn", m.group(1)), ("mtext", m.group(2))):
                        row.appendChild(self._leaf(tag, t))
                elif part.strip():
                    row.appendChild(self._mo(part.strip()) if part in "()," else
                                    self._script(part.strip()))
            return row
        return self._leaf("mn" if re.fullmatch(r"[\d,;()]+", text) else "mi", text)

    _print_Dummy = _print_Symbol

    def _print_Derivative(self, e):
        """∂f/∂x as a fraction (sympy's default writes the total-derivative ⅆ)."""
        (var, count), = e.variable_count
        rows = [self._row(self._mo("∂"), self._print(inner)) for inner in (e.expr, var)]
        return self._row(*(row if count == 1 else
                           self._row(row, self._print(sp.Integer(count)), tag="msup")
                           for row in rows), tag="mfrac")

    def _print_Raw(self, sym):
        """The MathML of the symbol's LaTeX (the same formula in both views); its plain text
        where the LaTeX is beyond the small converter."""
        try:
            return self.dom.importNode(parseString(tex_fragment(sym.tex)).documentElement, True)
        except SymgradError:
            return self._leaf("mi", sym.text)

    def _print_Mul(self, expr):
        """As sympy's, but split into numerator and denominator as the LaTeX printer does
        (``fraction(exact=True)``: e^{-|z|} stays a factor, not a denominator e^{|z|}); a
        number before a word name apart, as c · rest (``_coefficient_of_words``)."""
        row = self.dom.createElement("mrow")
        apart = _coefficient_of_words(expr)
        if apart is not None:
            c, rest = apart
            if c < 0:
                row.appendChild(self._mo("-"))
            row.appendChild(self._print(abs(c)))
            row.appendChild(self._mo("\u22c5"))
            row.appendChild(self.parenthesize(rest, PRECEDENCE["Mul"], strict=True))
            return row
        if expr.could_extract_minus_sign():
            row.appendChild(self._mo("-"))
            expr = -expr
        numer, denom = sp.fraction(expr, exact=True)
        if denom is not sp.S.One:
            row.appendChild(self._row(self._print(numer), self._print(denom), tag="mfrac"))
            return row
        coeff, terms = expr.as_coeff_mul()
        if coeff is sp.S.One and len(terms) == 1:
            row.appendChild(self._print(terms[0]))
            return row
        if not any(isinstance(t, sp.Derivative) for t in terms):  # a chain rule keeps its order,
            terms = sp.Mul._from_args(terms).as_ordered_factors()  # its fractions unbracketed
        factors = ([self._print(coeff)] if coeff != 1 else []) + [  # (as in LaTeX; newuser6)
            self.parenthesize(t, 0 if t.is_Derivative else PRECEDENCE["Mul"]) for t in terms]
        words = [False] * (coeff != 1) + [_is_word(t) for t in terms]
        for k, f in enumerate(factors):
            if k:
                row.appendChild(self._mo(self.mathml_tag(expr)))
            if k and (words[k] or words[k - 1]):  # "sigmoid x", never "sigmoidx" (newuser6 L3)
                space = row.appendChild(self.dom.createElement("mspace"))
                space.setAttribute("width", "0.1667em")  # LaTeX's thin space \,
            row.appendChild(f)
        return row

    def _leaf(self, tag: str, text: str):
        """An element ``<tag>text</tag>`` (mi, mn, mo, mtext)."""
        node = self.dom.createElement(tag)
        node.appendChild(self.dom.createTextNode(text))
        return node

    def _mo(self, text: str):
        return self._leaf("mo", text)

    def _applied(self, name: str, args):
        """``name(args)``: a named function applied to its parenthesized argument node."""
        return self._row(self._leaf("mi", name), args)

    def _print_Piecewise(self, e):
        """A brace over one row per branch, "value  for condition" (the last "otherwise"), as
        the LaTeX printer's cases (sympy's MathML writes piecewise((...), True) instead)."""
        table = self.dom.createElement("mtable")
        table.setAttribute("columnalign", "left left")
        for value, cond in e.args:
            when = self._text("otherwise" if cond is sp.true else "for\u2009")
            if cond is not sp.true:
                when = self._row(when, self._print(cond))
            table.appendChild(self._row(*(self._row(c, tag="mtd") for c in
                                          (self._print(value), when)), tag="mtr"))
        return self._row(self._mo("{"), table)

    def _row(self, *nodes, tag: str = "mrow"):
        row = self.dom.createElement(tag)
        for node in nodes:
            row.appendChild(node)
        return row

    def _text(self, text: str):
        return self._leaf("mtext", text)

    def mathml_tag(self, e):  # sympy writes < and > raw, which breaks the page's markup
        tag = super().mathml_tag(e)
        return {"<": "&lt;", ">": "&gt;"}.get(tag, tag)

    def _print_HadamardPower(self, e):
        """``A^{∘ n}``, the elementwise power, as the LaTeX printer writes it."""
        return self._row(self.parenthesize(e.base, PRECEDENCE["Pow"], strict=True),
                         self._row(self._mo("\u2218"), self._print(e.exp)), tag="msup")

    def _print_Heaviside(self, e):
        """θ(x), as the LaTeX printer writes it (its value at 0 is not shown)."""
        return self._applied("θ", self._paren(self._print(e.args[0])))

    def _print_sigma(self, e):
        return self._applied("σ", self._print(sp.Tuple(*e.args)) if len(e.args) > 1 else
                             self._paren(self._print(e.args[0])))

    def _print_AppliedBase(self, e):  # an op-table op by its name (symgrad.optable)
        return self._applied(e.entry.mathml, self._paren(self._print(e.args[0])))

    def _paren(self, inner):
        return self._row(self._mo("("), inner, self._mo(")"))


def names_from(mapping) -> contextlib.AbstractContextManager[None]:
    """``with names_from(graph): latex(...)`` prints each step by its unique program name
    (``ln_mean_3``) rather than its op's label, so that equal labels stay distinguishable."""
    return updated(_NAMES, mapping)


def latex(expr) -> str:
    """LaTeX of an expression with symgrad's symbol names."""
    return _Latex({"mul_symbol": None, "order": "none"}).doprint(sp.sympify(expr))


def mathml(expr, *, display: bool = False) -> str:
    """A complete ``<math>`` element (presentation MathML) for the expression."""
    inner = _MathML({"order": "none"}).doprint(sp.sympify(expr))
    mode = ' display="block"' if display else ""
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML"{mode}>{inner}</math>'


class Raw(sp.Symbol):
    """A display-only symbol printed verbatim: ``\\cdots`` in a folded sum, a lookup."""

    def __new__(cls, tex: str, text: str):
        obj = super().__new__(cls, f"raw{abs(hash(tex))}")
        obj.tex, obj.text = tex, text
        return obj

    def _latex(self, printer) -> str:
        return self.tex
