import re
import shutil
import subprocess

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import SymgradError, zoo
from symgrad.cli import main
from symgrad.explain import parse_point
from symgrad.report import gradient_formulas


def test_neuron_ends_in_the_tutorial_numbers():
    e = sg.explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1})
    assert e.gradient["w"].startswith("-0.0898") and e.gradient["b"].startswith("-0.0816")
    assert round(float(e.torch_gradient["w"]), 4) == -0.0898
    assert round(float(e.torch_gradient["b"]), 4) == -0.0817
    md = e.markdown()
    assert r"\sigma\left(z\right)" in md  # sigmoid prints as sigma
    assert r"\frac{\partial L}{\partial a}" in md  # local derivatives, then the chain rule
    assert md.index("Local derivatives") < md.index("Chain rule") < md.index("exact vs torch")


def test_simplenet_is_explained_layer_by_layer():
    md = sg.explain(zoo.get("simplenet")).markdown()
    assert "W^{(1)} x + b^{(1)}" in md  # W1_{i,j} prints as W^{(1)}
    assert r"\delta_{h} = \delta_{r} \circ \theta(h)" in md
    assert r"\frac{\partial L}{\partial W^{(1)}} = \delta_{h} x^{T}" in md


def test_tanh_local_derivative_is_its_declared_one_minus_t_squared():
    """tanh's own partial 1 - t^2 is printed as declared (sympy.factor made it
    -(1 + t)(-1 + t)); sigmoid's keeps its factored form, so the neuron's dL/dz = a - y."""
    u, v = sp.symbols("u v")
    m = sg.Model("tanh_sq", (sg.ops.tanh(u * v) - 1) ** 2, params=[u], inputs=[v])
    md = sg.explain(m).markdown()
    local = [ln for ln in md.splitlines() if ln.startswith(r"$$ \frac{\partial \mathrm{tanh}}")]
    assert local == [r"$$ \frac{\partial \mathrm{tanh}}{\partial z} = 1 - \mathrm{tanh}^{2} $$"], \
        local
    assert r"\left(1 + \mathrm{tanh}\right) \left(-1 + \mathrm{tanh}\right)" not in md
    neuron = sg.explain(zoo.get("neuron")).markdown()
    assert r"\frac{\partial a}{\partial z} = \left(1 - a\right) a" in neuron  # one_minus


def _tanh_net():
    x, y, w, b, v, c = sp.symbols("x y w b v c")
    return sg.Model("tanh_net", sg.ops.bce(sg.ops.sigmoid(v * sg.ops.tanh(w * x + b) + c), y),
                    params=[w, b, v, c], inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})


def test_tanh_adjoints_print_one_minus_t_squared():
    """Meant to fail on the factored (1 + tanh)(-1 + tanh) of the textbook adjoints and the
    simplified gradient (the local derivative already read 1 - tanh^2): every line that
    carries tanh' carries it as 1 - tanh^2, in explain and in the report's textbook form."""
    md = sg.explain(_tanh_net()).markdown()
    assert r"\frac{\partial \mathrm{bce}}{\partial w} = - v x \left(1 - \mathrm{tanh}^{2}\right) " \
        r"\left(y - \mathrm{sigmoid}\right)" in md
    assert r"1 - \tanh^{2}{\left(b + w x \right)}" in md  # the simplified gradient
    assert r"-1 + \mathrm{tanh}" not in md and r"-1 + \tanh" not in md
    tex = " ".join(f.latex for _, fs in gradient_formulas(_tanh_net()) for f in fs)
    assert r"1 - \mathrm{tanh}^{2}" in tex and r"-1 + \mathrm{tanh}" not in tex, tex


def test_html_uses_mathml_and_jupyter_reprs():
    e = sg.explain(zoo.get("chain_rule"), at={"x": 0.5})
    assert "<math" in e.html() and "<math" in e._repr_html_()
    assert e._repr_markdown_().startswith("# symgrad explain")


def test_latex_document_is_complete():
    tex = sg.explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1}).latex()
    assert tex.startswith("\\documentclass") and tex.rstrip().endswith("\\end{document}")


@pytest.mark.render_tool("pdflatex", shutil.which("pdflatex") is not None,
                         "apt-get install texlive-latex-base texlive-latex-recommended")
