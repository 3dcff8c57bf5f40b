"""What a reader sees: every formula of every zoo page the same in HTML (MathML) as in Markdown
and LaTeX, the committed report pages included."""

from __future__ import annotations

import re
from pathlib import Path
from xml.dom.minidom import parseString

import pytest

import sympy

import symgrad as sg
from symgrad import explain, zoo
from symgrad.domains import Integers, Normal
from symgrad.present.notation import mathml, tex_name
from symgrad.present.step_formulas import LAYER_NOTE
from symgrad.errors import SymgradError
from symgrad.present.texmath import tex_to_mathml
from symgrad.report import gradient_formulas, model_formulas
from symgrad.present.formulas import INDEX_RULES

REPORTS = Path(__file__).resolve().parent.parent / "reports"
ZOO_PAGES = [n for n in sorted(p.stem for p in REPORTS.glob("*.md")) if n in zoo.names()]


def tex_structure(tex: str) -> dict[str, int]:
    """How many fractions, roots and sums a LaTeX formula writes."""
    return {"frac": len(re.findall(r"\\[dt]?frac(?![A-Za-z])", tex)),
            "root": len(re.findall(r"\\sqrt(?![A-Za-z])", tex)),
            "sum": len(re.findall(r"\\sum(?![A-Za-z])", tex))}


def mathml_structure(ml: str) -> dict[str, int]:
    """The same counts from MathML (its LaTeX annotation left out)."""
    ml = re.sub(r"<annotation\b.*?</annotation>", "", ml, flags=re.S)
    return {"frac": ml.count("<mfrac"), "root": ml.count("<msqrt") + ml.count("<mroot"),
            "sum": len(re.findall(r"∑|&#x2211;|&#8721;", ml))}


def assert_same(tex: str, ml: str, where: str) -> None:
    assert ml, f"{where}: a formula with no HTML: {tex}"
    assert mathml_structure(ml) == tex_structure(tex), f"{where}:\n{tex}\n{ml}"
    plain = re.findall(r"<mtext>([^<]*)</mtext>", ml)
    assert not any("=" in t for t in plain), f"{where}: a formula as plain text: {plain}"


@pytest.mark.parametrize("name", zoo.names())
def test_report_formulas_same_in_html_as_in_latex(name):
    m = zoo.get(name)
    shown = [("model", f) for f in model_formulas(m)]
    shown += [(title, f) for title, fs in gradient_formulas(m) for f in fs]
    assert any(f.latex for _, f in shown)
    for where, f in shown:
        if f.latex:
            assert_same(f.latex, f.mathml, f"{name}, {where}")


@pytest.mark.parametrize("name", zoo.names())
def test_explain_formulas_same_in_html_as_in_markdown(name):
    e = explain(zoo.get(name))
    md = re.findall(r"^\$\$ (.*) \$\$$", e.markdown(), flags=re.M)
    html = re.findall(r'<p class="eq">(.*?)</p>', e.html_fragment(), flags=re.S)
    assert md and len(md) == len(html)
    for tex, ml in zip(md, html):
        assert_same(tex, ml, f"explain {name}")


@pytest.mark.parametrize("name", ZOO_PAGES)
def test_committed_pages_show_the_markdowns_formulas(name):
    """The committed HTML page has as many fractions, roots and sums as its Markdown twin."""
    md = (REPORTS / f"{name}.md").read_text()
    html = (REPORTS / f"{name}.html").read_text()
    tex = " ".join(re.findall(r"\$\$(.*?)\$\$", md, flags=re.S))
    ml = " ".join(re.findall(r"<math\b.*?</math>", html, flags=re.S))
    assert mathml_structure(ml) == tex_structure(tex), name



@pytest.mark.parametrize("name", ZOO_PAGES + ["index", "ops"])
def test_committed_pages_render_markdown_marks(name):
    """No raw Markdown (backticks) in the prose of a committed HTML page."""
    page = (REPORTS / f"{name}.html").read_text()
    prose = re.sub(r"<pre>.*?</pre>|<code>.*?</code>|<math\b.*?</math>|<script>.*?</script>", "",
                   page, flags=re.S)
    assert "`" not in prose, re.findall(r".{40}`.{40}", prose)[:3]


def test_ops_page_shows_its_table_before_the_findings():
    """The op catalogue's page: the per-operator table comes before the (long) findings."""
    page = (REPORTS / "ops.html").read_text()
    table, findings = page.find("<h2>Every operator</h2>"), page.find("<h2>Findings</h2>")
    assert 0 < table < findings and "<table" in page[table:findings]


