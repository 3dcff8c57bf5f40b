"""What a reader sees: every formula of every zoo page the same in HTML (MathML) as in Markdown
and LaTeX, the committed report pages included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symgrad import explain, zoo
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
INTERNAL = re.compile(r"(?<![&#\w])e\d+\[|mathrm\{e\d+\}|>e\d+<|\bseed\b|(?<![&\w])#\d|_d_|"
                      r"gelu\\?_inner|keep\d+\[|keep\d+\}|keep\d+<")


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
