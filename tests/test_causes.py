"""Each root-cause class, triggered for real (the catalogue of torch behaviours included)."""

import sympy as sp
import torch
import torch.nn.functional as F

import symgrad as sg


def _causes(r):
    return {f.cause for f in r.failures}


def test_bce_loss_clamp_is_named(models):
    m = models["simplenet"]
    r = sg.verify(m, torch_fn=m.reference, samples=500, seed=2)
    assert _causes(r) == {"saturation/clamping inside torch: BCELoss clamp"}
    assert "p(1-p) = " in r.failures[0].note


def test_softplus_threshold_is_named():
    w, x = sp.symbols("w x")
    m = sg.Model("softplus", sg.ops.softplus(w * x), params={w: sg.Uniform(10, 30)},
                 inputs={x: sg.Uniform(1, 2)})
    r = sg.verify(m, samples=40, seed=0, torch_fn=lambda w, x: F.softplus(w * x))
    assert _causes(r) == {"known torch convention: softplus threshold"}


def test_saturated_logit_precision_is_named():
    w, b, x, y = sp.symbols("w b x y")
    m = sg.Model("logits", sg.ops.bce(sg.ops.sigmoid(w * x + b), y),
                 params={w: sg.Uniform(6, 12), b: sg.Normal()},
                 inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
    r = sg.verify(m, samples=200, seed=0,
                  torch_fn=lambda w, b, x, y: F.binary_cross_entropy_with_logits(w * x + b, y))
    assert not r.ok and _causes(r) == {"precision loss: saturated logit"}


def test_real_error_where_trap_and_domain(models):
    m = models["neuron"]
    wrong = sg.verify(m, torch_fn=lambda w, b, x, y: F.binary_cross_entropy(
        torch.sigmoid(w * x * (1 + 1e-9) + b), y), samples=40, seed=0)
    assert "real derivative error: mismatch" in _causes(wrong)
    w = sp.Symbol("w")
    trap = sg.verify(sg.Model("trap", sp.Piecewise((sp.sqrt(w), w > 0), (w**2, True)),
                              params=[w]), samples=40, seed=0,
                     torch_fn=lambda w: torch.where(w > 0, torch.sqrt(w), w**2))
    assert "known torch convention: where-trap" in _causes(trap)
    dom = sg.verify(sg.Model("dom", sp.log(w), params=[w]), samples=40, seed=0)
    assert _causes(dom) == {"domain: domain"}