def test_textbook_rules_keep_their_fractions():
    """The rules that lost their fraction bars (attention's 1/sqrt(d), dropout's 1/(1-p),
    cross-entropy's 1/T, LayerNorm's r_t/C)."""
    page = "".join(f.mathml for _, fs in gradient_formulas(zoo.get("tiny_gpt")) for f in fs)
    assert page.count("<msqrt>") == 2
    for rule in ("dropout", "nll", "layer_norm", "score"):
        assert "<mfrac>" in tex_to_mathml(INDEX_RULES[rule][1])


def test_tex_to_mathml_shows_the_rules_as_written():
    ml = tex_to_mathml(r"\delta_{x} \mathrel{+}= \delta_{y} - \sum_{s' \le t} a_{s'}")
    assert "<mo>+=</mo>" in ml and "<mo>−</mo>" in ml  # one relation; a minus, not a hyphen
    assert '<munder><mo movablelimits="true">∑</mo><mrow><msup><mi>s</mi>' in ml  # limits under
    assert ml.count("<mo>′</mo>") == 2  # s' twice
    assert 'annotation encoding="application/x-tex"' in ml  # the LaTeX travels along
    root = tex_to_mathml(r"\sqrt[3]{x} + \frac{\hat x}{\mathrm{stop\_gradient}(y)}")
    assert "<mroot>" in root and '<mover accent="true"><mi>x</mi>' in root
    assert '<mi mathvariant="normal">stop_gradient</mi>' in root


def test_tex_to_mathml_refuses_what_it_cannot_show():
    with pytest.raises(SymgradError, match=r"unknown command \\frobnicate"):
        tex_to_mathml(r"x = \frobnicate{y}")
    with pytest.raises(SymgradError, match="unbalanced"):
        tex_to_mathml(r"x}")


# what only symgrad's own machinery names: stack's basis vectors e0, e1; the gradient's seed;
# per-head keep-mask entries (h0_attn_keep0[a,b]); program names with hash or counter
# (gelu_inner_6, #2844653) and adjoint dummies (_d_tanh_6)
# a program's counted name (gelu_inner_6; the op's stage itself is \mathrm{gelu\_inner})
INTERNAL = re.compile(r"(?<![&#\w])e\d+\[|mathrm\{e\d+\}|>e\d+<|\bseed\b|(?<![&\w])#\d|_d_|"
                      r"gelu\\?_inner\}?(?:\\?_|_\{)\d|keep\d+\[|keep\d+\}|keep\d+<")


@pytest.mark.parametrize("name", zoo.names())
def test_pages_show_the_readers_names(name):
    """Report formulas and explain name blocks, labels and steps as the model does."""
    m = zoo.get(name)
    shown = [f.latex + f.mathml + f.note for f in model_formulas(m)]
    shown += [f.latex + f.mathml + f.note for _, fs in gradient_formulas(m) for f in fs]
    e = explain(m)
    text = " ".join(shown) + e.markdown() + e.html_fragment()
    assert not INTERNAL.findall(text), sorted(set(INTERNAL.findall(text)))


def test_tiny_gpt_names_its_labels_and_stacked_masks():
    fs = model_formulas(zoo.get("tiny_gpt"))
    tex = " ".join(f.latex for f in fs)
    assert r"\mathrm{h0.attn}_{t,j} = " in tex  # a labelled site, by its label
    assert r"\mathrm{h0\_attn\_keep}_{t,j,k}" in tex  # the heads' masks, one array
    grad = " ".join(f.latex for _, g in gradient_formulas(zoo.get("tiny_gpt")) for f in g)
    assert r"= \frac{1}{8}" in grad  # the seed, by its value


# ---------------------------------------------------------------- formulas a new user read wrong
def _report_tex(model) -> str:
    fs = list(model_formulas(model)) + [f for _, g in gradient_formulas(model) for f in g]
    return " ".join(f.latex for f in fs)


