"""An exact 0 whose error is far beyond anything correct code can return is a proven mismatch,
not inconclusive (honest34): torch's ``F.gaussian_nll_loss`` clamps its variance straight
through, so at v = 5e-324 (clamped to eps: the exact derivative is 0) its d/dv is -4.8e14. The
entry's fast allowance (4 tiny) is at least |exact| = 0, which alone decides nothing: the
entry rule calls an entry inconclusive only *within* its allowance. What had left it
undecided was the rigorous enclosure: another entry of the sample (v = 1e300, whose square
leaves float64's range in the rounded walk) made a NaN ball, and the plain model's one-hot
scatter of each entry's adjoint (0 * NaN) spread it to every entry of the block. A NaN ball's
0 * inf is NaN in the dtype, a non-finite result judged as such, so the other entries' finite
results are exact 0s (``Rounding.rprod``'s zero factor; ``arb_select.selection``'s
``finite_results``).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import INCONCLUSIVE, MISMATCH

EPS = sp.Rational(1, 2 ** 20)
AT = {"v": np.array([[1e300, 10.0, 5e-324], [2.0, 0.5, 3.0]]),
      "c": np.array([[91.5, 1e15, 44.0], [1.0, -2.0, 0.5]])}


def _model() -> sg.Model:
    v, c = sg.matrix("v", 3), sg.matrix("c", 3)
    loss = sum((sp.log(sp.Max(v[i], EPS)) + c[i] ** 2 / sp.Max(v[i], EPS)) / 2 for i in range(3))
    return sg.Model("gnll", loss, params=[v], inputs={c: sg.Normal()})


def _nll(v, c, clamp):
    var = clamp(v)
    return ((torch.log(var) + c ** 2 / var) / 2).sum()


def _straight_through(v):  # torch's gaussian_nll_loss: the clamp out of the graph
    var = v.clone()
    with torch.no_grad():
        var.clamp_(min=float(EPS))
    return var


def test_straight_through_clamp_at_an_exact_zero_is_a_proven_mismatch():
    """Meant to fail: d/dv[2] is exactly 0 (clamped), torch's is -c^2 / (2 eps^2) = -4.3e15."""
    r = sg.verify(_model(), at=AT, torch_fn=lambda v, c: _nll(v, c, _straight_through))
    comp = r.comparisons["torch_fn"]
    col = r.outputs.index("d/dv[2]")
    assert comp.expected[0, col] == 0 and abs(comp.got[0, col]) > 1e15
    assert comp.status[0, col] == MISMATCH, str(r)
    assert np.isfinite(comp.rigorous[0, col]) and comp.error[0, col] > comp.rigorous[0, col]
    assert r.verdict == "fail"


def test_correct_clamp_at_the_same_samples_still_passes():
    """Correct code (the clamp inside the graph: d/dv = 0 below eps) at the same samples."""
    r = sg.verify(_model(), at=AT,
                  torch_fn=lambda v, c: _nll(v, c, lambda v: torch.clamp(v, min=float(EPS))))
    comp = r.comparisons["torch_fn"]
    assert r.verdict == "pass", str(r)
    assert not (comp.status == INCONCLUSIVE).any()


def test_an_entry_beyond_its_allowance_is_not_said_to_be_within_it():
    """The undecided note of an exact-0 entry far beyond its allowance but not proven (the
    enclosure unbounded: suspect, then unconfirmed) names that, not 'its allowance is at least
    the exact value itself: 0 or a flipped sign would pass too' (the gate_history note)."""
    from symgrad.compare import SUSPECT, Tolerance, compare
    from symgrad.result import undecided_note
    exact = np.array([[1.0, 0.0, 1e-20]])
    got = np.array([[1.0, -4.8e14, 3e-20]])
    c = compare(exact, np.zeros_like(exact), got, np.ones_like(exact), backend="torch_fn",
                dtype="float64", tol=Tolerance(), rigorous=np.full(exact.shape, np.nan))
    assert c.status[0, 1] == SUSPECT and c.status[0, 2] == INCONCLUSIVE
    assert "at least the exact value itself" not in undecided_note(c, 0, 1)
    assert "at least the exact value itself" in undecided_note(c, 0, 2)  # within: it is
