"""Kinks: reached when an argument is within its own rounding bound of the kink; a smooth
function written with Abs/Max has none; at a real kink the backend's gradient must be one
convex combination of the one-sided derivatives (checked jointly, not entry by entry)."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import KinkSides, MISMATCH, KINK, Tolerance, compare, convex_combination


class GivenGrad(torch.autograd.Function):
    """Forward: the value of ``y``; backward: hands ``weights * g`` to (w1, w2, w3)."""

    @staticmethod
    def forward(ctx, y, w1, w2, w3, weights):
        ctx.weights = weights
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        a, b, c = ctx.weights
        return None, g * a, g * b, g * c, None


def _tie_model():
    w1, w2, w3 = sp.symbols("w1 w2 w3")
    return sg.Model("max3", 2 * sp.Max(w1, w2, w3), params=[w1, w2, w3])


def _tie_fn(weights):
    def fn(w1, w2, w3):
        y = torch.maximum(torch.maximum(w1, w2), w3).detach()
        return 2 * GivenGrad.apply(y, w1, w2, w3, weights)
    return fn


TIE = {"w1": np.array([1.0]), "w2": np.array([1.0]), "w3": np.array([1.0])}


@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0),
                                     (0.0, 0.25, 0.75)])
def test_subgradient_at_a_three_way_tie_passes(weights):
    r = sg.verify(_tie_model(), at=TIE, torch_fn=_tie_fn(weights))
    assert r.ok, str(r)
    assert (r.comparisons["torch_fn"].status == KINK).any()
    if weights == (1.0, 0.0, 0.0):  # a vertex: the side is named
        notes = [f.note for f in r.kinks if f.backend == "torch_fn"]
        assert any("w1 wins the max" in n for n in notes), notes


@pytest.mark.parametrize("weights, jointly", [((1.0, 1.0, 1.0), True), ((0.5, 0.5, 0.5), True),
                                              ((1.0, -0.5, 0.5), False)])
def test_no_subgradient_at_a_tie_fails(weights, jointly):
    """(1, 1, 1): each entry lies in [0, 2], but together they are no convex combination (the
    old entry-by-entry check passed it); (1/2, 1/2, 1/2) is even sympy's own H(0) = 1/2."""
    r = sg.verify(_tie_model(), at=TIE, torch_fn=_tie_fn(weights))
    assert r.verdict == "fail"
    assert r.comparisons["numpy"].ok and r.comparisons["torch"].ok  # symgrad's own rows
    assert {f.backend for f in r.failures} == {"torch_fn"}
    assert ("convex combination" in r.failures[0].message()) == jointly


def test_underflowing_product_reaches_the_kink():
    """w*x rounds to 0 (w = 5e-324): relu's H(0) is one side of the kink, not an error."""
    w, x = sp.symbols("w x")
    m = sg.Model("underflow", sp.Max(0, w * x) + sp.tanh(w * x), params=[w], inputs=[x])
    r = sg.verify(m, at={"w": np.array([5e-324, 0.25]), "x": np.array([0.5, 0.5])},
                  torch_fn=lambda w, x: torch.relu(w * x) + torch.tanh(w * x))
    assert r.verdict != "fail", str(r)
    assert r.kinks and all(f.sample == 0 for f in r.kinks)
    relu = [f for f in r.kinks if f.backend == "torch_fn"][0]
    assert "H(0) = 0" in relu.note and "w*x → 0−" in relu.note  # torch.relu: the left side


def test_hinge_whose_product_rounds_to_one():
    w, x = sp.symbols("w x")
    m = sg.Model("hinge", sp.Max(0, 1 - w * x), params=[w], inputs=[x])
    assert 3.0 * (1 / 3) == 1.0 and sp.Rational(3) * sp.Rational(1 / 3) != 1
    r = sg.verify(m, at={"w": np.array([3.0]), "x": np.array([1 / 3])},
                  torch_fn=lambda w, x: torch.relu(1 - w * x))
    assert r.verdict != "fail", str(r)
    assert r.kinks
    # a wrong slope at the same point is still caught
    wrong = sg.verify(m, at={"w": np.array([3.0]), "x": np.array([1 / 3])},
                      torch_fn=lambda w, x: 2 * torch.relu(1 - w * x) - 3 * (w - w.detach()))
    assert wrong.verdict == "fail"


def _softplus(w):
    return sp.Max(w, 0) + sp.log(1 + sp.exp(-sp.Abs(w)))


def test_stable_softplus_has_no_kink_at_zero():
    """Max(w, 0) + log(1 + e^-|w|) is smooth: both sides give 1/2, a slope of 0.9 fails."""
    w = sp.Symbol("w")
    m = sg.Model("softplus", _softplus(w), params=[w])
    at = {"w": np.array([0.0, 1.0])}
    good = sg.verify(m, at=at, torch_fn=lambda w: torch.nn.functional.softplus(w))
    assert good.ok and not good.kinks, str(good)
    bad = sg.verify(m, at=at, torch_fn=lambda w: torch.nn.functional.softplus(w)
                    + 0.4 * (w - w.detach()))
    assert bad.verdict == "fail"
    assert any(f.sample == 0 and f.kind == "mismatch" for f in bad.failures)


