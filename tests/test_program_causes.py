"""The named root causes on the program path (ported from tests/test_causes.py before the scalar
``causes.classify`` is deleted): every plain ``sg.Model`` is verified as its tensor program,
whose failures are named by ``symgrad.tensor.context.classify`` -> ``causes.classify_failure``.

The catalogue's causes (BCELoss clamp, softplus threshold, saturated logit, integer input
promoted, where-trap, guard rounds to zero, domain, overflow, function differs / derivative
wrong) are triggered end to end by tests/test_causes.py, which runs on the program by default;
this file adds the kinds' causes the scalar classify named that no program test triggered:
"flushed to zero", "intermediate overflow", "forward NaN" - each with the correct code beside it
(meant to pass) - and the first split through ``classify_failure`` on a program's failure."""

import numpy as np
import sympy as sp
import torch

import symgrad as sg
from symgrad import causes, zoo
from symgrad.tensor import context
from symgrad.tensor.front import to_program
from symgrad.testing import scale_backward

w = sp.Symbol("w")


def _causes(r, backend: str = "torch_fn") -> dict:
    return {(f.sample, f.output): f.cause for f in r.failures if f.backend == backend}


def test_flushed_to_zero_and_intermediate_overflow_are_named():
    """3|w| computed as 3 sqrt(w*w) at w = 1e-200: w*w underflows to 0, so the value is 0 for
    3e-200 (flushed to zero) and the gradient 3 w / sqrt(0) is inf where the exact one is 3
    (an intermediate over/underflow, not a where-trap: no branch, the value is finite)."""
    m = sg.Model("abs3", sp.Abs(w) * 3, params=[w])
    at = {"w": np.array([1e-200, 3.0])}
    r = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda w: 3 * torch.sqrt(w * w))
    assert r.verdict == "fail"
    assert _causes(r) == {(0, "value"): "overflow: flushed to zero",
                          (0, "d/dw"): "overflow: intermediate overflow"}
    assert [f.kind for f in r.failures if f.output == "d/dw"] == ["non-finite"]
    good = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda w: 3 * torch.abs(w))
    assert good.ok and good.verdict == "pass", str(good)


def test_a_non_finite_loss_value_is_a_forward_nan():
    """sigmoid written e^w / (1 + e^w) at w = 800: inf / inf = NaN in the forward (the exact
    value is 1): the value and its gradient are named "forward NaN" (the forward breaks, not
    the derivative); torch.sigmoid passes there."""
    m = sg.Model("sigmoid", 1 / (1 + sp.exp(-w)), params=[w])
    at = {"w": np.array([800.0, 1.0])}
    r = sg.verify(m, at=at, backends=("torch_fn",),
                  torch_fn=lambda w: torch.exp(w) / (1 + torch.exp(w)))
    assert r.verdict == "fail"
    assert _causes(r) == {(0, "value"): "function differs: forward NaN",
                          (0, "d/dw"): "function differs: forward NaN"}
    assert sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda w: torch.sigmoid(w)).ok


def test_classify_failure_splits_function_differs_from_derivative_wrong():
    """The first split read again through ``context.classify`` on the program's own failure:
    a backward scaled by 1 + 1e-9 (value right) is "derivative wrong"; the same failure with
    the loss value failing at that sample is "function differs"; at order 2 (Hessian-vector
    products) it is the second derivative that is wrong."""
    model = zoo.get("neuron")
    tm = to_program(model)
    r = sg.verify(tm, backends=("torch_fn",), samples=20, seed=0,
                  torch_fn=lambda w, b, x, y: torch.nn.functional.binary_cross_entropy(
                      torch.sigmoid(scale_backward(w, 1 + 1e-9) * x + b), y))
    f = next(f for f in r.failures if f.output == "d/dw")
    assert f.cause == "derivative wrong: real derivative error"
    leaves = {k: v[f.sample:f.sample + 1] for k, v in r.values.items()}
    ctx = causes.Context(dtype="float64", value_status="ok")
    assert context.classify(tm, f, ctx, leaves).name == "real derivative error"
    ctx = causes.Context(dtype="float64", value_status="mismatch")
    assert context.classify(tm, f, ctx, leaves).name == "different function"
    hvp = to_program(model)
    hvp.order = 2  # as symgrad.hvp marks its Hessian-vector-product program
    ctx = causes.Context(dtype="float64", value_status="ok")
    assert context.classify(hvp, f, ctx, leaves).name == "real second-derivative error"