def test_cross_entropy_picks_each_rows_target_column():
    """The committed page's wrong line (the target as the row index) is gone; the rows read as
    one layer, nll = lse(Z) - pick(Z, y), pick defined as row t's target column, and the
    gradient program symgrad runs compares row t's target with the column index."""
    wrong = (REPORTS / "gpt_cross_entropy.md").read_text()
    m = zoo.get("gpt_cross_entropy")
    tex = _report_tex(m)
    assert r"\mathrm{logits}_{\mathrm{targets}_{2},0}" not in tex
    layer = (r"\mathrm{nll} = \mathrm{lse}(\mathrm{logits}) - \mathrm{pick}(\mathrm{logits}, "
             r"\mathrm{targets})")
    assert layer in tex
    notes = " ".join(f.note for f in model_formulas(m))
    assert "pick(Z, y)[t] = Z[t, y[t]], row t's target column" in notes
    assert re.search(r"\[\\mathrm\{targets\}_\{2\} = \d\]", tex)  # as computed: row 2's target
    committed = wrong  # the committed page, regenerated: the layer, never the swapped index
    assert layer in committed and r"\mathrm{logits}_{\mathrm{targets}_{2},0}" not in committed
    md = explain(m).markdown()
    assert layer in md and "pick(Z, y)[t] = Z[t, y[t]]" in md and "targets}_{0},0}" not in md
    # an embedding's lookup keeps the id as its row
    assert r"\mathrm{tok\_emb}_{\mathrm{ids}_{0},0}" in _report_tex(zoo.get("gpt_embedding"))


def test_a_pick_among_separate_steps_is_an_indexed_tuple():
    """``cross_entropy(linear(x, W).T, t)``: the logits are separate steps (linear, ...,
    linear^{(4th)}), so the pick indexes their tuple, never a scalar's subscript."""
    x, W, t = sg.matrix("x", 3), sg.matrix("W", 4, 3), sg.matrix("t", 1)
    m = sg.Model("ce_linear", sg.ops.cross_entropy(sg.ops.linear(x, W).T, t), params=[W],
                 inputs={x: Normal(0, 1), t: Integers(0, 3)})
    tex = _report_tex(m)
    fourth = r"\mathrm{linear}^{(4\mathrm{th})}"
    assert (r"\left(\mathrm{linear}, \ldots, " + fourth + r"\right)_{t_{0}}" in tex), tex
    assert fourth + "_{t_{0}}" not in tex and "NaN" not in tex
    # numbered in the order the model made them: the k-th linear is row k - 1
    assert fourth + r" &= W_{3,0} x_{0}" in tex


@pytest.mark.parametrize("name,tex", [
    ("cross_entropy", r"\mathrm{cross\_entropy}"), ("gelu_inner", r"\mathrm{gelu\_inner}"),
    ("W1_out", r"\mathrm{W1\_out}"), ("W1_out_{0,2}", r"\mathrm{W1\_out}_{0,2}"),
    ("delta_W1_out", r"\delta_{\mathrm{W1\_out}}"), ("delta_h", r"\delta_{h}"),
    ("W1_{0,3}", r"W_{1;0,3}"), ("x_t", r"x_{t}"), ("lse_0", r"\mathrm{lse}_{0}"),
    ("x1", r"x_{1}")])  # a user's W1, x1: the number a subscript (the zoo's: test_layer_notation)
def test_a_name_prints_as_one_name(name, tex):
    assert tex_name(name) == tex


def test_one_name_prints_one_way_on_a_page():
    tex = _report_tex(zoo.get("gpt_cross_entropy")) + explain(
        zoo.get("gpt_cross_entropy")).markdown()
    assert r"\mathrm{cross}_{entropy}" not in tex and r"\mathrm{cross\_entropy}" in tex


def test_a_two_layer_dense_model_names_its_units_and_deltas():
    X, t = sg.matrix("x", 2, 3), sg.matrix("t", 2)
    W1, b1, W2, b2 = (sg.matrix("W1", 3, 3), sg.matrix("b1", 3), sg.matrix("W2", 4, 3),
                      sg.matrix("b2", 4))
    h = sg.ops.tanh(sg.ops.dense(X, W1, b1))
    m = sg.Model("mlp", sg.ops.cross_entropy(sg.ops.dense(h, W2, b2), t),
                 params=[W1, b1, W2, b2], inputs={X: Normal(0, 1), t: Integers(0, 3)})
    tex = _report_tex(m)
    # the unlabelled tanh is a layer named after its operand (forward in matrix notation)
    assert (r"\mathrm{tanh\_W1\_out} = \tanh{\left(\mathrm{W1\_out} \right)} \quad (2 \times 3)"
            in tex)
    assert r"\mathrm{W2\_out} = \mathrm{tanh\_W1\_out} W_{2}^{T}" in tex  # the user's W2: W_2
    assert (r"\mathrm{nll} = \mathrm{lse}(\mathrm{W2\_out}) - \mathrm{pick}(\mathrm{W2\_out}, t)"
            in tex)  # the pick, one layer
    assert r"\delta_{\mathrm{W1\_out}}^{T} x" in tex and "delta" not in tex.replace(
        r"\delta", "")


