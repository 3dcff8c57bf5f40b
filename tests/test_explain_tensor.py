"""``explain`` on a tensor program directly (no scalar lowering): the reader's names, the
same formula in HTML as in LaTeX, every step's value at a point, and the oracle's gradient."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
import symgrad.tensor as st
from symgrad import SymgradError
from symgrad.tensor.derive import VJP
from symgrad.tensor.model import TensorModel
from symgrad.tensor.steps import leaf_values
from symgrad.tensor.tables import MpmathOps, oracle_ops
from symgrad.tensor.views import oracle_view
from symgrad.zoo.gpt2 import tiny_gpt
from test_present import INTERNAL, assert_same
from test_render import katex_errors, math_spans, needs_katex

DENSE_AT = {"W1": [[1.0, 2.0], [3.0, -4.0], [0.5, 0.25]], "b1": [0.1, 0.2, 0.3],
            "W2": [[1.0, -1.0, 2.0]], "x": [0.3, 0.7], "y": [1.0]}


def dense_relu_dense() -> TensorModel:
    """out = W2 relu(W1 x + b1), loss (out - y)^2, with the reader's labels h, r, out."""
    W1, b1, W2 = st.param("W1", (3, 2)), st.param("b1", (3,)), st.param("W2", (1, 3))
    x, y = st.input("x", (2,)), st.input("y", (1,))
    h = st.map_(st.X[0] + st.X[1], st.einsum("ij,j->i", W1, x), b1, name="h")
    r = st.map_(sp.Max(st.X[0], 0), h, name="r")
    out = st.einsum("ij,j->i", W2, r, name="out")
    return TensorModel("dense_relu_dense", st.sum_((out - y) ** 2))


def small_gpt(**config) -> TensorModel:
    return tiny_gpt({"n_layers": 1, **config})


def gpt_point(model: TensorModel) -> dict:
    values = model.draw(1, np.random.default_rng(3), "float64")
    return {k: v[0].tolist() for k, v in values.items()}


def twins(e) -> None:
    md = re.findall(r"^\$\$ (.*) \$\$$", e.markdown(), flags=re.M)
    html = re.findall(r'<p class="eq">(.*?)</p>', e.html_fragment(), flags=re.S)
    assert md and len(md) == len(html)
    for tex, ml in zip(md, html):
        assert_same(tex, ml, f"explain {e.model}")


def oracle_gradient(model: TensorModel, at: dict) -> dict[str, str]:
    """The verify pipeline's oracle (double-double) at the point, entry -> 17 digits."""
    hi, lo = oracle_view(model, leaf_values(model.blocks, at, "test"), oracle_ops())
    with mpmath.workdps(30):
        return {e: mpmath.nstr(mpmath.mpf(float(h)) + mpmath.mpf(float(l)), 17)
                for e, h, l in zip(model.entries, hi[0, 1:], lo[0, 1:])}


def test_dense_relu_dense_is_derived_from_its_nodes():
    md = sg.explain(dense_relu_dense()).markdown()
    assert "## Forward pass, one line per tensor operation" in md
    assert r"r_{t} = \max\left(0, h_{t}\right)" in md  # a map as its sympy body, named
    assert r"\mathrm{out} = \sum_{j=0}^{2} \mathrm{W2}_{j} r_{j}" in md  # a contraction
    # the VJP rules: a contraction's adjoint (δ_W = δ_y xᵀ), relu's local derivative by diff
    assert r"\delta_{\mathrm{W1}_{i,j}} = \delta_{v^{(1)}_{i}} x_{j}" in md
    assert r"\delta_{r_{j}} = \delta_{\mathrm{out}} \mathrm{W2}_{j}" in md
    assert r"\delta_{h_{t}} = \theta\left(h_{t}\right) \delta_{r_{t}}" in md
    assert md.index("Forward pass") < md.index("Backpropagation") < md.index("As computed")
    assert "matrix form: W1 x" in md and "matrix form: δ_W1 = δ_v⁽¹⁾ xᵀ" in md


