"""A user's own ``x1``, ``w1`` print as x_1, w_1 (sympy's convention) in every format; the layer
superscript W^(1) only where symgrad itself numbers a layer's weights (the zoo marks them:
``Model.layer_names``). Three new-user trials reported x^(1) in a teacher's handout
(newuser4 S3-8, newuser5 L8, newuser6 L1)."""

from __future__ import annotations

import sympy as sp

import symgrad as sg
from symgrad import zoo
from symgrad.present.names import layer_names, split_name
from symgrad.present.fold import fold
from symgrad.present.notation import latex, mathml
from symgrad.report import model_formulas


def _logreg() -> sg.Model:
    x1, x2, y, w1, w2, b = sp.symbols("x1 x2 y w1 w2 b")
    z = w1 * x1 + w2 * x2 + b
    return sg.Model("logreg", sg.ops.bce(sg.ops.sigmoid(z), y), params=[w1, w2, b],
                    inputs={x1: sg.Normal(), x2: sg.Normal(), y: sg.Choice([0.0, 1.0])})


def test_a_user_symbol_with_a_number_is_subscripted_in_latex_and_mathml():
    x1, w1 = sp.symbols("x1 w1")
    assert latex(w1 * x1) == "w_{1} x_{1}"
    ml = mathml(w1 * x1)
    assert "<msub><mi>w</mi><mn>1</mn></msub>" in ml and "<msub><mi>x</mi><mn>1</mn></msub>" in ml
    assert "<msup>" not in ml, ml
    assert latex(sp.Symbol("hidden2")) == r"\mathrm{hidden}_{2}"


def test_a_users_model_reads_x_1_in_markdown_html_and_latex():
    e = sg.explain(_logreg())
    md, html, tex = e.markdown(), e.html_fragment(), e.latex()
    for text in (md, tex):
        assert "w_{1} x_{1}" in text and "^{(1)}" not in text and "^{(2)}" not in text
    assert "<msub><mi>w</mi><mn>1</mn></msub>" in html
    assert "<msup><mi>w</mi>" not in html and "<msup><mi>x</mi>" not in html


def test_the_zoos_layer_weights_keep_their_superscript():
    md = sg.explain(zoo.get("simplenet")).markdown()
    assert "h = W^{(1)} x + b^{(1)}" in md
    assert r"\frac{\partial L}{\partial W^{(2)}}" in md
    first = model_formulas(zoo.get("simplenet"))[0]
    assert first.latex.startswith(r"h = W^{(1)} x + b^{(1)}"), first.latex
    assert "<msup><mi>W</mi><mn>(1)</mn></msup>" in first.mathml, first.mathml
    att = sg.explain(zoo.get("gpt_attention")).markdown()
    assert r"\mathrm{score}^{(0)}" in att and r"\mathrm{attn}^{(1)}" in att


def test_the_layer_marks_end_with_their_model():
    """A user's own W1 after the zoo's simplenet: the marks were simplenet's, not the name's."""
    sg.explain(zoo.get("simplenet")).markdown()
    assert latex(sp.Symbol("W1")) == "W_{1}"
    with layer_names({"W1"}):
        assert latex(sp.Symbol("W1")) == "W^{(1)}"
    assert latex(sp.Symbol("W1")) == "W_{1}"


def test_a_users_numbered_matrix_entry_has_one_subscript():
    """x1's entry (0, 3): the number, then the index, in one subscript (never x_1_{0,3})."""
    assert split_name("x1_{0,3}") == ("x", "", "1;0,3")
    assert latex(sp.Symbol("x1_{0,3}")) == "x_{1;0,3}"
    assert "<msub><mi>x</mi><mn>1;0,3</mn></msub>" in mathml(sp.Symbol("x1_{0,3}"))
    # a lookup into a user's numbered table keeps the number before the looked-up index
    i = sp.Symbol("i")
    table = sp.Piecewise(*[(sp.Symbol(f"E1_{{{k},0}}"), sp.Eq(i, k)) for k in range(3)],
                         (sp.nan, True))
    assert latex(fold(table)) == "E_{1;i,0}"


def test_mathml_keeps_a_word_apart_from_the_next_factor():
    """newuser6 L3: MathML's "sigmoid x1" rendered as one word "sigmoidx"; a thin space (LaTeX's
    \\,) now parts a word from its neighbour, and only a word."""
    s, x1, w = sp.symbols("sigmoid x1 w")
    ml = mathml(s * x1)
    assert '<mi>sigmoid</mi><mo>&InvisibleTimes;</mo><mspace width="0.1667em"/><msub>' in ml
    assert ml.count("<mspace") == 1 and "<mspace" in mathml(50 * s**2 * x1)
    assert "<mspace" not in mathml(w * x1)  # letters side by side, as in LaTeX


def test_mathml_parts_a_function_from_the_factor_before_it():
    """"- y log(sigmoid)" rendered "-ylog(sigmoid)"; e^x stays a letter (no space)."""
    y, a = sp.symbols("y a")
    assert "<mspace" in mathml(y * sp.log(a))
    assert "<mspace" not in mathml(y * sp.exp(a))
