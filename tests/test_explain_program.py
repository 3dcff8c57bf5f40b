"""explain reads a plain model's tensor program only: its steps (tagged by ``to_program``), the
values at a point from the program (double-double table), the exact gradient certified in arb
balls and torch autograd of the same program; no scalar pipeline stage runs."""

import re

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import SymgradError, zoo
from symgrad.tensor.front import to_program
from symgrad.tensor.program import topological
from symgrad.verify import exact_steps

NEURON_AT = {"x": 1.1, "w": 2.2, "b": 0, "y": 1}


def _simplenet_point(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(size=(5, 10)), "b1": rng.normal(size=5),
            "W2": rng.normal(size=(1, 5)), "b2": [0.1], "x": rng.normal(size=10), "y": 1.0}


@pytest.fixture
def no_scalar_stages():
    """The scalar pipeline's stages, oracle and presentations are deleted (issue 17), so
    explain cannot reach them."""
    import importlib.util
    for gone in ("symgrad.stages", "symgrad.oracle", "symgrad.sides",
                 "symgrad.present.derivation"):
        assert importlib.util.find_spec(gone) is None, gone


def test_neuron_at_a_point_from_the_program_only(no_scalar_stages):
    e = sg.explain(zoo.get("neuron"), at=NEURON_AT)
    assert e.gradient["w"].startswith("-0.089826281007754091")  # the tutorial's numbers,
    assert e.gradient["b"].startswith("-0.081660255461594621")  # certified (arb balls)
    assert round(float(e.torch_gradient["w"]), 4) == -0.0898
    assert round(float(e.torch_gradient["b"]), 4) == -0.0817
    md = e.markdown()
    assert r"a = \sigma\left(z\right) = 0.91834" in md  # a step's value from the program
    assert r"\frac{\partial L}{\partial z} = - y + a" in md  # the textbook adjoint
    assert "certified to 50 digits" in md


def test_simplenet_at_a_point_matches_exact_at_and_torch(no_scalar_stages):
    m, at = zoo.get("simplenet"), _simplenet_point()
    e = sg.explain(m, at=at)
    exact = sg.exact_at(m, at)
    assert len(e.gradient) == 5 * 10 + 5 + 5 + 1
    for entry, got in e.gradient.items():
        assert mpmath.almosteq(mpmath.mpf(got), exact[f"d/d{entry}"], 1e-16)
        assert abs(float(got) - float(e.torch_gradient[entry])) < 1e-12
    md = e.markdown()
    assert "## Forward pass, layer by layer" in md
    assert re.search(r"h = W\^\{\(1\)\} x \+ b\^\{\(1\)\} = \[-?\d", md)  # the layer's values


def test_simplenet_layer_view_in_every_format():
    e = sg.explain(zoo.get("simplenet"))
    md, tex, html = e.markdown(), e.latex().replace("&=", "="), e.html()
    for text in (md, tex):
        assert "W^{(1)} x + b^{(1)}" in text
        assert r"\delta_{h} = \delta_{r} \circ \theta(h)" in text
        assert r"\frac{\partial L}{\partial W^{(1)}} = \delta_{h} x^{T}" in text
        assert r"\frac{\partial L}{\partial z} = - y + a" in text  # textbook: dL/dz = a - y
    assert "<mfrac>" in html and "<msup><mi>W</mi>" in html  # fractions and W^(1) in MathML
    for internal in ("e0", "e49", "[0,0]", "W1_{", "h_{0}", "v^{("):
        assert internal not in md, internal
    # the rules' notation in symbols, as the report prints it: explain's was ASCII, "delta_v =
    # dL/dv; ..., o the elementwise product" (an "o" for the product: newuser8)
    note = "δ_v = ∂L/∂v; θ is the Heaviside step, ∘ the elementwise product"
    assert note in md and f"<p>{note}</p>" in html and "delta_v" not in md + html
    assert r"$\delta$\_v = $\partial$L/$\partial$v; $\theta$ is the Heaviside step, $\circ$ the" in tex


def test_large_plain_model_is_summarized_with_readers_names():
    md = sg.explain(zoo.get("gpt_attention")).markdown()
    assert re.search(r"one line per op \(93 steps\)", md)
    assert r"q = X \mathrm{Wq}^{T}" in md and r"\mathrm{score}^{(0)}" in md
    for internal in ("dense", r"\mathrm{e0}", "Wq[0,0]", "v^{(1)}", "reshaped"):
        assert internal not in md, internal


def test_exact_steps_are_certified_values_of_the_textbook_program():
    v = exact_steps(zoo.get("neuron"), NEURON_AT, dps=40)
    names = {str(k): val for k, val in v.items()}
    assert set(names) == {"z", "a", "L", "w", "b", "x", "y"}
    with mpmath.workdps(45):
        z = mpmath.mpf(2.2) * mpmath.mpf(1.1)
        a = 1 / (1 + mpmath.exp(-z))
        assert mpmath.almosteq(names["z"], z, 1e-39)
        assert mpmath.almosteq(names["a"], a, 1e-39)
        assert mpmath.almosteq(names["L"], -mpmath.log(a), 1e-39)
        assert not mpmath.almosteq(names["a"], a * (1 + mpmath.mpf(10) ** -30), 1e-39)


def test_exact_steps_point_errors_name_the_block():
    with pytest.raises(SymgradError, match="no value for 'w'"):
        exact_steps(zoo.get("neuron"), {"x": 1.0, "b": 0.0, "y": 1.0})
    with pytest.raises(SymgradError, match="dps must be a positive integer"):
        exact_steps(zoo.get("neuron"), NEURON_AT, dps=0)


def test_program_steps_carry_the_front_ends_forms():
    p = to_program(zoo.get("simplenet"))
    tagged = [n for n in topological([p.textbook_program.loss]) if "step" in n.attrs]
    groups = {n.attrs["step"].group.label for n in tagged if n.attrs["step"].group is not None}
    assert groups == {"h", "r", "z", "a"}
    assert [str(n.attrs["step"].symbol) for n in tagged][-1] == "L"
    assert str(tagged[-2].attrs["step"].expr) == "sigma(z)"  # as explanations write it


def test_tensor_model_and_plain_model_take_the_same_path():
    x, w = sp.symbols("x w")
    m = sg.Model("sq", sg.ops.step(sp.tanh(w * x), label="t") ** 2, params=[w],
                 inputs={x: sg.Uniform(-1, 1)})
    plain = sg.explain(m, at={"w": 0.5, "x": 0.75})
    program = sg.explain(to_program(m), at={"w": 0.5, "x": 0.75})
    assert plain.gradient == program.gradient
    want = 2 * np.tanh(0.375) * (1 - np.tanh(0.375) ** 2) * 0.75
    assert abs(float(plain.gradient["w"]) - want) < 1e-15


def test_ops_own_partials_and_matrix_forms_travel_with_the_program():
    """A step's declared partial (log-sum-exp's softmax, in terms of lse itself) is carried
    onto its map node and shown, not sympy.diff of the stable form; a dense layer on an
    elementwise activation keeps its matrix form in the summary."""
    md = sg.explain(zoo.get("gpt_softmax")).markdown()
    assert r"= e^{X_{1,0} - \mathrm{lse}_{1}}" in md  # softmax: one exp (join_exp)
    md = sg.explain(zoo.get("gpt_feed_forward")).markdown()
    assert (r"\mathrm{ffn} = \mathrm{act} \left(W^{(2)}\right)^{T} + 1 \left(b^{(2)}\right)^{T}"
            in md)