@pytest.mark.parametrize("at", [None, DENSE_AT])
def test_dense_relu_dense_html_matches_latex_and_shows_no_internal_names(at):
    e = sg.explain(dense_relu_dense(), at=at)
    twins(e)
    text = e.markdown() + e.html_fragment() + e.latex()
    assert not INTERNAL.findall(text), sorted(set(INTERNAL.findall(text)))


def test_dense_relu_dense_values_are_the_oracles():
    """Each printed step value and the gradient equal the oracle's, and the textbook
    gradient of (W2 relu(W1 x + b1) - y)^2 computed by hand, to the printed digits."""
    m = dense_relu_dense()
    e = sg.explain(m, at=DENSE_AT)
    assert e.gradient == oracle_gradient(m, DENSE_AT)
    W1, b1, W2 = (np.array(DENSE_AT[k]) for k in ("W1", "b1", "W2"))
    x, y = np.array(DENSE_AT["x"]), np.array(DENSE_AT["y"])
    h = W1 @ x + b1
    r = np.maximum(h, 0)
    d_out = 2 * (W2 @ r - y)
    d_h = (W2.T @ d_out) * (h > 0)
    want = {"W2": np.outer(d_out, r), "b1": d_h, "W1": np.outer(d_h, x)}
    for name, g in want.items():
        got = [float(e.gradient[n]) for n in e.gradient if n.startswith(name + "[")]
        np.testing.assert_allclose(got, g.reshape(-1), rtol=1e-15, atol=1e-15)
        assert abs(np.array([float(e.torch_gradient[n]) for n in e.gradient
                             if n.startswith(name + "[")]) - g.reshape(-1)).max() < 1e-14
    md = e.markdown()
    step = re.search(r"\\delta_\{h_\{t\}\} = .*? = \[(.*?)\] \(3\)", md).group(1)
    assert [float(v) for v in step.split(", ")] == [float(mpmath.nstr(v, 6)) for v in d_h]
    shown = re.search(r"\\partial \\mathrm\{W1\}\} = .*? = \[(.*?)\]", md).group(1)
    assert shown.split(", ") == [mpmath.nstr(mpmath.mpf(e.gradient[f"W1[{i},{j}]"]), 10)
                                 for i in range(3) for j in range(2)]


def test_tiny_gpt_is_derived_by_its_labels_and_blocks():
    m = small_gpt()
    e = sg.explain(m)
    md = e.markdown()
    for name in (r"\mathrm{h0.attn}_{t,j}", r"\delta_{\mathrm{h0.gelu}_{a,i}}",
                 r"\delta_{\mathrm{h0\_W2}_{o,i}}", r"\mathrm{tok\_emb}",
                 r"\mathrm{h0\_attn\_keep}_{t,j,k}"):
        assert name in md, name
    assert "Backpropagation: one vector-Jacobian rule per node" in md
    assert "Textbook form" in md and "LayerNorm over each row" in md
    assert "matrix form: h0.ln1 h0_Wqᵀ" in md  # torch.nn.Linear: X Wᵀ
    assert "matrix form: δ_h0_W2 = δ_v⁽⁴³⁾ᵀ h0.gelu" in md  # its weight's gradient
    # GELU's local derivative (sympy.diff of its body) is too long to print: named ∂y/∂x
    assert (r"\delta_{\mathrm{h0.fc1}_{t,j}} = \frac{\partial \mathrm{h0.gelu}_{t,j}}"
            r"{\partial \mathrm{h0.fc1}_{t,j}} \delta_{\mathrm{h0.gelu}_{t,j}}") in md
    twins(e)
    text = md + e.html_fragment()
    assert not INTERNAL.findall(text), sorted(set(INTERNAL.findall(text)))


def test_tiny_gpt_at_a_point_gives_the_oracles_gradient():
    m = small_gpt()
    at = gpt_point(m)
    e = sg.explain(m, at=at)
    assert e.gradient == oracle_gradient(m, at)
    worst = max(abs(float(e.gradient[k]) - float(e.torch_gradient[k])) for k in e.gradient)
    assert worst < 1e-12
    twins(e)
    md = e.markdown()
    assert re.search(r"\\mathrm\{h0.attn\}_\{t,j\} = .* = \[[-\d.e, ]+, \.\.\.\] \(8 x 16\)",
                     md)  # a big array: its first entries and its shape