def test_sigmoid_backward_scaled_at_zero_fails(models):
    """The neuron's BCE runs through softplus(+-z) (Abs, Max): no kink at z = 0."""

    def fn(w, b, x, y):
        z = w * x + b
        z = z * 1.5 - (z * 0.5).detach()  # value z, gradient x1.5
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(z), y)
    at = {"w": np.array([0.0, 0.0]), "b": np.array([0.0, 0.0]), "x": np.array([1.0, 2.0]),
          "y": np.array([0.0, 1.0])}
    r = sg.verify(models["neuron"], at=at, torch_fn=fn)
    assert r.verdict == "fail" and not r.kinks
    assert sg.verify(models["neuron"], at=at, torch_fn=lambda w, b, x, y:
                     torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)).ok


@pytest.mark.parametrize("build, torch_fn, at", [
    (lambda w: sp.Abs(w) * 3, lambda w: torch.abs(w) * 3, [0.0, -1.0]),
    (lambda w: sp.sign(w) * w + w, lambda w: torch.sign(w) * w + w, [0.0, 2.0]),
    (lambda w: sp.Piecewise((w, w > 0), (0, True)) * 2, lambda w: torch.relu(w) * 2, [0.0, 1.0]),
    (lambda w: sp.Min(sp.Max(w, -1), 1), lambda w: torch.clamp(w, -1, 1), [1.0, -1.0, 0.5]),
    (lambda w: sp.Heaviside(w) * w, lambda w: torch.relu(w), [0.0, 3.0]),
])
def test_every_non_smooth_construct_is_a_kink(build, torch_fn, at):
    w = sp.Symbol("w")
    m = sg.Model("kink", build(w), params=[w])
    r = sg.verify(m, at={"w": np.array(at)}, torch_fn=torch_fn)
    assert r.ok, str(r)
    wrong = sg.verify(m, at={"w": np.array(at)},
                      torch_fn=lambda w: torch_fn(w) + 3 * (w - w.detach()))
    assert wrong.verdict == "fail"


def test_piecewise_condition_within_rounding_is_a_kink():
    """w*x > 1 where w*x rounds to exactly 1: either branch is what a float program takes."""
    w, x = sp.symbols("w x")
    m = sg.Model("pw", sp.Piecewise((2 * w * x - 1, w * x > 1), (w * x, True)), params=[w],
                 inputs=[x])
    at = {"w": np.array([3.0]), "x": np.array([1 / 3])}
    assert sg.verify(m, at=at).ok


def test_convex_combination_two_and_more_sides():
    V = np.array([[0.0, 2.0], [2.0, 0.0]])
    assert convex_combination(V, np.array([1.0, 1.0]), np.array([1e-12, 1e-12]))
    assert not convex_combination(V, np.array([2.0, 2.0]), np.array([1e-12, 1e-12]))
    V3 = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    assert convex_combination(V3, np.array([1.0, 1.0, 0.0]), np.full(3, 1e-12))
    assert not convex_combination(V3, np.array([2.0, 2.0, 2.0]), np.full(3, 1e-12))


def test_compare_rejects_entries_that_are_no_subgradient_together():
    exact = np.array([[2 / 3, 2 / 3, 2 / 3]])
    sides = KinkSides({0: np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])})
    got = np.array([[2.0, 2.0, 2.0]])
    c = compare(exact, np.zeros_like(exact), got, np.ones_like(exact), backend="b",
                dtype="float64", tol=Tolerance(), kink=sides)
    assert (c.status == MISMATCH).all() and c.not_subgradient.all()


def test_where_every_side_agrees_the_sides_value_is_the_derivative():
    """sign(w)^2 * w is w everywhere: at w = 0 both sides give slope 1, though sympy's
    sign(0) = 0 gives 0 (the false Hessian of logaddexp2 at a tie in `symgrad ops`). The exact
    value is the sides'; the bound was evaluated on the sign(0) = 0 path, so the entry is
    inconclusive there, never a false mismatch."""
    from symgrad.compare import INCONCLUSIVE
    w = sp.Symbol("w")
    m = sg.Model("sign_squared", sp.sign(w) ** 2 * w, params=[w])
    r = sg.verify(m, at={w: [0.0, 1.5]}, torch_fn=lambda w: w * 1.0, backends=("torch_fn",))
    c = r.comparisons["torch_fn"]
    # issue 16: an inconclusive entry is never a pass: the verdict says so
    assert r.verdict == "inconclusive" and c.expected[0, 1] == 1.0
    assert c.status[0, 1] == INCONCLUSIVE


def test_joint_subgradient_leaves_out_entries_with_an_infinite_allowance():
    """vector_norm in `symgrad ops` crashed scipy's linprog with an infinite allowance."""
    V = np.eye(3)
    assert convex_combination(V, np.array([1 / 3, 1 / 3, 5.0]), np.array([1e-9, 1e-9, np.inf]))
    assert not convex_combination(V, np.array([1.0, 1.0, 1.0]), np.array([1e-9, 1e-9, 1e-9]))
