"""A display copy of an expression that fits on a line: long sums folded to a + b + ⋯ + z, a
table lookup (an embedding's Piecewise) as one indexed name ``E_{id, j}``, a 0/1 Piecewise as an
Iverson bracket. The same copy prints in every format (``notation``'s LaTeX and MathML).

>>> import sympy as sp
>>> latex(fold(sp.Add(*sp.symbols("a b c d e f"))))
'a + b + \\\\cdots + f'
"""

from __future__ import annotations

import re

import sympy as sp

from .names import split_name, stem_of, tex_base, tex_sup
from .notation import Raw, latex, name_of


DOTS = Raw(r"\cdots", "⋯")
MAX_TERMS = 4  # sums of more terms are shown as a + b + ⋯ + z


def fold(expr, max_terms: int = MAX_TERMS):
    """A display copy of ``expr`` that fits on a line: long sums folded to their first two
    terms, ``⋯`` and the last; a table lookup (an embedding's Piecewise) as ``E_{id, j}``."""
    expr = sp.sympify(expr)
    if isinstance(expr, (sp.MatrixBase, sp.MatrixExpr)) or not isinstance(expr, sp.Basic):
        return expr

    def fold_add(e):
        args = list(e.args)
        if max_terms < 3:
            return sp.Add(*args[:max(max_terms, 1)], DOTS, evaluate=False)
        return sp.Add(*args[:max_terms - 2], DOTS, args[-1], evaluate=False)

    def fold_lookup(e):
        first, cond = e.args[0]
        index = cond.lhs if isinstance(cond, sp.Eq) else None
        if index is None or not isinstance(first, sp.Symbol):
            return e
        base, sup, sub = split_name(name_of(first))
        number, semi, sub = sub.rpartition(";")  # a user's x1_{i,j}: x_{1;i,j}, index after ;
        picks = [v for v, c in e.args if isinstance(c, sp.Eq)]  # the last: otherwise (NaN)
        heads = [(stem_of(name_of(v)), name_of(v).partition("#")[2])  # linear#4: a 4th step
                 if isinstance(v, sp.Symbol) else v for v in picks]
        if len(set(heads)) > 1:  # distinct steps, no one array: the tuple of them, indexed
            tex = rf"\left({latex(first)}, \ldots, {latex(picks[-1])}\right)_{{{latex(index)}}}"
            return Raw(tex, f"({name_of(first)}, …, {picks[-1]})[{index}]")
        subs = [split_name(name_of(v))[2].rpartition(";")[2].split(",") for v in picks]
        varies = [k for k in range(len(subs[0]))
                  if len({tuple(s)[k:k + 1] for s in subs}) > 1]  # the looked-up position
        # the index at the position the pieces differ in: an embedding's row E_{id,j}, a
        # cross-entropy pick's column logits_{i,t_i}
        at = varies[0] if len(varies) == 1 else 0
        plain = re.sub(r"_\{([\d,]+)\}", r"[\1]", str(index))  # ids_{7} -> ids[7]
        texs, texts = sub.split(","), sub.split(",")
        texs[at:at + 1], texts[at:at + 1] = [latex(index)], [plain]
        tex = (tex_base(base) + (f"^{{{tex_sup(sup)}}}" if sup else "") + "_{" + number + semi
               + ",".join(texs) + "}")
        return Raw(tex, f"{stem_of(name_of(first))}[{', '.join(texts)}]")

    def indicator(e):
        nonzero = [(v, c) for v, c in e.args if v != 0]
        if len(nonzero) != 1 or nonzero[0][1] is sp.true:
            return e
        value, cond = nonzero[0]
        return value * Raw(rf"[{latex(cond)}]", f"[{cond}]")  # Iverson bracket

    try:
        expr = expr.replace(lambda e: isinstance(e, sp.Piecewise)
                            and all(v.is_Number for v, _ in e.args), indicator)
        expr = expr.replace(lambda e: isinstance(e, sp.Piecewise) and len(e.args) > 3,
                            fold_lookup)
        return expr.replace(lambda e: isinstance(e, sp.Add) and len(e.args) > max_terms,
                            fold_add)
    except (TypeError, ValueError, AttributeError):
        return expr
