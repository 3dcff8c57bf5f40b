"""The probabilistic sigma below float64's squares (``symgrad.tensor.quadrature``).

sigma was squared in float64 for each quadrature, so a sigma below ~1e-154 squared into the
subnormals or to 0 and the probabilistic allowance kept only the entry's own rounding: F.silu
at x = -481 (float64, gradient -3.7e-207) was allowed 0.04 ULPs against a 0.92-ULP error on
main 08113b3 (inconclusive only because the rigorous enclosure there is unbounded).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
import symgrad.tensor as st
from symgrad.capture.captured import capture
from symgrad.compare import FAILING
from symgrad.tensor.bound import evaluate_bound
from symgrad.tensor.quadrature import LOW, hypot, root, root_or_linear


def _verify(fn, values):
    """What sg.gradcheck runs at one float64 point (torch's backward against the exact one)."""
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    cap = capture(fn, (x,), module_params="input", seed=0, names=["x"], name="f", who="test")
    vary = [b.name for b in cap.model.param_blocks]
    return sg.verify(cap.model, torch_fn=cap.torch_fn(None), dtype="float64", seed=0,
                     at=cap.at(1, 0, vary), backends=("torch_fn",))


class _PlantedSilu(torch.autograd.Function):
    """F.silu whose backward is torch's own s (1 + x (1 - s)) times (1 + 1e-9)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * (s * (1 + x * (1 - s))) * (1 + 1e-9)


def test_silu_far_left_gets_an_allowance_at_least_its_error():
    """Meant to pass: on main the gradient at x = -481 was allowed 0.0399 ULPs against 0.92
    (sg.gradcheck raised "inconclusive"); the argument's sigma (2.7e-206) now enters the
    quadrature, so the allowance covers torch's correct backward and gradcheck passes."""
    r = _verify(F.silu, [-481.0, 0.5])
    c = r.comparisons["torch_fn"]
    assert (c.allowed_ulps[0, 1:] >= c.ulps[0, 1:]).all(), (c.ulps, c.allowed_ulps)
    assert sg.gradcheck(F.silu, (torch.tensor([-481.0, 0.5], dtype=torch.float64,
                                              requires_grad=True),)) is True


def test_a_planted_silu_bug_at_a_normal_x_still_fails():
    """Meant to fail: x(1 + 1e-9) at x = 0.5 is ~5e6 ULPs, proven beside the tiny entry."""
    r = _verify(_PlantedSilu.apply, [-481.0, 0.5])
    assert r.verdict == "fail", str(r)
    assert r.comparisons["torch_fn"].status[0, 2] in FAILING, str(r)


@pytest.mark.parametrize("scale", [1.0, 1e-100, 1e-155, 1e-200, 1e-300, 1e-320])
def test_hypot_and_root_keep_tiny_terms(scale):
    """Meant to pass: 3-4-5 at every scale down to the subnormals (plain squares give 0 below
    ~1e-162), within an ULP of the subnormal result's resolution."""
    three, four = np.array([3.0 * scale]), np.array([4.0 * scale])
    want = 5.0 * scale
    for got in (hypot([three, four]), root(np.sum, np.array([3.0 * scale, 4.0 * scale]))):
        assert abs(float(np.ravel(got)[0]) - want) <= max(4e-16 * want, 2 * 5e-324), got


def test_normal_range_is_bit_identical_to_the_plain_formula():
    """Meant to pass: wherever the root is at least 2^-480 the helpers return the plain
    formula's bits (only the underflow entries are re-formed)."""
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(1000) * 10.0 ** rng.uniform(-140, 140, 1000)
             for _ in range(3)]
    plain = np.sqrt(parts[0] * parts[0] + parts[1] * parts[1] + parts[2] * parts[2])
    assert np.array_equal(hypot(parts), plain)
    s = np.abs(parts[0]).reshape(100, 10)
    assert np.array_equal(root(lambda q: np.sum(q, axis=1), s), np.sqrt(np.sum(s * s, axis=1)))


def test_root_or_linear_falls_back_to_the_l1_form_only_where_low():
    """Meant to pass: an einsum term whose squares underflowed (x = 1e-100, sigma = 1e-100:
    product 1e-400 -> 0) takes its L1 form 1e-200; a normal entry keeps sqrt(quad)."""
    x, s = np.array([[1e-100], [1.0]]), np.array([1e-100])
    quad = np.einsum("ij,j->i", x * x, s * s)
    assert quad[0] == 0.0 < LOW
    got = root_or_linear(quad.copy(), lambda: np.einsum("ij,j->i", np.abs(x), s))
    assert got[0] == 1e-200 and got[1] == np.sqrt(quad[1])


_DOWN = 2.0 ** -700  # a power of two: the leaves scaled by it scale every E exactly


def _prob(out, leaves):
    return evaluate_bound([out], leaves, mode="probabilistic", sigmas=1.0)[0]


def _tripled(shape):
    a = st.param("a", shape)
    return a, st.map_(st.X[0] * 3, a)  # a map with its own rounding: sigma |3 a| per entry


def test_a_sums_sigma_scales_down_with_its_terms():
    """Meant to pass: sum(3 a) over 8 terms at a ~ 1e-211 (sigma 1e-211: its square 0 on main,
    which kept only the sum's own roundings) is the normal-range bound times 2^-700, bit for
    bit (the terms re-formed scaled by 2^600)."""
    a, y = _tripled((8,))
    x = np.random.default_rng(1).uniform(0.5, 2.0, size=(1, 8))
    normal, tiny = _prob(st.sum_(y), {"a": x}), _prob(st.sum_(y), {"a": x * _DOWN})
    assert tiny[0] == normal[0] * _DOWN, (tiny, normal)


def test_a_scatters_sigma_scales_down_with_its_rows():
    """Meant to pass: scatter_add of 3 a's rows (two ids hitting row 1) at a ~ 1e-211."""
    a, y = _tripled((3, 2))
    ids = st.input("ids", (3,), integer=True)
    out = st.scatter_add(y, ids, 4)
    x = np.random.default_rng(2).uniform(0.5, 2.0, size=(1, 3, 2))
    at = np.array([[1, 3, 1]])
    normal = _prob(out, {"a": x, "ids": at})
    tiny = _prob(out, {"a": x * _DOWN, "ids": at})
    assert np.array_equal(tiny, normal * _DOWN), (tiny, normal)
    assert tiny[0, 1, 0] > 0.0


def test_an_einsums_sigma_term_keeps_its_l1_form_when_squares_underflow():
    """Meant to pass: einsum(3 a, W) at a ~ 1e-211, W ~ 1: the sigma term's squares are 0, so
    it takes its L1 form: between the scaled normal-range (L2) bound and the worst case."""
    a, y = _tripled((16,))
    W = st.param("W", (16,))
    out = st.einsum("i,i->", y, W)
    rng = np.random.default_rng(3)
    x, w = rng.uniform(0.5, 2.0, size=(1, 16)), rng.uniform(0.5, 2.0, size=(1, 16))
    normal = _prob(out, {"a": x, "W": w})[0] * _DOWN
    tiny = _prob(out, {"a": x * _DOWN, "W": w})[0]
    worst = evaluate_bound([out], {"a": x * _DOWN, "W": w})[0][0]
    assert normal * (1 - 1e-12) <= tiny <= worst, (normal, tiny, worst)
