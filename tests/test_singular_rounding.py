"""A NaN or inf at a singular point reached by rounding is inconclusive, never a FAIL (sing20).

triplet_margin_loss's H v at its norm's zero: at x = 0, y = 1e-6 (the hinge active) torch
computes x - y + 1e-6 (the pairwise_distance eps) as exactly 0 and its double backward gives
NaN; the exact H v is finite (6e21 in float64, 1.1e14 in float32: 1e-6 is not a number of
either dtype) and the rounded enclosure of the norm's argument holds 0, where the norm's
second derivative is infinite. It read "non-finite" (a FAIL) in both dtypes on main.

The rule must not excuse what correct code does not do: an intermediate overflow (exp(w)
over 1 + exp(w) at w = 800: inf / inf) is a finding, and so is a NaN at a regular point or a
wrong second derivative of the triplet loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from flint import arb

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import INCONCLUSIVE, NONFINITE
from symgrad.config import VerifyConfig
from symgrad.opcatalog.build import first_order, second_order
from symgrad.opcatalog.table import by_name
from symgrad.rigorous import SingularRounding, singular_entries
from symgrad.tensor.model import TensorModel
from symgrad.verify import as_program

from tests.clients import Square

APEX = {"x": [0.0, 0.0, 0.0], "y": [1e-6, 1e-6, 1e-6], "z": [0.1, 0.2, -0.1], "readout": 0.8,
        "v_x": [0.3, -0.6, 0.9], "v_y": [-0.4, 0.2, 0.5], "v_z": [0.7, 0.1, -0.3]}
REGULAR = {"x": [0.25, -0.5, 1.0], "y": [1.5, 0.75, -0.25], "z": [0.35, -0.3, 0.9],
           "readout": 0.8, "v_x": [0.3, -0.6, 0.9], "v_y": [-0.4, 0.2, 0.5],
           "v_z": [0.7, 0.1, -0.3]}


def _at(point: dict, keep=None) -> dict:
    return {k: np.asarray(v, dtype=np.float64)[None] for k, v in point.items()
            if keep is None or k in keep}


def _config(dtype: str) -> VerifyConfig:
    return VerifyConfig(dtype=dtype, backends=("torch_fn",))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_triplet_hvp_at_the_norms_zero_is_inconclusive_not_a_failure(dtype):
    built = second_order(by_name("triplet_margin_loss"))
    r = sg.verify(built.model, torch_fn=built.torch_fn, at=_at(APEX), config=_config(dtype))
    c = r.comparisons["torch_fn"]
    assert not r.failures, r
    assert r.verdict == "inconclusive"
    assert np.isnan(c.got[0, 1:7]).all(), "torch's double backward is NaN there"
    assert np.isfinite(c.expected[0, 1:7]).all() and (np.abs(c.expected[0, 1:7]) > 1e13).all()
    assert (c.status[0, 1:7] == INCONCLUSIVE).all()
    why = c.undecided[0]
    assert why.startswith("a singular point within rounding: x**(-1/2) at x in [") and \
        "which holds 0" in why, why
    assert f"correct {dtype} code" in why


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_triplet_hvp_at_a_regular_point_passes(dtype):
    built = second_order(by_name("triplet_margin_loss"))
    r = sg.verify(built.model, torch_fn=built.torch_fn, at=_at(REGULAR), config=_config(dtype))
    assert r.ok, r


def _triplet(err: float):
    """F.triplet_margin_loss written out, its squares' backward scaled by (1 + err)."""
    def triplet(x, y, z, readout):
        Square.ERR = err

        def d(u, v):
            return torch.sqrt(Square.apply(u - v + 1e-6).sum())
        return readout * torch.clamp(d(x, y) - d(x, z) + 1.0, min=0.0)
    return triplet


