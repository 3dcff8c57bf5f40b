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
from symgrad.capture.captured import capture
from symgrad.compare import FAILING
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
