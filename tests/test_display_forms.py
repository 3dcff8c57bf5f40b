"""Display-only forms a teacher writes, the math unchanged (newuser4 S3-8, newuser5 L5,
newuser6 L2): a sigmoid's local derivative (1 - sigmoid) sigmoid, not sympy's
-(-1 + sigmoid) sigmoid; a softplus's e^{b + w_1 x_1 + w_2 x_2}, not simplify's e^b e^{w_1 x_1}
e^{w_2 x_2}."""

from __future__ import annotations

import sympy as sp

import symgrad as sg
from symgrad.present.step_derivation import join_exp, one_minus


def _inputs(x1, x2, y) -> dict:
    return {x1: sg.Normal(), x2: sg.Normal(), y: sg.Choice([0.0, 1.0])}


def test_a_sigmoids_local_derivative_reads_one_minus_sigmoid():
    x1, x2, y, w1, w2, b = sp.symbols("x1 x2 y w1 w2 b")
    m = sg.Model("logreg", sg.ops.bce(sg.ops.sigmoid(w1 * x1 + w2 * x2 + b), y),
                 params=[w1, w2, b], inputs=_inputs(x1, x2, y))
    md = sg.explain(m).markdown()
    assert (r"\frac{\partial \mathrm{sigmoid}}{\partial z} = \left(1 - \mathrm{sigmoid}\right)"
            r" \mathrm{sigmoid}") in md
    assert r"-1 + \mathrm{sigmoid}\right) \mathrm{sigmoid} $$" not in md.split("## Chain")[0]
    # the chain rule still cancels: dL/dw1 = -x1 (y - sigmoid), as before
    assert r"\frac{\partial \mathrm{bce}}{\partial w_{1}} = - x_{1} \left(y - \mathrm{sigmoid}" in md


def test_a_softplus_keeps_the_exp_of_the_sum():
    x1, x2, y, w1, w2, b = sp.symbols("x1 x2 y w1 w2 b")
    z = w1 * x1 + w2 * x2 + b
    m = sg.Model("plain", sp.log(1 + sp.exp(z)) - y * z, params=[w1, w2, b],
                 inputs=_inputs(x1, x2, y))
    md = sg.explain(m).markdown()
    assert "e^{b}" not in md and r"e^{b + w_{1} x_{1} + w_{2} x_{2}}" in md


def test_the_rewrites_keep_the_value():
    a, b, w, x = sp.symbols("a b w x")
    for before, after in ((-(a - 1) * a, one_minus(-(a - 1) * a)),
                          (3 / (1 + sp.exp(b) * sp.exp(w * x)),
                           join_exp(3 / (1 + sp.exp(b) * sp.exp(w * x))))):
        assert sp.simplify(before - after) == 0
    assert one_minus(-(a - 1) * a) == a * (1 - a)
    assert one_minus(a - 1) == a - 1  # no negative product: as it was
