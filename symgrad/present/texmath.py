r"""Presentation MathML from the small LaTeX that symgrad writes by hand (textbook rules, table
lookups, layer headings), so that the HTML shows the same formula as the Markdown and LaTeX:
``\frac`` becomes ``<mfrac>``, ``\sqrt`` ``<msqrt>``, ``\sum_{k}`` a sum with its index
under it. Formulas printed from sympy expressions get their MathML from sympy's printer
(``notation.mathml``); this module is for the LaTeX written as text.

>>> ml = tex_to_mathml(r"\delta_{x} = \frac{\delta_{y} \circ m}{1 - p}")
>>> ml.count("<mfrac>"), "<mo>∘</mo>" in ml
(1, True)
"""

from __future__ import annotations

import html
import re

from ..errors import SymgradError

# commands that print as one symbol: an identifier (<mi>) or an operator (<mo>)
IDENTIFIERS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "chi": "χ",
    "psi": "ψ", "omega": "ω", "Sigma": "Σ", "Delta": "Δ", "partial": "∂", "infty": "∞",
    "ell": "ℓ", "cdots": "⋯", "ldots": "…", "dots": "…", "vdots": "⋮",
}
OPERATORS = {
    "circ": "∘", "cdot": "⋅", "times": "×", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "ne": "≠", "neq": "≠", "pm": "±", "to": "→", "in": "∈", "approx": "≈", "odot": "⊙",
    "{": "{", "}": "}", "|": "‖", "lfloor": "⌊", "rfloor": "⌋",
}
LARGE = {"sum": "∑", "prod": "∏", "max": "max", "min": "min", "arg": "arg"}
SPACES = {",": "0.167em", ":": "0.222em", ";": "0.278em", " ": "0.25em", "quad": "1em",
          "qquad": "2em", "!": "0em"}
ACCENTS = {"hat": "^", "bar": "\u00af", "tilde": "~", "vec": "→", "dot": "˙"}
TEXT = {"mathrm": "normal", "text": None, "operatorname": "normal", "mathit": "italic",
        "mathbf": "bold", "textrm": None}
FENCE_SIZES = {"big": "1.2em", "Big": "1.6em", "bigg": "2.1em", "Bigg": "2.6em"}
# (has a subscript, has a superscript) -> (its tag, its tag on a large operator: limits)
SCRIPT_TAGS = {(True, True): ("msubsup", "munderover"), (True, False): ("msub", "munder"),
               (False, True): ("msup", "mover")}
MINUS = "\u2212"  # the minus sign, not the hyphen a keyboard types
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|[A-Za-z]|\S")


