"""The chain rule in ``explain``'s HTML reads as in its LaTeX (newuser6, a teacher's handout):
MathML sorted the factors of ∂L/∂bce ∂bce/∂sigmoid ∂sigmoid/∂z ∂z/∂w1 into
(∂bce/∂sigmoid)(∂L/∂bce)(∂sigmoid/∂z)(∂z/∂w1), each fraction in brackets."""

from __future__ import annotations

import re

import sympy as sp

import symgrad as sg
from symgrad.present.notation import latex, mathml


def _fractions(ml: str) -> list[tuple[str, str]]:
    """(numerator, denominator) names of each ∂a/∂b in a MathML string, in order."""
    return re.findall(r"<mfrac><mrow><mo>&#8706;</mo><mi>(\w+)</mi></mrow><mrow><mo>&#8706;"
                      r"</mo><mi>(\w+)</mi>", ml)


def test_a_product_of_derivatives_keeps_its_order_and_takes_no_brackets():
    names = sp.symbols("L c a b")  # sorted, these read a, b, c
    chain = sp.Mul(*[sp.Derivative(a, b, evaluate=False) for a, b in zip(names, names[1:])],
                   evaluate=False)
    ml = mathml(chain)
    assert _fractions(ml) == [("L", "c"), ("c", "a"), ("a", "b")], ml
    assert "<mo>(</mo><mfrac>" not in ml, ml
    assert latex(chain).startswith(r"\frac{\partial L}{\partial c} \frac{\partial c}")


def test_explains_html_chain_rule_is_the_latex_chain_rule():
    x1, x2, y, w1, w2, b = sp.symbols("x1 x2 y w1 w2 b")
    z = w1 * x1 + w2 * x2 + b
    model = sg.Model("logreg_l2", sg.ops.bce(sg.ops.sigmoid(z), y) + (w1**2 + w2**2) / 100,
                     params=[w1, w2, b],
                     inputs={x1: sg.Normal(0, 1), x2: sg.Normal(0, 1),
                             y: sg.Choice([0.0, 1.0])})
    e = sg.explain(model)
    html = e.html_fragment()
    chain = html[html.index("Chain rule"):]
    first = _fractions(chain)[:3]  # (the left side, ∂L/∂w^(1), is no plain <mi>)
    assert first == [("L", "bce"), ("bce", "sigmoid"), ("sigmoid", "z")], first
    assert "<mo>(</mo><mfrac><mrow><mo>&#8706;" not in chain
