"""Each root-cause class, triggered for real (the catalogue of torch behaviours included)."""

import pytest
import sympy as sp
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.testing import scale_backward
from symgrad import causes


def _causes(r):
    return {f.cause for f in r.failures}


def test_causes_does_not_import_the_pipeline():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(causes))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "verify" not in imported and ".verify" not in str(imported)


def test_bce_loss_clamp_is_named(models):
    m = models["simplenet"]
    r = sg.verify(m, torch_fn=m.reference, samples=500, seed=2)
    assert _causes(r) == {"saturation/clamping inside torch: BCELoss clamp"}
    assert "p(1-p) = " in r.failures[0].note


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float32_bce_loss_value_clamp_is_a_mismatch_and_named(dtype):
    w, x, y = sp.symbols("w x y")
    m = sg.Model("sat", sg.ops.bce(sg.ops.sigmoid(w * x), y), params={w: sg.Uniform(16, 17)},
                 inputs={x: sg.Uniform(0.99, 1.01), y: sg.Choice([0.0])})
    bce = torch.nn.BCELoss()
    r = sg.verify(m, samples=20, seed=0, dtype=dtype, backends=("torch_fn",),
                  torch_fn=lambda w, x, y: bce(torch.sigmoid(w * x), y))
    value = [f for f in r.failures if f.output == "value"]
    assert not r.ok and value and value[0].kind == "mismatch" and value[0].got == 100.0
    assert value[0].cause == "saturation/clamping inside torch: BCELoss clamp"
    assert f"rounds to 1 in {dtype}" in value[0].note


def test_softplus_threshold_is_named():
    w, x = sp.symbols("w x")
    m = sg.Model("softplus", sg.ops.softplus(w * x), params={w: sg.Uniform(10, 30)},
                 inputs={x: sg.Uniform(1, 2)})
    r = sg.verify(m, samples=40, seed=0, torch_fn=lambda w, x: F.softplus(w * x))
    assert _causes(r) == {"known torch convention: softplus threshold"}


def test_softplus_threshold_is_named_for_a_plain_log_one_plus_exp():
    w, x = sp.symbols("w x")
    m = sg.Model("plain_softplus", sp.log(1 + sp.exp(w * x)), params={w: sg.Uniform(10, 30)},
                 inputs={x: sg.Uniform(1, 2)})
    r = sg.verify(m, samples=40, seed=0, torch_fn=lambda w, x: F.softplus(w * x))
    assert not r.ok and _causes(r) == {"known torch convention: softplus threshold"}


def test_saturated_logit_precision_is_named():
    w, b, x, y = sp.symbols("w b x y")
    m = sg.Model("logits", sg.ops.bce(sg.ops.sigmoid(w * x + b), y),
                 params={w: sg.Uniform(6, 12), b: sg.Normal()},
                 inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
    r = sg.verify(m, samples=200, seed=0,
                  torch_fn=lambda w, b, x, y: F.binary_cross_entropy_with_logits(w * x + b, y))
    assert not r.ok and _causes(r) == {"precision loss: saturated logit"}



def test_first_split_function_differs_versus_derivative_wrong(models):
    m = models["neuron"]
    forward_bug = sg.verify(m, backends=("torch_fn",), samples=40, seed=0,
                            torch_fn=lambda w, b, x, y: F.binary_cross_entropy(
                                torch.sigmoid(w * x * (1 + 1e-9) + b), y))
    klasses = {f.cause.split(":")[0] for f in forward_bug.failures}
    assert "function differs" in klasses and "derivative wrong" not in klasses
    backward_bug = sg.verify(m, backends=("torch_fn",), samples=40, seed=0,
                             torch_fn=lambda w, b, x, y: F.binary_cross_entropy(
                                 torch.sigmoid(scale_backward(w, 1 + 1e-9) * x + b), y))
    assert {f.output for f in backward_bug.failures} <= {"d/dw"}
    assert "derivative wrong: real derivative error" in _causes(backward_bug)
    assert not any(c.startswith("function differs") for c in _causes(backward_bug))


def test_where_trap_and_domain():
    w = sp.Symbol("w")
    trap = sg.verify(sg.Model("trap", sp.Piecewise((sp.sqrt(w), w > 0), (w**2, True)),
                              params=[w]), samples=40, seed=0,
                     torch_fn=lambda w: torch.where(w > 0, torch.sqrt(w), w**2))
    assert "known torch convention: where-trap" in _causes(trap)
    dom = sg.verify(sg.Model("dom", sp.log(w), params=[w]), samples=40, seed=0)
    assert {c.split(" — ")[-1] for c in _causes(dom)} == {"domain: domain"}


def test_float16_guard_rounding_to_zero_is_not_a_where_trap():
    w = sp.Symbol("w")
    m = sg.Model("guard", sp.Max(w, 0) + sp.sqrt(w**2 + sp.Float(1e-10)), params=[w])
    r = sg.verify(m, at={w: [0.0, 0.0]}, dtype="float16", backends=("torch",))
    nonfinite = [f for f in r.failures if f.kind == "non-finite"]
    assert nonfinite and all("guard rounds to zero" in f.cause for f in nonfinite)
    assert not any("where-trap" in f.cause for f in r.failures)


def test_integer_input_promoted_to_float32_is_named():
    w, k = sp.symbols("w k")
    m = sg.Model("intlog", w * sp.log(k), params={w: sg.Normal()},
                 inputs={k: sg.Integers(2, 9)})
    r = sg.verify(m, samples=30, seed=0, backends=("torch_fn",),
                  torch_fn=lambda w, k: w * torch.log(k))
    assert not r.ok
    assert _causes(r) == {"dtype promotion in user code: integer input promoted"}
    assert "log" in r.failures[0].note


def test_nan_from_a_fully_masked_row_is_not_a_where_trap():
    a, b = sp.symbols("a b")
    # the model: a softmax-weighted sum over a row whose every entry the user's code masks
    m = sg.Model("masked", sp.Max(a, 0) + sp.exp(a) / (sp.exp(a) + sp.exp(b)), params=[a, b])

    def fn(a, b):
        row = torch.stack([a, b]).masked_fill(torch.tensor([True, True]), float("-inf"))
        return torch.relu(a) + torch.softmax(row, 0)[0]
    r = sg.verify(m, samples=10, seed=0, backends=("torch_fn",), torch_fn=fn)
    assert not r.ok and not any("where-trap" in c for c in _causes(r))
    assert any(c.startswith("function differs") for c in _causes(r))