def test_explain_says_nothing_twice():
    """No value equal to its formula (dz/db = 1 = 1), no one-step chain rule dL/dw = dL/dw."""
    md = explain(zoo.get("neuron"), at={"x": 1.5, "w": 0.5, "b": 0.25, "y": 1}).markdown()
    assert r"\frac{\partial z}{\partial b} = 1 $$" in md and "= 1 = 1" not in md
    assert r"\frac{\partial z}{\partial w} = x = 1.5 $$" in md  # a value that says something
    w = sympy.Symbol("w")
    one = explain(sg.Model("sq", sg.ops.step(w ** 2, label="L"), params=[w])).markdown()
    chain = one.split("## Chain rule")[1].split("##")[0]
    assert r"\frac{\partial L}{\partial w} = \frac{\partial L}{\partial w}" not in chain
    assert r"\frac{\partial L}{\partial w} = 2 w" in chain


def test_a_direct_use_beside_other_paths_is_marked_so_the_chain_rule_is_not_circular():
    """newuser5: a softplus regression with an L2 term read "dL/dw1 = dL/dsoftplus dsoftplus/dz
    dz/dw1 + dL/dw1" (the same symbol on both sides) and a local "dL/dw1 = w1/50"."""
    w, b, x = sympy.symbols("w b x")
    m = sg.Model("l2", (sg.ops.softplus(w * x + b) - 1) ** 2 + w ** 2 / 100, params=[w, b],
                 inputs={x: sg.Normal(0, 1)})
    md = explain(m).markdown()
    direct = r"\left.\frac{\partial L}{\partial w}\right|_{\mathrm{direct}}"
    local = md.split("## Local derivatives")[1].split("##")[0]
    chain = md.split("## Chain rule")[1].split("##")[0]
    assert direct + r" = \frac{w}{50}" in local, local
    line = [t for t in chain.splitlines() if t.startswith(r"$$ \frac{\partial L}{\partial w} = "
                                                          r"\frac{\partial L}")][0]
    assert line.rstrip(" $").endswith("+ " + direct), line
    assert r"\frac{\partial L}{\partial b}\right|" not in md  # b has one path: unmarked
    assert ">direct</mtext>" in explain(m).html()


def test_computed_steps_carry_no_seed_factor():
    """The gradient program's first step is dL/dz, not dL/dz times the seed 1."""
    tex = " ".join(f.latex for t, g in gradient_formulas(zoo.get("simplenet"))
                   if t.startswith("As computed") for f in g)
    assert r"y\right) 1" not in tex and r"\right) 1 " not in tex
    first = [f.latex for t, g in gradient_formulas(zoo.get("simplenet"))
             if t.startswith("As computed") for f in g if f.latex][0]
    assert first.startswith(r"v^{(1)} = \left(1 - y\right)") and first.endswith(r"\right) y")


def test_the_step_function_is_theta_in_notes_and_formulas():
    md = explain(zoo.get("simplenet")).markdown()
    assert r"\circ \theta(h)" in md and "H(h)" not in md
    assert "θ is the Heaviside step" in LAYER_NOTE + md and "H is the" not in LAYER_NOTE + md


def test_a_name_inside_other_notation_is_a_name():
    """ux4 S5: notation with "(" that is no single function of names kept its names raw
    (θ(W1_out) + 1 -> KaTeX read W1 with subscript o); each name is now escaped."""
    from symgrad.present.notation import tex_name
    assert tex_name("θ(W1_out) + 1") == r"\theta(\mathrm{W1\_out}) + 1"
    assert "W1_out" not in tex_name("f(W1_out, b_2)")


