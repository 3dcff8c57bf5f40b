import json
import re

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import zoo

from symgrad.cli import main
from symgrad.atomic import write_text


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    assert main(["report", "neuron", "simplenet", "--out", str(out), "--samples", "60"]) == 0
    return out


def test_all_files_are_written(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    for m in ("neuron", "simplenet"):
        assert {f"{m}.md", f"{m}.html", f"{m}.json", f"{m}.png"} <= names
    assert {"index.md", "index.html"} <= names
    assert not [n for n in names if n.endswith(".tmp")]


def test_json_schema_and_determinism(report_dir, tmp_path):
    doc = json.loads((report_dir / "neuron.json").read_text())
    assert doc["schema_version"] == 2
    assert doc["tolerance"]["rule"].startswith("|got - exact|")
    assert {"symgrad", "sympy", "torch", "numpy"} <= set(doc["environment"])
    assert main(["report", "neuron", "--out", str(tmp_path), "--samples", "60"]) == 0
    assert (tmp_path / "neuron.json").read_bytes() == (report_dir / "neuron.json").read_bytes()


def test_markdown_math_and_index(report_dir):
    md = (report_dir / "neuron.md").read_text()
    assert "$$" in md and "![error histogram](neuron.png)" in md
    index = (report_dir / "index.md").read_text()
    assert "| neuron" in index and "sympy" in index and "torch" in index


def test_html_is_self_contained(report_dir):
    page = (report_dir / "simplenet.html").read_text()
    assert "<math" in page and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # works offline


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.md"
    write_text(target, "old")

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_interrupted_write_keeps_the_previous_set(report_dir, monkeypatch):
    from symgrad import atomic
    before = {p.name: p.read_bytes() for p in report_dir.iterdir()}
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(path, data)
    original = atomic.write_bytes
    monkeypatch.setattr(atomic, "write_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_set(report_dir, {"neuron.md": "new", "index.md": "new", "x.md": "new"})
    assert {p.name: p.read_bytes() for p in report_dir.iterdir()} == before
    assert not [p for p in report_dir.parent.iterdir() if ".staging-" in p.name]


def _tables(md: str) -> list[list[str]]:
    blocks, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    return blocks + ([cur] if cur else [])


def test_index_tables_have_header_rows_and_the_verdict_rule(report_dir):
    index = (report_dir / "index.md").read_text()
    tables = _tables(index)
    assert len(tables) == 3  # per model, per backend, environment
    for t in tables:
        assert set(t[1].replace("|", "").strip()) <= set("-: ")  # a header separator row
    assert "| model" in tables[0][0] and "worst error / allowance" in tables[0][0]
    for status in ("ok", "precision loss", "kink", "failures"):
        assert f" {status} " in tables[1][0]
    assert "## Verdict rule" in index and "|got - exact| <= 4 * u * E" in index
    assert "<table>" in (report_dir / "index.html").read_text()


def test_exact_zeros_are_measured_against_their_terms(tmp_path):
    assert main(["report", "gpt_attention", "--out", str(tmp_path), "--samples", "20",
                 "--no-progress"]) == 0
    md = (tmp_path / "gpt_attention.md").read_text()
    doc = json.loads((tmp_path / "gpt_attention.json").read_text())
    for text in (md, (tmp_path / "index.md").read_text()):
        assert not re.search(r"\binf\b|e\+(?:[4-9]\d|\d{3})", text)  # no inf, no 1e50 ULPs
    for s in doc["summary"].values():
        assert 0 < s["worst_error_over_allowance"] < 1
        assert 0 < s["worst_correct_digits"] <= s["dtype_digits"]
    shown = doc["findings"]["precision-loss warnings"]
    assert f"showing {len(shown['shown'][:10])} of {shown['total']}, worst first" in md
    ratios = [f["error_over_allowance"] for f in shown["shown"]]
    assert ratios == sorted(ratios, reverse=True)
    sample = shown["shown"][0]["sample"]
    point = doc["points"][str(sample)]
    assert set(point) == {"X", "Wq", "Wk", "Wv", "Wo", "bo", "bq", "bk", "bv", "attn_keep0",
                          "attn_keep1"}
    from symgrad import zoo
    from symgrad.verify import as_program  # the page's recipe reproduces the sample exactly
    again = as_program(zoo.get("gpt_attention")).draw(20, np.random.default_rng(0), "float64")
    assert all(np.array_equal(np.asarray(point[b]), again[b][sample]) for b in again)
    assert "as_program(model).draw(20, np.random.default_rng(0), 'float64')" in md


def test_tiny_gpt_report_from_its_tensor_program(tmp_path):
    """tiny_gpt's page: the tensor program one line per operation (layer 1 folded), the
    double-double oracle and its certification, the same JSON in every process."""
    cfg = json.dumps({"vocab_size": 6, "context_length": 3, "emb_dim": 4, "n_heads": 2,
                      "n_layers": 2})
    args = ["report", "tiny_gpt", "--config", cfg, "--samples", "6", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    md = (tmp_path / "a" / "tiny_gpt.md").read_text()
    assert md.startswith("# tiny_gpt: PASS") and "tensor operations" in md
    assert "layer 1: the same" in md and "6 of 6 samples checked" in md
    doc = json.loads((tmp_path / "a" / "tiny_gpt.json").read_text())
    assert doc["schema_version"] == 2 and doc["result"]["ok"]
    assert doc["oracle"]["method"].startswith("double-double")
    assert doc["oracle"]["certified"].startswith(f"{1 + doc['result']['program_size']['parameters']}/")
    assert any(r"\sum_" in s["latex"] for s in doc["steps"])
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "tiny_gpt.json").read_text() == json.dumps(doc, indent=2,
                                                                          sort_keys=True) + "\n"


def test_three_outcomes_in_the_report(report_dir):
    index = (report_dir / "index.md").read_text()
    assert "2 of 2 models passed, 0 inconclusive, 0 failed." in index
    page = (report_dir / "index.html").read_text()
    assert 'class="verdict verdict-pass" style="background:#1a7f37' in page
    md = (report_dir / "neuron.md").read_text()
    assert md.startswith("# neuron: PASS") and "Decided by torch_fn (the code verified)" in md
    assert "Resolution: " in md and "would not be seen in float64 at 60 samples" in md
    doc = json.loads((report_dir / "neuron.json").read_text())
    assert doc["result"]["verdict"] == "pass" and doc["result"]["deciding"] == ["torch_fn"]
    assert doc["summary"]["numpy"]["decides"] is False


def test_own_program_findings_are_labelled_in_the_report(lse_overflow):
    """symgrad's own program overflows (plain log(exp(z0) + exp(z1)) at z1 = 200, float32)
    beside an exact torch.logsumexp: the model passes, and the report's finding rows name
    the own program as not deciding."""
    from symgrad.report import Entry, model_markdown
    m, r = lse_overflow
    md = model_markdown(Entry(m, r, 0.0), "lse.png")
    assert md.startswith("# lse: PASS")
    if r.failures:  # today the own programs give inf - inf there
        assert "numpy (symgrad's own program, not deciding)" in md
        assert all(not r.decides(f.backend) for f in r.failures)


@pytest.mark.parametrize("name, dtype", [("neuron", "float32"), ("gpt_embedding", "float64"),
                                         ("gpt_cross_entropy", "float64")])
def test_points_and_recipe_are_the_samples_the_run_verified(name, dtype):
    """The page's points and its reproduction recipe name the samples the verification itself
    compared (the run's recorded values, drawn by the tensor program), integer ids included;
    a planted difference (another seed) is seen."""
    from symgrad.report import Entry, model_json
    from symgrad.verify import as_program
    model = zoo.get(name)
    r = sg.verify(model, samples=6, seed=4, dtype=dtype)
    assert r.values is not None  # the program pipeline records what it compared
    doc = model_json(Entry(model, r, 0.0))
    named = {int(i) for i in doc["points"]}
    assert named, "the page names at least its worst samples"
    recipe = as_program(model).draw(6, np.random.default_rng(4), dtype)
    other = as_program(model).draw(6, np.random.default_rng(5), dtype)
    for i in named:
        for block, v in r.values.items():
            assert np.array_equal(np.asarray(doc["points"][str(i)][block]), v[i])
            assert np.array_equal(recipe[block][i], v[i])
    assert not all(np.array_equal(other[b], r.values[b]) for b in r.values)
    assert f"as_program(model).draw(6, np.random.default_rng(4), {dtype!r})" in doc["reproduce"]
    r.values = None  # a result without recorded samples: drawn again
    assert model_json(Entry(model, r, 0.0))["points"] == doc["points"]


def _tex(sections) -> list[str]:
    return [f.latex for _, fs in sections for f in fs]


def test_plain_model_formulas_come_from_its_program():
    """A plain model's page is read from the tensor program it is verified as (the scalar
    derivation is deleted), and the textbook forms are the tutorial's: dL/dz = a - y for the
    neuron, simplenet one delta per layer."""
    import importlib.util
    from symgrad.report import gradient_formulas, model_formulas
    assert importlib.util.find_spec("symgrad.derive") is None  # the scalar derivation is gone
    neuron = zoo.get("neuron")
    assert [f.latex for f in model_formulas(neuron)] == [
        "z = b + w x", r"a = \sigma\left(z\right)",
        r"L = - y \log{\left(a \right)} - \left(1 - y\right) \log{\left(1 - a \right)}"]
    grad = gradient_formulas(neuron)
    assert grad[0][0] == "Textbook form: the chain rule on the formulas above"
    assert r"\frac{\partial L}{\partial z} = a - y" in _tex(grad)
    assert r"\frac{\partial L}{\partial w} = - x \left(y - a\right)" in _tex(grad)
    assert grad[-1][0].startswith("As computed") and "symgrad runs the stable form" in \
        grad[-1][1][0].note
    net = zoo.get("simplenet")
    assert model_formulas(net)[0].latex == r"h = W^{(1)} x + b^{(1)} \quad (5 \times 1)"
    grad = gradient_formulas(net)
    assert grad[0][0] == "Textbook form: one delta per op (matrix notation)"
    for line in (r"\delta_{r} = \left(W^{(2)}\right)^{T} \delta_{z}",
                 r"\delta_{h} = \delta_{r} \circ \theta(h)",
                 r"\frac{\partial L}{\partial W^{(1)}} = \delta_{h} x^{T}"):
        assert line in _tex(grad)
    shown = " ".join(_tex(grad[-1:]))  # the gradient program, entries by their names
    assert r"W^{(2)}_{0," in shown and r"\theta\left(h_{" in shown


def test_a_plain_models_formulas_follow_its_own_steps():
    """The chain rule is computed from the program's steps: another loss, another gradient
    (a page that printed a fixed neuron would fail here)."""
    import sympy as sp
    from symgrad.report import gradient_formulas, model_formulas
    x, y, w = sp.symbols("x y w")
    m = sg.Model("sq", (w * x - y) ** 2, params=[w],
                 inputs={x: sg.Uniform(-1, 1), y: sg.Uniform(-1, 1)})
    assert [f.latex for f in model_formulas(m)] == [r"L = \left(- y + w x\right)^{2}"]
    grad = _tex(gradient_formulas(m))
    assert r"\frac{\partial L}{\partial w} = 2 x \left(- y + w x\right)" in grad, grad


def test_gpt_block_rules_keep_their_fractions_in_html():
    """The GPT blocks' textbook rules on their pages: attention's delta_Q divided by sqrt(d),
    dropout's m/(1-p), cross-entropy's 1/T, LayerNorm's r_t/C: fractions in the MathML too."""
    from symgrad.report import gradient_formulas
    wanted = {"gpt_attention": [r"\frac{\delta_S K}{\sqrt{d}}", r"\frac{\delta_{y} \circ m}{1 - p}"],
              "gpt_cross_entropy": [r"\frac{1}{T}"], "gpt_layer_norm": [r"\frac{r_t}{C}"]}
    for name, texts in wanted.items():
        fs = [f for _, g in gradient_formulas(zoo.get(name)) for f in g]
        for t in texts:
            (f,) = [f for f in fs if t in f.latex]
            assert "<mfrac>" in f.mathml and ("sqrt" not in t or "<msqrt>" in f.mathml), name


def test_a_tensor_model_of_scalar_maps_over_arrays_keeps_the_array_view():
    """Only a program of named scalar steps (a plain model's, its FrontStep tags) gets the step
    view: a scalar map over a sum of an array (a user's TensorModel) is shown node by node, not
    misread as steps."""
    import symgrad.tensor as st
    from symgrad.present.step_formulas import View
    from symgrad.report import gradient_formulas, model_formulas
    from symgrad.tensor.model import TensorModel
    from symgrad.verify import as_program
    W, x = st.param("W", (3,)), st.input("x", (3,))
    m = TensorModel("s", st.tanh(st.sum_(st.einsum("i,i->i", W, x))))
    assert View(m).steps is None
    assert "tensor operations" in model_formulas(m)[0].note
    assert gradient_formulas(m)[-1][0].startswith("As computed")
    assert View(as_program(zoo.get("simplenet"))).steps is not None
    assert View(zoo.get("tiny_gpt")).steps is None


def test_as_computed_names_the_stable_rewrites_the_program_runs():
    """A hand-written BCE runs as softplus in symgrad's own programs: the report's "as
    computed" section names each rewrite (the program carries them, ``TensorModel.rewrites``);
    a model without one names none."""
    from symgrad.report import gradient_formulas
    x, y, w, b = sp.symbols("x y w b")
    s = 1 / (1 + sp.exp(-(w * x + b)))
    bce = sg.Model("bce", -(y * sp.log(s) + (1 - y) * sp.log(1 - s)), params=[w, b],
                   inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
    notes = [f.note or "" for t, fs in gradient_formulas(bce) if t.startswith("As computed")
             for f in fs]
    assert any("computed as" in n and "softplus(−t)" in n and "softplus(t)" in n for n in notes)
    plain = sg.Model("sq", (w * x - y) ** 2, params=[w], inputs={x: sg.Normal(), y: sg.Normal()})
    assert not any("computed as" in (f.note or "") for _, fs in gradient_formulas(plain)
                   for f in fs)