def _hvp(err: float):
    """The catalogue's H v of the triplet loss (``opcatalog.build.second_order``) through
    ``_triplet(err)`` instead of F.triplet_margin_loss."""
    def triplet_hvp(x, y, z, readout, v_x, v_y, v_z):
        loss = _triplet(err)(x, y, z, readout)
        grads = torch.autograd.grad(loss, [x, y, z], create_graph=True)
        hv = sum((g * v).sum() for g, v in zip(grads, [v_x, v_y, v_z]))
        return hv + 0 * sum(p.sum() for p in [x, y, z])
    return triplet_hvp


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_planted_second_derivative_of_the_triplet_loss_is_still_caught(dtype):
    built = second_order(by_name("triplet_margin_loss"))
    at = _at(REGULAR)
    fine = sg.verify(built.model, torch_fn=_hvp(0.0), at=at, config=_config(dtype))
    assert fine.ok, fine
    bad = sg.verify(built.model, torch_fn=_hvp(1e-2), at=at, config=_config(dtype))
    assert bad.verdict == "fail" and "value" in {f.output for f in bad.failures}, bad


def test_a_nan_at_a_regular_point_of_the_triplet_loss_is_still_a_failure():
    """The rule asks the enclosure, not the NaN: at a regular point every ball is finite."""
    built = second_order(by_name("triplet_margin_loss"))
    bad = sg.verify(built.model, torch_fn=_hvp(float("nan")), at=_at(REGULAR),
                    config=_config("float64"))
    c = bad.comparisons["torch_fn"]
    assert c.status[0, 0] == NONFINITE and bad.verdict == "fail", bad
    assert not c.undecided


# an intermediate overflow is a finding: exp(w) / (1 + exp(w)) written out, at w = 800
# (float64) or 100 (float32), is inf / inf = NaN; the exact value (1) and derivative are finite


def _ratio() -> TensorModel:
    w = st.param("w", ())
    return TensorModel("exp_ratio", st.sum_(st.map_(sp.exp(st.X[0]) / (1 + sp.exp(st.X[0])), w)))


def _naive_ratio(w):
    return torch.exp(w) / (1 + torch.exp(w))


@pytest.mark.parametrize("dtype, w", [("float64", 800.0), ("float32", 100.0)])
def test_an_intermediate_overflow_is_still_a_failure(dtype, w):
    r = sg.verify(_ratio(), torch_fn=_naive_ratio, at={"w": np.array([w])},
                  config=_config(dtype))
    c = r.comparisons["torch_fn"]
    assert r.verdict == "fail", r
    assert c.status[0, 0] == NONFINITE and c.status[0, 1] == NONFINITE
    assert not c.undecided
    mask, why = singular_entries([_ratio()], {"w": np.array([w])}, np.array([0]), 2, dtype, 4.0)
    assert not mask.any() and why == {}, "exp(800) is finite in the unranged balls"


def test_the_unranged_rounding_records_singular_points_only():
    R = SingularRounding("float32", 4.0)
    assert R.widen(arb(10) ** 50, R.u).is_finite()  # beyond float32's range: no event
    assert R.rdiv(arb(1), arb(3)).is_finite() and R.events == []
    assert not R.rdiv(arb(1), arb("0 +/- 1e-9")).is_finite()
    assert not R.rsqrt(arb("-1e-3 +/- 1e-2")).is_finite()
    assert R.events == ["a division by x at x in [-1e-09, 1e-09], which holds 0",
                        "sqrt(x) at x in [-0.011, 0.009], which holds 0"]


def test_the_triplet_apex_is_reached_by_the_catalogues_own_program():
    built = second_order(by_name("triplet_margin_loss"))
    model = as_program(built.model)
    values = _at(APEX)
    width = 1 + model.n_parameters
    mask, why = singular_entries([model], values, np.array([0]), width, "float32", 4.0)
    assert mask[0, 1:7].all() and "x**(-1/2)" in why[0]
    values.update(_at(REGULAR))
    mask, why = singular_entries([model], values, np.array([0]), width, "float32", 4.0)
    assert not mask.any() and why == {}