def test_the_values_agree_with_an_independent_mpmath_table():
    """The printed values (oracle's double-double) against the slow mpmath reference."""
    m = dense_relu_dense()
    e = sg.explain(m, at=DENSE_AT)
    leaves = leaf_values(m.blocks, DENSE_AT, "test")
    outs = sg.tensor.interpret.evaluate(m.gradient.grads, MpmathOps(40), leaves)
    flat = [v for o in outs for v in np.asarray(o).reshape(-1)]
    for entry, v in zip(m.entries, flat):
        assert abs(mpmath.mpf(e.gradient[entry]) - v) < 1e-15 * max(1, abs(v))


def test_above_the_old_lowering_limit_without_at_in_seconds():
    m = tiny_gpt({"emb_dim": 64})
    t0 = time.perf_counter()
    e = sg.explain(m)
    text = e.markdown() + e.html() + e.latex()
    assert time.perf_counter() - t0 < 10
    assert "layer 1: the same" in text and r"\delta_{\mathrm{h0\_Wq}_{o,i}}" in text


def test_tensor_points_are_checked():
    m = small_gpt()
    at = gpt_point(m)
    with pytest.raises(SymgradError, match="no value for"):
        sg.explain(m, at={k: v for k, v in at.items() if k != "tok_emb"})
    with pytest.raises(SymgradError, match=r"input 'ids' is Integers\(.*non-integer value 2\.5"):
        sg.explain(m, at={**at, "ids": [2.5] + at["ids"][1:]})
    high = m.blocks[[b.name for b in m.blocks].index("ids")].domain.high
    with pytest.raises(SymgradError, match=rf"got {high + 1}\.0; give ids in 0\.\.{high}"):
        sg.explain(m, at={**at, "ids": [high + 1] + at["ids"][1:]})
    with pytest.raises(SymgradError, match=r"'W1' has shape \(3, 2\)"):
        sg.explain(dense_relu_dense(), at={**DENSE_AT, "W1": [[1.0, 2.0]]})


@needs_katex
def test_tensor_explanations_render_in_katex():
    m = small_gpt()
    spans = math_spans(sg.explain(m, at=gpt_point(m)).markdown())
    spans += math_spans(sg.explain(dense_relu_dense(), at=DENSE_AT).markdown())
    assert len(spans) > 100 and katex_errors(spans) == []


@pytest.mark.render_tool("pdflatex", shutil.which("pdflatex") is not None,
                         "apt-get install texlive-latex-base texlive-latex-recommended")
def test_tensor_explanation_at_a_point_compiles(tmp_path):
    m = small_gpt()
    (tmp_path / "e.tex").write_text(sg.explain(m, at=gpt_point(m)).latex())
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "e.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    log = (tmp_path / "e.log").read_text(errors="replace")
    overfull = [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert [x for x in overfull if x > 10.0] == []


def test_a_planted_wrong_vjp_rule_shows_in_the_values(monkeypatch):
    """The values come from the VJP rules (``tensor/derive.py``): a planted wrong rule for
    einsum (its adjoint doubled) changes them, and torch autograd beside them disagrees."""
    m = dense_relu_dense()
    right = sg.explain(m, at=DENSE_AT)
    rule = VJP["einsum"]
    monkeypatch.setitem(VJP, "einsum", lambda node, g: [None if d is None else d * 2
                                                        for d in rule(node, g)])
    wrong = sg.explain(dense_relu_dense(), at=DENSE_AT)
    assert float(wrong.gradient["W1[0,0]"]) == pytest.approx(4 * float(right.gradient["W1[0,0]"]))
    assert float(wrong.gradient["W1[0,0]"]) != pytest.approx(float(wrong.torch_gradient["W1[0,0]"]))
    assert right.gradient["W1[0,0]"][:6] == right.torch_gradient["W1[0,0]"][:6]


def test_at_refuses_only_programs_too_big_to_evaluate_entry_by_entry():
    m = tiny_gpt({"emb_dim": 512, "n_layers": 1})
    with pytest.raises(SymgradError, match=r"entries in its steps; --at evaluates up to"):
        sg.explain(m, at={})
    assert "Backpropagation" in sg.explain(m).markdown()  # without --at: any size