class _Parser:
    """A recursive-descent reader of one LaTeX formula into MathML text."""

    def __init__(self, tex: str) -> None:
        self.tex = tex
        found = list(_TOKEN.finditer(tex))
        self.tokens = [m.group() for m in found]
        self.starts = [m.start() for m in found] + [len(tex)]
        self.i = 0

    def fail(self, why: str) -> SymgradError:
        return SymgradError(f"tex_to_mathml: {why} in {self.tex!r} (write it with the commands "
                            "symgrad.present.texmath knows, or print it from sympy)")

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end")
        self.i += 1
        return tok

    def group_text(self, spaces: bool = False) -> str:
        """The raw text of a ``{...}`` argument (for \\mathrm, \\text), escapes resolved;
        ``spaces``: kept as written (\\text is text; \\mathrm, like math, drops them)."""
        if self.take() != "{":
            raise self.fail("a text command without {…}")
        depth, out, first = 1, [], self.i
        while True:
            tok = self.take()
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth == 0:
                    if spaces:
                        raw = self.tex[self.starts[first]:self.starts[self.i - 1]]
                        return re.sub(r"\\([_{}%&# ])", r"\1", raw)
                    return "".join(out)
            out.append(tok[1:] if tok in ("\\_", "\\{", "\\}", "\\%", "\\&", "\\#")
                       else " " if tok == "\\ " else tok)

    def sequence(self, stop: tuple[str, ...] = ("}",)) -> list[str]:
        """Items up to (not including) a token in ``stop`` or the end."""
        items: list[str] = []
        while self.peek() is not None and self.peek() not in stop:
            items.append(self.scripted())
        return items

    def scripted(self) -> str:
        base = self.atom()
        sub = sup = None
        while self.peek() in ("_", "^", "'"):
            tok = self.take()
            if tok == "'":
                sup = (sup or "") + "<mo>′</mo>"
            elif tok == "_":
                sub = self.atom()
            else:
                sup = self.atom()
        if sub is None and sup is None:
            return base
        sup = _row([sup]) if sup is not None and sup.startswith("<mo>′") else sup
        large = base.startswith("<mo movablelimits")
        tag = SCRIPT_TAGS[(sub is not None, sup is not None)][large]
        return f"<{tag}>{base}{sub or ''}{sup or ''}</{tag}>"

    def atom(self) -> str:
        """One atom: a ``{group}`` as an mrow (a command's argument), a token, a command with
        its arguments."""
        tok = self.take()
        if tok == "{":
            inner = self.sequence()
            self.take()
            return _row(inner)
        if tok[0].isdigit():
            return f"<mn>{tok}</mn>"
        if tok.isalpha():
            return f"<mi>{tok}</mi>"
        if tok == "'":
            return "<mo>′</mo>"
        if not tok.startswith("\\"):
            return f"<mo>{html.escape(MINUS if tok == '-' else tok)}</mo>"
        name = tok[1:]
        if name == "frac":
            return f"<mfrac>{_row([self.atom()])}{_row([self.atom()])}</mfrac>"
        if name == "sqrt":
            if self.peek() == "[":
                self.take()
                index = self.sequence(("]",))
                self.take()
                return f"<mroot>{_row([self.atom()])}{_row(index)}</mroot>"
            return f"<msqrt>{self.atom()}</msqrt>"
        if name in ACCENTS:
            return (f'<mover accent="true">{self.atom()}<mo>{ACCENTS[name]}</mo>'
                    "</mover>")
        if name in TEXT:
            text = html.escape(self.group_text(spaces=TEXT[name] is None))
            if TEXT[name] is None:
                return f"<mtext>{text}</mtext>"
            return f'<mi mathvariant="{TEXT[name]}">{text}</mi>'
        if name == "mathrel":  # += as one relation: no space inside it
            text = self.group_text()
            if self.peek() == "=":
                text += self.take()
            return f"<mo>{html.escape(text)}</mo>"

        if name in IDENTIFIERS:
            return f"<mi>{IDENTIFIERS[name]}</mi>"
        if name in OPERATORS:
            return f"<mo>{html.escape(OPERATORS[name])}</mo>"
        if name in LARGE:
            return f'<mo movablelimits="true">{LARGE[name]}</mo>'
        if name in SPACES:
            return f'<mspace width="{SPACES[name]}"/>'
        if name in FENCE_SIZES or name in ("left", "right"):
            fence = self.take()
            fence = fence[1:] if fence in ("\\{", "\\}", "\\|") else fence
            size = FENCE_SIZES.get(name)
            attrs = f' minsize="{size}" maxsize="{size}"' if size else ""
            return "" if fence == "." else f"<mo{attrs}>{html.escape(fence)}</mo>"
        if name == "begin":
            return self.environment()
        if name == "_":
            return "<mi>_</mi>"
        raise self.fail(f"unknown command \\{name}")

    def environment(self) -> str:
        env = self.group_text()
        rows: list[list[str]] = [[]]
        cell: list[str] = []
        while True:
            tok = self.peek()
            if tok is None:
                raise self.fail(f"\\begin{{{env}}} without \\end")
            if tok == "\\end":
                self.take()
                self.group_text()
                break
            if tok in ("&", "\\\\"):
                self.take()
                rows[-1].append(_row(cell))
                cell = []
                if tok == "\\\\":
                    rows.append([])
                continue
            cell.append(self.scripted())
        rows[-1].append(_row(cell))
        body = "".join("<mtr>" + "".join(f"<mtd>{c}</mtd>" for c in r) + "</mtr>"
                       for r in rows)
        return f'<mtable columnalign="right left">{body}</mtable>'


def _row(items: list[str]) -> str:
    items = [i for i in items if i]
    return items[0] if len(items) == 1 and items[0].startswith("<mrow>") else \
        "<mrow>" + "".join(items) + "</mrow>"


def tex_to_mathml(tex: str, *, display: bool = True) -> str:
    """A complete ``<math>`` element for a LaTeX formula (the subset symgrad writes).

    Arguments:
        tex: the formula, e.g. ``\\delta_{Q} = \\frac{\\delta_S K}{\\sqrt{d}}``.
        display: a block formula (``display="block"``) rather than an inline one.
    Returns:
        The MathML text; the LaTeX is kept as its annotation.
    Raises:
        SymgradError: a command this converter does not know, or unbalanced braces.
    """
    mode = ' display="block"' if display else ""
    return (f'<math xmlns="http://www.w3.org/1998/Math/MathML"{mode}><semantics>{tex_fragment(tex)}'
            f'<annotation encoding="application/x-tex">{html.escape(tex)}</annotation>'
            "</semantics></math>")


def tex_fragment(tex: str) -> str:
    """The MathML of a formula as one ``<mrow>``, without ``<math>`` (to nest in another)."""
    parser = _Parser(tex)
    items = parser.sequence(("}",))
    if parser.peek() is not None:
        raise parser.fail("an unbalanced }")
    return _row(items)
