"""An explanation as a reader gets it: sections of displayed equations (``Line``), rendered
as a LaTeX document, Markdown (KaTeX ``$$``) or HTML (MathML), and shown in Jupyter. The same
formula in every format: each line prints its LaTeX and its MathML from the same expression."""

from __future__ import annotations

import html as _html
import unicodedata
from dataclasses import dataclass, field

import sympy as sp

from .htmlpage import page
from .fold import MAX_TERMS, fold
from .notation import latex, layer_names, mathml, names_from


LONG_LINE = 110  # LaTeX characters of an equation after which its value goes on a new row


@dataclass
class Line:
    """One displayed equation ``lhs = rhs`` (sympy expressions), optionally with its value."""

    lhs: sp.Basic
    rhs: sp.Basic
    value: str | None = None
    comment: str = ""  # plain text after the equation
    tex: str = ""  # a ready LaTeX equation instead of lhs = rhs
    html: str = ""  # its MathML
    max_terms: int = MAX_TERMS  # longer sums are folded (the same in every format)

    def latex(self) -> str:
        return self.tex or f"{latex(self.lhs)} = {latex(fold(self.rhs, self.max_terms))}"


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)
    note: str = ""


@dataclass
class Explanation:
    """A derivation; renders as LaTeX, Markdown or HTML (MathML) and displays in Jupyter."""

    model: str
    sections: list[Section]
    gradient: dict[str, str]  # parameter entry -> exact value (when ``at`` was given)
    torch_gradient: dict[str, str]  # parameter entry -> torch autograd value at the point
    names: dict = field(default_factory=dict)  # step symbol -> display name
    layered: frozenset = frozenset()  # names printed with a layer superscript (``layer_names``)

    def latex(self) -> str:
        """A complete LaTeX document (long sums folded; displays may break across pages)."""
        body = []
        with names_from(self.names), layer_names(self.layered):
            for s in self.sections:
                body.append(rf"\section*{{{tex_escape(s.title)}}}")
                if s.note:
                    body.append(tex_escape(s.note) + "\n")
                for ln in s.lines:
                    eq = ln.latex()
                    if "\\begin{aligned}" not in eq:
                        eq = eq.replace(" = ", " &= ", 1)
                    if ln.value is not None:  # a long line: the value on a row of its own
                        eq += (rf" \\ &= {ln.value}" if len(eq) > LONG_LINE and "&=" in eq
                               else rf" = {ln.value}")
                    body.append("\\begin{align*}\n" + eq + "\n\\end{align*}")
                    if ln.comment:
                        body.append(r"{\small " + tex_escape(ln.comment) + "}\n")
        return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
                "\\usepackage[margin=2cm]{geometry}\n\\allowdisplaybreaks\n"
                "\\begin{document}\n"
                f"\\section*{{symgrad: {tex_escape(self.model)}}}\n"
                + "\n".join(body) + "\n\\end{document}\n")

    def markdown(self) -> str:
        out = [f"# symgrad explain: {self.model}", ""]
        with names_from(self.names), layer_names(self.layered):
            for s in self.sections:
                out += [f"## {s.title}", ""]
                if s.note:
                    out += [s.note, ""]
                for ln in s.lines:
                    val = f" = {ln.value}" if ln.value is not None else ""
                    out += [f"$$ {ln.latex()}{val} $$", ""]
                    if ln.comment:
                        out += [ln.comment, ""]
        return "\n".join(out)

    def html_fragment(self) -> str:
        out = []
        with names_from(self.names), layer_names(self.layered):
            for s in self.sections:
                out.append(f"<h2>{_html.escape(s.title)}</h2>")
                if s.note:
                    out.append(f"<p>{_html.escape(s.note)}</p>")
                for ln in s.lines:
                    if ln.html or ln.lhs is None:
                        math = ln.html
                    elif not any(isinstance(s, sp.MatrixExpr) for s in (ln.lhs, ln.rhs)):
                        math = mathml(sp.Eq(ln.lhs, fold(ln.rhs, ln.max_terms), evaluate=False))
                    else:
                        math = mathml(ln.lhs) + " = " + mathml(fold(ln.rhs, ln.max_terms))
                    val = (f" = <code>{_html.escape(ln.value)}</code>" if ln.value is not None
                           else "")
                    note = f" <span>{_html.escape(ln.comment)}</span>" if ln.comment else ""
                    out.append(f'<p class="eq">{math}{val}{note}</p>')
        return "\n".join(out)

    def html(self) -> str:
        return page(f"symgrad explain: {self.model}", self.html_fragment())

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        return self.html_fragment()

    def __str__(self) -> str:
        return self.markdown()


_TEX_TEXT = {"δ̂": r"$\hat\delta$", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#",
             "δ": r"$\delta$", "θ": r"$\theta$",
             "∂": r"$\partial$", "∘": r"$\circ$", "x̄": r"$\bar{x}$", "…": r"\dots{}",
             "⋮": r"$\vdots$", "σ": r"$\sigma$", "−": "-", "≤": r"$\le$", "^": r"\^{}",
             "<=": r"$\le$", "<": "$<$", ">": "$>$", "μ": r"$\mu$", "x̂": r"$\hat{x}$",
             "ᵀ": r"$^T$"}


def tex_escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, symbols as math."""
    for char, tex in _TEX_TEXT.items():
        text = text.replace(char, tex)
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return "".join(c if ord(c) < 128 else "?" for c in text)  # pdflatex: ASCII only