def test_a_number_before_a_word_name_reads_apart():
    """ux4 S5b: dropout's 1/(1 - p) = 10/9 printed as 10 emb_keep v / 9 read "10emb_keep" in
    the HTML: a number before a word name is printed apart, c · rest; 2 x stays 2 x."""
    from symgrad.present.notation import latex, mathml
    e, v, x = sympy.symbols("emb_keep v x")
    assert latex(10 * e * v / 9) == r"\frac{10}{9} \cdot \mathrm{emb\_keep} v"
    ml = mathml(10 * e * v / 9)
    assert "<mfrac><mn>10</mn><mn>9</mn></mfrac><mo>&#8901;</mo>" in ml, ml
    assert latex(2 * x) == "2 x" and "&#8901;" not in mathml(2 * x)


def test_text_keeps_its_spaces_in_mathml():
    """ux4 S5b: \\text{reshaped to (8, 2, 8)} read "reshapedto(8,2,8)" in the HTML."""
    from symgrad.present.texmath import tex_to_mathml
    ml = tex_to_mathml(r"v = u\ \text{reshaped to (8, 2, 8)} + \mathrm{W1\_out}")
    assert "<mtext>reshaped to (8, 2, 8)</mtext>" in ml and ">W1_out</mi>" in ml, ml


def _huber_and_mlp():
    u, v, a, c = sympy.symbols("u v a c")
    r = a * u + c - v
    huber = sg.Model("huber", sympy.Piecewise((r ** 2 / 2, sympy.Abs(r) <= 1),
                                              (sympy.Abs(r) - sympy.Rational(1, 2), True)),
                     params=[a, c], inputs={u: Normal(0, 1), v: Normal(0, 1)})
    X, t = sg.matrix("X", 2, 3), sg.matrix("t", 2)
    W1, W2 = sg.matrix("W1", 4, 3), sg.matrix("W2", 3, 4)
    mlp = sg.Model("mlp", sg.ops.cross_entropy(sg.ops.dense(sg.ops.tanh(
        sg.ops.dense(X, W1)), W2), t), params=[W1, W2], inputs={X: Normal(0, 1),
                                                               t: Integers(0, 2)})
    return huber, mlp


def test_a_piecewise_and_an_elementwise_power_read_as_in_latex_in_mathml():
    """newuser4 S3-1: sympy's MathML printed a Huber loss as piecewise(((...), True)) and an
    elementwise square as hadamardpower(h, 2) on every HTML page (explain and report), where
    the LaTeX has cases and h^{∘2}; < and > came out raw, breaking the page's markup."""
    huber, mlp = _huber_and_mlp()
    page = explain(huber).html_fragment()
    cases = explain(huber).markdown().count(r"\begin{cases}")
    assert "piecewise" not in page and cases > 0
    assert page.count('<mtable columnalign="left left">') == cases
    assert page.count("<mtext>otherwise</mtext>") == cases
    assert "hadamardpower" not in explain(mlp).html_fragment()
    x, y = sympy.symbols("x y")
    ml = mathml(sympy.Piecewise((x, x < 0), (y, True)))
    assert "<mo>&lt;</mo>" in ml and "<mtext>otherwise</mtext>" in ml
    parseString(ml)  # well-formed
    square = mathml(sympy.HadamardPower(sympy.MatrixSymbol("h", 2, 2), 2))
    assert "<msup><mi>h</mi><mrow><mo>&#8728;</mo><mn>2</mn></mrow></msup>" in square, square


def test_a_sigmoid_layers_delta_reads_one_minus_a():
    """newuser4 S3-8: simplenet's 1 x 1 sigmoid layer printed δ_z = δ_a ∘ a ∘ (−a + 𝕀): sympy
    canonicalised 1 − a to −a + I (an identity matrix to the reader)."""
    md = explain(zoo.get("simplenet")).markdown()
    assert r"\delta_{z} = \delta_{a} \circ a \circ \left(1 - a\right)" in md
    assert r"\mathbb{I}" not in md + _report_tex(zoo.get("simplenet"))


def test_a_report_differentiates_the_readers_symbols_as_real():
    """newuser4 S3-11: a Huber loss on plain sp.symbols (no real=True, as a reader writes them)
    got a report gradient of re/im parts, (im(c) sign(r) ∂im(au)/∂a + ...)/r: sympy.diff of
    |r| over complex symbols. Its textbook form now reads u sign(r), as explain writes it."""
    huber, _ = _huber_and_mlp()
    tex = " ".join(f.latex for title, fs in gradient_formulas(huber) if title.startswith(
        "Textbook") for f in fs)
    assert r"\operatorname{im}" not in tex and r"\operatorname{re}" not in tex, tex
    assert r"u \operatorname{sign}{\left(c - v + a u \right)}" in tex, tex