def test_latex_document_compiles(tmp_path):
    tex = sg.explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1}).latex()
    (tmp_path / "n.tex").write_text(tex)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "n.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "n.pdf").stat().st_size > 1000


def test_point_parsing_and_errors():
    assert parse_point("x=1.1, w=2") == {"x": 1.1, "w": 2.0}
    with pytest.raises(SymgradError, match="not name=value"):
        parse_point("x1.1")
    with pytest.raises(SymgradError, match="not a number"):
        parse_point("x=abc")
    with pytest.raises(SymgradError, match=r"'y' is given twice \(=1 and =0\)"):
        parse_point("x=1.1,w=2.2,b=0,y=1,y=0")  # main took the last y silently
    with pytest.raises(SymgradError, match="no value for 'y'"):
        sg.explain(zoo.get("neuron"), at={"x": 1.0, "w": 1.0, "b": 0.0})


def test_point_keys_are_read_as_verify_and_exact_at_read_them():
    """Sympy-symbol keys work as block names do (they raised a KeyError traceback); a wrong
    name gives exact_at's one-line error, under explain's name."""
    m = zoo.get("neuron")
    x, w, b, y = sp.symbols("x w b y")
    by_symbol = sg.explain(m, at={x: 1.1, w: 2.2, b: 0, y: 1})
    assert by_symbol.gradient == sg.explain(m, at={"x": 1.1, "w": 2.2, "b": 0, "y": 1}).gradient
    assert by_symbol.gradient["w"].startswith("-0.0898")
    assert sg.exact_at(m, {x: 1.1, w: 2.2, b: 0, y: 1})["d/dw"] == sg.exact_at(
        m, {"x": 1.1, "w": 2.2, "b": 0, "y": 1})["d/dw"]
    for bad, why in (({x: 1.1, sp.Symbol("ww"): 2.2, b: 0, y: 1}, r"unknown name\(s\) \['ww'\]"),
                     ({x: 1.1, b: 0, y: 1}, "no value for 'w'"),
                     ({3: 1.0}, "neither a block name nor a symbol")):
        with pytest.raises(SymgradError, match=why) as explained:
            sg.explain(m, at=bad)
        with pytest.raises(SymgradError, match=why) as exact:
            sg.exact_at(m, bad)
        assert str(explained.value).split(": ", 2)[-1] == str(exact.value).split(": ", 1)[-1]
    with pytest.raises(SymgradError, match="unknown name"):
        sg.verify(m, at={x: 1.1, sp.Symbol("ww"): 2.2, b: 0, y: 1})


def test_matrix_point_through_api():
    rng = np.random.default_rng(0)
    at = {"W1": rng.normal(size=(5, 10)), "b1": rng.normal(size=5), "W2": rng.normal(size=(1, 5)),
          "b2": [0.1], "x": rng.normal(size=10), "y": 1.0}
    e = sg.explain(zoo.get("simplenet"), at=at)
    for entry in ("W1[0,0]", "b2[0]"):
        assert abs(float(e.gradient[entry]) - float(e.torch_gradient[entry])) < 1e-12


def test_large_models_are_summarized_one_line_per_op():
    """A plain model over MAX_STEPS scalar steps: a residual feed-forward block after a
    LayerNorm (493 steps)."""
    X, W1, b1 = sg.matrix("X", 4, 6), sg.matrix("W1", 24, 6), sg.matrix("b1", 24)
    W2, b2, g, b = sg.matrix("W2", 6, 24), sg.matrix("b2", 6), sg.matrix("g", 6), sg.matrix("b", 6)
    Y = sg.ops.add(X, sg.ops.feed_forward(sg.ops.layer_norm(X, g, b), W1, b1, W2, b2))
    loss = sg.ops.total(sp.ImmutableMatrix(4, 6, [y**2 for y in Y]), label="L")
    m = sg.Model("ffn", loss, params=[W1, b1, W2, b2, g, b], inputs={X: sg.Normal()})
    md = sg.explain(m).markdown()
    assert re.search(r"one line per op \(\d+ steps\)", md)
    assert "first of" in md and "dense" not in md  # every intermediate has a meaningful name
    with pytest.raises(SymgradError, match=r"has \d+ steps; --at evaluates derivations"):
        sg.explain(m, at={})


