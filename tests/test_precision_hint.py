"""A precision-loss warning's hint looks at which ops the model was written with (issue 17,
new-user item 3): "a stable form would avoid it" only where the model has none of symgrad's
stable ops; with ops.bce (from the logit), ops.softplus, ops.cross_entropy the digits are lost
in the code verified (symgrad's own program keeps them at the same entry) or inherently."""

import sympy as sp
import torch

import symgrad as sg
from symgrad.causes import precision_loss, stable_ops
from symgrad.compare import LOSS
from symgrad.report import Entry, model_json, model_markdown
from symgrad.tensor.model import program_of
from symgrad.present.step_derivation import steps_of

STABLE_HINT = "a stable form would avoid it"


def _neuron():
    x, y, w, b = sp.symbols("x y w b")
    return sg.Model("my_neuron", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
                    inputs={x: sg.Uniform(-30, 30), y: sg.Choice([0.0, 1.0])})


def _ops(model) -> list[str]:
    return stable_ops((n.kind, n.expr) for n in steps_of(program_of(model)).nodes)


def test_which_stable_ops_a_model_uses():
    x, y, w, p = sp.symbols("x y w p")
    assert _ops(_neuron()) == ["ops.bce"]
    plain_bce = sg.Model("bce_of_p", sg.ops.bce(sg.ops.tanh(w * x) ** 2, y), params=[w],
                         inputs=[x, y])
    assert _ops(plain_bce) == []  # bce of a probability runs the form as written
    assert _ops(sg.Model("sp", sg.ops.softplus(w * x), params=[w], inputs=[x])) == \
        ["ops.softplus"]


def test_hint_for_each_case():
    plain = precision_loss("torch", []).explanation
    assert "a stable form (log1p" in plain and "would avoid it" in plain
    inherent = precision_loss("numpy", ["ops.cross_entropy"])
    assert inherent.name == "inherent cancellation" and "would avoid" not in inherent.explanation
    assert "ops.cross_entropy" in inherent.explanation
    theirs = precision_loss("torch_fn", ["ops.bce"], own_loses=False)
    assert theirs.name == "cancellation in the code verified"
    both = precision_loss("torch_fn", ["ops.bce"], own_loses=True)
    assert both.name == "inherent cancellation" and "loses these digits too" in both.explanation


def test_report_of_an_ops_bce_model_says_where_the_digits_are_lost():
    """Meant to fail on the old legend, "a stable form would avoid it", under a model written
    with ops.bce (symgrad's stable form): nn.BCELoss on torch.sigmoid loses digits that
    symgrad's own program keeps, and the page says so, entry by entry."""
    model = _neuron()

    def mine(w, b, x, y):
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)
    r = sg.verify(model, torch_fn=mine, samples=200, seed=0)
    warnings = [f for f in r.findings("warnings") if f.backend == "torch_fn"]
    assert warnings
    md = model_markdown(Entry(model, r, 0.0), "x.png")
    assert STABLE_HINT not in md and "already uses symgrad's stable forms (ops.bce)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| torch_fn  | precision loss")]
    assert rows and all("cancellation in the code verified" in ln for ln in rows), rows
    shown = model_json(Entry(model, r, 0.0))["findings"]["precision-loss warnings"]["shown"]
    assert {f["cause"] for f in shown if f["backend"] == "torch_fn"} == {
        "precision loss: cancellation in the code verified"}
    for f in warnings:  # the claim checked against the data: symgrad's own entries keep them
        row = list(r.oracle_samples).index(f.sample)
        col = r.outputs.index(f.output)
        assert all(int(r.comparisons[n].status[row, col]) != LOSS for n in ("numpy", "torch"))
