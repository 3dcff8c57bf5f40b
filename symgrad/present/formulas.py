"""The pieces every formula view of the report and ``explain`` shares: ``Formula`` (one line, in
LaTeX and MathML), ``eq_formula``, and the backward rule of each op with no matrix form in index
notation (``INDEX_RULES``, ``index_rules_of``). The formulas of a plain model are
``present/step_formulas``; of a program of tensor operations, ``present/tensor_formulas``.

>>> eq_formula(sp.Symbol("a"), sp.Symbol("b") + 1).latex
'a = 1 + b'
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..optable import OPS
from .fold import fold
from .notation import latex, mathml
from .texmath import tex_to_mathml

MAX_ADJOINTS = 8  # steps of the computed (stable) gradient program shown


@dataclass(frozen=True)
class Formula:
    """One displayed line: LaTeX and MathML of the same equation, and/or a plain note."""

    latex: str = ""
    mathml: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"latex": self.latex, "note": self.note}


def eq_formula(lhs, rhs) -> Formula:
    rhs = fold(rhs)
    try:
        ml = mathml(sp.Eq(lhs, rhs, evaluate=False), display=True)
    except (TypeError, ValueError):
        ml = mathml(rhs, display=True)
    return Formula(latex=f"{latex(lhs)} = {latex(rhs)}", mathml=ml)


# The backward rule of each op that has no matrix Group, in index notation (t a row, j a column,
# C the row width); the key is the kind of the op's output step (a row per op).
INDEX_RULES = {
    "layer_norm": ("LayerNorm over each row, with r_t = 1/sqrt(var_t + eps), "
                   "x̂ = (x - μ_t) r_t and δ̂ = δ_y ∘ g",
                   r"\delta_{x_{t,j}} = \frac{r_t}{C}\Big(C\,\hat\delta_{t,j} - \sum_k "
                   r"\hat\delta_{t,k} - \hat x_{t,j} \sum_k \hat\delta_{t,k} \hat x_{t,k}\Big),"
                   r"\quad \frac{\partial L}{\partial g_j} = \sum_t \delta_{y_{t,j}} "
                   r"\hat x_{t,j}"),
    "softmax": ("softmax over the last axis (each row), p = softmax(x)",
                r"\delta_{x_{t,j}} = p_{t,j}\Big(\delta_{p_{t,j}} - \sum_k \delta_{p_{t,k}} "
                r"p_{t,k}\Big)"),
    "attention": ("attention weights: softmax of each row of scores over the positions s <= t",
                  r"\delta_{S_{t,s}} = A_{t,s}\Big(\delta_{A_{t,s}} - \sum_{s' \le t} "
                  r"\delta_{A_{t,s'}} A_{t,s'}\Big)"),
    "score": ("scores S = Q K^T / sqrt(d) per head (causal: s <= t)",
              r"\delta_{Q} = \frac{\delta_S K}{\sqrt{d}},\quad \delta_{K} = "
              r"\frac{\delta_S^{T} Q}{\sqrt{d}}"),
    "context": ("context = A V per head", r"\delta_{A} = \delta_{\mathrm{ctx}} V^{T},\quad "
                r"\delta_{V} = A^{T} \delta_{\mathrm{ctx}}"),
    "gelu": OPS["gelu"].index_rule(),  # the op table's name: GELU elementwise
    "dropout": ("dropout with keep-mask m and scale 1/(1-p)",
                r"\delta_{x} = \frac{\delta_{y} \circ m}{1 - p}"),
    "residual": ("residual connection y = x + f(x)", r"\delta_{x} \mathrel{+}= \delta_{y}"),
    "embedding": ("embedding: row id_t of the table E",
                  r"\frac{\partial L}{\partial E_{v,j}} = \sum_t [\mathrm{id}_t = v]\, "
                  r"\delta_{y_{t,j}}"),
    "nll": ("cross-entropy of each row against its target, mean over the T rows",
            r"\delta_{z_{t,j}} = \frac{1}{T}\big(\mathrm{softmax}(z_t)_j - "
            r"[j = \mathrm{target}_t]\big)"),
    "log_softmax": ("log-softmax over each row",
                    r"\delta_{x_{t,j}} = \delta_{y_{t,j}} - \mathrm{softmax}(x_t)_j \sum_k "
                    r"\delta_{y_{t,k}}"),
}


def index_rules_of(kinds: list[str]) -> list[Formula]:
    """The INDEX_RULES lines of the op ``kinds`` (in program order; those without a rule
    skipped), last op first (backpropagation order).

    >>> [f.note for f in index_rules_of(["score", "attention", "relu", "score"])]
    ['attention weights: softmax of each row of scores over the positions s <= t:', \
'scores S = Q K^T / sqrt(d) per head (causal: s <= t):']
    """
    known = [k for k in dict.fromkeys(kinds) if k in INDEX_RULES]
    return [Formula(latex=INDEX_RULES[k][1], mathml=mathml_of_tex(INDEX_RULES[k][1]),
                    note=INDEX_RULES[k][0] + ":") for k in reversed(known)]


def mathml_of_tex(tex: str) -> str:
    """MathML for a rule written in LaTeX (the same formula: fractions, roots, sums)."""
    return tex_to_mathml(tex)