def test_tiny_gpt_is_explained_from_its_tensor_program():
    """One line per tensor operation (a Linear as its sum over the input features), layer 1
    folded onto layer 0, the backward rule per op and the derived gradient program."""
    md = sg.explain(zoo.get("tiny_gpt")).markdown()
    assert "## Forward pass, one line per tensor operation" in md
    assert r"\sum_{i=0}^{15} \mathrm{h0.ln1}_{a,i} \mathrm{h0\_Wq}_{o,i}" in md  # by label
    assert "layer 1: the same 49 operations as layer 0, on the h1_ parameters" in md
    backward = md[md.index("layer 1: the same 49 operations"):]  # the backward pass folds too
    assert "layer 1: the same 49 rules as layer 0, on the h1_ parameters" in backward
    assert "h1\\_Wq" not in md  # folded
    assert "LayerNorm over each row" in md and "gradient operations over" in md
    with pytest.raises(SymgradError, match="explain: at: no value for"):
        sg.explain(zoo.get("tiny_gpt"), at={})


def test_small_tensor_model_is_explained_at_a_point_on_its_program():
    """The tensor model is explained on its own program (no lowering): the exact gradient at
    a point (d/dW_ij of sum(tanh(W x)) = (1 - tanh^2(Wx)_i) x_j), the same digits as
    sg.exact_at's (certified, arb balls)."""
    import symgrad.tensor as st
    from symgrad.tensor.model import TensorModel
    W, x = st.param("W", (2, 2)), st.input("x", (2,))
    m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
    at = {"W": [[0.1, 0.2], [0.3, 0.4]], "x": [1.0, -1.0]}
    e = sg.explain(m, at=at)
    z = np.array(at["W"]) @ np.array(at["x"])
    want = (1 - np.tanh(z)[:, None] ** 2) * np.array(at["x"])[None, :]
    for (i, j), w in np.ndenumerate(want):
        assert abs(float(e.gradient[f"W[{i},{j}]"]) - w) < 1e-15
        assert abs(float(e.torch_gradient[f"W[{i},{j}]"]) - w) < 1e-15
    assert "Backpropagation: one vector-Jacobian rule per node" in e.markdown()
    exact = sg.exact_at(m, at)
    assert e.gradient == {k: mpmath.nstr(exact[f"d/d{k}"], 17) for k in e.gradient}


def test_neuron_textbook_gradient_beside_the_stable_form():
    md = sg.explain(zoo.get("neuron")).markdown()
    assert r"\frac{\partial L}{\partial z} = - y + a" in md  # dL/dz = a - y


def test_attention_intermediates_have_names():
    md = sg.explain(zoo.get("gpt_attention")).markdown()
    for name in ("q = X", "k = X", "v = X", r"\mathrm{score}^{(0)}", r"\mathrm{attn}^{(1)}",
                 r"\mathrm{ctx}", r"\mathrm{out}"):
        assert name in md, name
    assert "dense" not in md


def test_no_double_subscripts_in_names():
    from symgrad.present.notation import layer_names, tex_name
    assert tex_name("d_X_{0,0}") == r"\bar{X}_{0,0}"
    assert tex_name("attn_keep1_{2,2}") == r"\mathrm{attn\_keep}_{1;2,2}"  # a user's
    with layer_names({"attn_keep1"}):  # the zoo's (gpt_attention's head 1)
        assert tex_name("attn_keep1_{2,2}") == r"\mathrm{attn\_keep}^{(1)}_{2,2}"
    assert tex_name("mu_{0}#2") == r"\mu^{(2\mathrm{nd})}_{0}"