def test_torchs_own_triplet_at_the_apex_is_nan_in_its_double_backward():
    """The premise: torch rounds x - y + 1e-6 to exactly 0 and its H v is NaN there."""
    x, y = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True), \
        torch.full((1, 3), 1e-6, dtype=torch.float64, requires_grad=True)
    z = torch.tensor([[0.1, 0.2, -0.1]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(F.triplet_margin_loss(x, y, z), x, create_graph=True)
    (h,) = torch.autograd.grad((g * torch.tensor([[0.3, -0.6, 0.9]])).sum(), x)
    assert torch.isnan(h).all()


def test_a_division_by_a_square_that_underflows_is_still_a_failure():
    """addcdiv's d/dz = -v y / z**2 at y = z = 1e-30 in float32: torch's z * z underflows to 0
    and the derivative comes out inf where the exact one is finite (4.6e29). Underflow is the
    dtype's range, as overflow is (the code could scale first), not a singular point reached
    by rounding: the walk holds 1e-60 as it is, so this stays a failure."""
    built = first_order(by_name("addcdiv"))
    point = {"x": 3.0, "y": 1e-30, "z": 1e-30, "readout": -0.93}
    r = sg.verify(built.model, torch_fn=built.torch_fn, at=_at(point),
                  config=_config("float32"))
    c = r.comparisons["torch_fn"]
    assert not np.isfinite(c.got).all() and np.isfinite(c.expected).all()
    assert r.failures and r.verdict == "fail", r
    why = (c.undecided or {}).values()
    assert not any("singular point within rounding" in str(w) for w in why)


def test_a_nan_at_an_exact_zero_vector_under_a_clamp_is_still_a_failure():
    """F.cosine_similarity's H v at x = 0 exactly (float64): torch's double backward goes through
    the norm's x / |x| at 0 and gives NaN, while the exact H v, with the norms clamped at eps,
    is finite. No rounding is behind that zero (the ball is the point 0 exactly): the exact
    computation lands there too and routes around it, so correct code must as well."""
    built = second_order(by_name("cosine_similarity"))
    point = {"x": [0.0, 0.0, 0.0], "y": [0.0, -2.7386277424576155, -2.4714312070189144],
             "readout": -0.514, "v_x": [-0.74, 1.39, 0.69], "v_y": [-1.19, 1.15, -1.33]}
    r = sg.verify(built.model, torch_fn=built.torch_fn, at=_at(point),
                  config=_config("float64"))
    c = r.comparisons["torch_fn"]
    assert np.isnan(c.got).any() and np.isfinite(c.expected).all()
    assert r.failures and r.verdict == "fail", r


def _plain_bce() -> sg.Model:
    z, y = sp.symbols("z y")
    p = 1 / (1 + sp.exp(-z))
    return sg.Model("bce_plain", -(y * sp.log(p) + (1 - y) * sp.log(1 - p)), params=[z],
                    inputs={y: sg.Choice([0.0, 1.0])})


def test_the_literal_bce_at_z_152_names_the_formula_as_written_and_the_stable_form():
    """Meant to fail before: torch's log(1 - sigmoid(z)) at z = 152 is log(0) (1 - p rounds to
    0): inconclusive (the formula as written reaches the singularity by rounding), and the line
    now says so and names the stable form symgrad runs, which the balls keep clear of it."""
    at = {"z": np.array([152.0]), "y": np.array([0.0])}
    r = sg.verify(_plain_bce(), at=at, backends=("torch_fn",),
                  torch_fn=lambda z, y: -(y * torch.log(torch.sigmoid(z))
                                          + (1 - y) * torch.log(1 - torch.sigmoid(z))))
    assert r.verdict == "inconclusive" and not r.failures, r
    why = r.comparisons["torch_fn"].undecided[0]
    assert "the formula as written reaches it by rounding, the stable form symgrad runs does " \
        "not" in why and "F.binary_cross_entropy_with_logits" in why and "-F.softplus(t)" in why
    assert "\n" not in why
    # the stable form computes no NaN there (still inconclusive: a torch_fn is allowed the
    # formula as written's bound, infinite at z = 152; tests/test_program_oracle.py)
    stable = sg.verify(_plain_bce(), at=at, backends=("torch_fn",),
                       torch_fn=lambda z, y: F.binary_cross_entropy_with_logits(z, y))
    assert np.isfinite(stable.comparisons["torch_fn"].got).all() and stable.verdict != "fail"


def test_a_singular_point_of_the_program_itself_does_not_blame_the_written_form():
    """The triplet loss's norm has no stable rewrite: its line names no 'formula as written'."""
    built = second_order(by_name("triplet_margin_loss"))
    r = sg.verify(built.model, torch_fn=built.torch_fn, at=_at(APEX), config=_config("float64"))
    why = r.comparisons["torch_fn"].undecided[0]
    assert why.startswith("a singular point within rounding") and "as written" not in why