def test_repeated_steps_are_numbered_by_an_ordinal_never_a_power():
    """Meant to fail on ``tanh^{[6]}`` (read as a power of tanh): the k-th step of one label is
    ``^{(kth)}`` in LaTeX (Markdown's math), MathML (HTML) and plain text alike."""
    from symgrad.present.notation import latex, mathml, ordinal
    assert [ordinal(k) for k in (2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]
    tanh6 = sp.Symbol("tanh#6")
    assert latex(tanh6 ** 2) == r"\left(\mathrm{tanh}^{(6\mathrm{th})}\right)^{2}"
    assert latex(sp.Symbol("z1#2")) == r"z^{(2\mathrm{nd})}_{1}"  # a user's z1, its 2nd step
    ml = mathml(tanh6)
    assert ("<msup><mi>tanh</mi><mrow><mo>(</mo><mn>6</mn><mtext>th</mtext><mo>)</mo></mrow>"
            "</msup>") in ml and "[6]" not in ml
    md = sg.explain(zoo.get("gpt_gelu_tanh")).markdown()
    assert r"\mathrm{tanh}^{(6\mathrm{th})}" in md and "^{[" not in md
    from symgrad.present.step_formulas import StepNames, View  # the plain-text names too
    from symgrad.tensor.model import program_of
    from symgrad.tensor.program import topological
    view = View(program_of(zoo.get("gpt_gelu_tanh")))
    names = StepNames(view)
    prog = view.program.textbook_program or view.program
    texts = [names.text(n, "") for n in topological([prog.loss])
             if "step" in n.attrs]
    assert "tanh^(6th)" in texts and not any("#" in t for t in texts)


@pytest.mark.parametrize("name", zoo.names())
def test_every_builtin_model_is_explained_by_the_cli(name, capsys):
    assert main(["explain", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# symgrad explain: {name}") and "$$" in out
    longest = max(len(line) for line in out.splitlines())
    assert longest < 800  # long sums are folded


def test_every_model_is_listed_for_the_loop():
    assert main(["list"]) == 0


def _huber():
    x, y, w, b = sp.symbols("x y w b")
    e = w * x + b - y
    loss = sp.Piecewise((e**2 / 2, sp.Abs(e) <= 1), (sp.Abs(e) - sp.Rational(1, 2), True))
    return sg.Model("huber", loss, params=[w, b], inputs={x: sg.Uniform(-3, 3), y: sg.Normal()})


def test_huber_simplified_gradient_has_no_dead_branch():
    """Meant to fail on the nested cases: sympy.simplify put Piecewise((0, e = 0), ...) inside
    the outer |e| <= 1's "otherwise", where |e| > 1 already rules e = 0 out."""
    md = sg.explain(_huber()).markdown()
    simplified = md.split("## Gradient, simplified")[1]
    for line in filter(None, simplified.split("\n\n")):
        assert line.count(r"\begin{cases}") == 1, line
    assert r"\frac{x \left(b - y + w x\right)}{\left|{b - y + w x}\right|} & \text{otherwise}" \
        in simplified


def test_pruning_keeps_the_function_and_what_it_cannot_decide():
    """The pruned form is the same function (random points, both branches), and a nested
    condition the outer one does not decide (on another variable) stays."""
    from symgrad.present.piecewise import prune
    x, y, w, b = sp.symbols("x y w b")
    e = w * x + b - y
    inner = sp.Piecewise((0, sp.Eq(e, 0)), (x * e / sp.Abs(e), True))
    full = sp.Piecewise((x * e, sp.Abs(e) <= 1), (inner, True))
    pruned = prune(full)
    assert pruned != full and not any(isinstance(a, sp.Piecewise)
                                      for v, _ in pruned.args for a in sp.preorder_traversal(v))
    rng = np.random.default_rng(0)
    for p in rng.normal(scale=2, size=(40, 4)):
        at = dict(zip((x, y, w, b), map(sp.Float, p)))
        assert abs(float(full.subs(at)) - float(pruned.subs(at))) < 1e-12
    open_ = sp.Piecewise((x * e, sp.Abs(e) <= 1), (sp.Piecewise((0, sp.Eq(x, 0)), (x, True)),
                                                    True))
    assert prune(open_) == open_


def _user_mlp():
    X, W1, b1 = sg.matrix("X", 2, 3), sg.matrix("W1", 4, 3), sg.matrix("b1", 4)
    W2, b2, y = sg.matrix("W2", 3, 4), sg.matrix("b2", 3), sg.matrix("y", 2)
    h = sg.ops.tanh(sg.ops.dense(X, W1, b1))
    loss = sg.ops.cross_entropy(sg.ops.dense(h, W2, b2), y)
    return sg.Model("mlp", loss, params=[W1, b1, W2, b2],
                    inputs={X: sg.Normal(), y: sg.Integers(0, 2)})


def test_a_users_dense_tanh_cross_entropy_model_is_explained_layer_by_layer():
    """Meant to fail on the step-by-step explanation (51 forward lines, one per entry):
    ops.cross_entropy's per-row steps are one layer, nll = lse(Z) - pick(Z, y), with its delta
    rule, so the whole model reads layer by layer, in Markdown and in MathML."""
    e = sg.explain(_user_mlp())
    md = e.markdown()
    assert "## Forward pass, layer by layer" in md and "## Local derivatives" not in md
    assert (r"\mathrm{nll} = \mathrm{lse}(\mathrm{W2\_out}) - \mathrm{pick}(\mathrm{W2\_out}, y)"
            in md)
    assert (r"\delta_{\mathrm{W2\_out}} = \left(\delta_{\mathrm{nll}} 1\right) \circ "
            r"\left(\mathrm{softmax}(\mathrm{W2\_out}) - \mathrm{onehot}(y)\right)") in md
    assert r"\frac{\partial L}{\partial W_{2}} = \delta_{\mathrm{W2\_out}}^{T}" in md  # user's W2
    assert r"\left(1 - \mathrm{tanh\_W1\_out}^{\circ {2}}\right)" in md  # tanh' as 1 - t^2
    forward = md.split("## Forward pass, layer by layer")[1].split("## ")[0]
    assert forward.count("$$ ") == 5  # dense, tanh, dense, cross-entropy's rows, the mean
    html = e.html()
    assert "<mi>pick</mi>" in html and "<mi>onehot</mi>" in html


def test_the_layer_view_of_cross_entropy_has_the_exact_values_at_a_point():
    """With at=, the rows' layer shows nll's values (not the lse beside them), equal to
    log-sum-exp minus the picked logit computed here in float64."""
    at = {"X": [[0.1, 0.2, 0.3], [0.4, -0.5, 0.6]],
          "W1": [[0.1, -0.2, 0.3], [0.2, 0.1, -0.1], [-0.3, 0.2, 0.1], [0.1, 0.1, 0.4]],
          "b1": [0.0] * 4, "W2": [[0.2, -0.1, 0.3, 0.1], [0.5, 0.2, -0.3, 0.0],
                                  [-0.4, 0.1, 0.2, 0.3]], "b2": [0.0] * 3, "y": [0, 2]}
    md = sg.explain(_user_mlp(), at=at).markdown()
    line = next(ln for ln in md.splitlines() if ln.startswith(r"$$ \mathrm{nll} = "))
    Z = np.tanh(np.array(at["X"]) @ np.array(at["W1"]).T) @ np.array(at["W2"]).T
    nll = np.log(np.exp(Z).sum(axis=1)) - Z[[0, 1], at["y"]]
    shown = [float(v) for v in re.search(r"= \[(.*)\] \$\$", line).group(1).split(", ")]
    assert np.allclose(shown, nll, rtol=1e-3), (shown, nll)


def test_a_point_at_a_kink_says_so():
    """newuser4 S3-8: at p = 0 the explanation certified sympy's sign(0) = 0 as "the exact
    value" of dL/dp with no word that p = 0 is a kink of |p| (subgradients -1.1 to -0.9)."""
    p, q, s = sp.symbols("p q s")
    m = sg.Model("kinks", sp.Abs(p) / 10 + sp.Max(0, 1 - (p * s + q)) + sp.Max(q, p * s),
                 params=[p, q], inputs={s: sg.Uniform(-2, 2)})
    note = lambda at: [sec.note for sec in sg.explain(m, at=at).sections  # noqa: E731
                       if sec.title.startswith("Gradient: exact")][0]
    assert "this point is at a kink of Abs(p):" in note({"p": 0.0, "q": 0.5, "s": 1.0})
    assert "Max(q, p*s)" in note({"p": 0.5, "q": 0.5, "s": 1.0})  # a tie, and the hinge's 0
    assert "kink" not in note({"p": 0.3, "q": 0.1, "s": 1.0})
    assert "kink" not in sg.explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0,
                                                           "y": 1}).markdown()
