"""The certified oracle on the program path (ported from tests/test_oracle.py before the scalar
oracle's pipeline is deleted): a plain ``sg.Model`` is verified as its tensor program, whose
oracle (double-double, then ARB balls with precision escalation) must give the exact answer
where the formula cancels, never NaN or "domain" for a finite true value, constants at the
working precision, and "inconclusive" (never ok) where it cannot certify."""

import numpy as np
import pytest
import sympy as sp

import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.compare import DOMAIN, FAILING, INCONCLUSIVE, OK
from symgrad.tensor.front import to_program
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor import views
from symgrad.tensor.views import oracle_view
from symgrad.testing import scale_backward


def _plain_bce():
    z, y = sp.symbols("z y")
    p = 1 / (1 + sp.exp(-z))
    return sg.Model("bce_plain", -(y * sp.log(p) + (1 - y) * sp.log(1 - p)), params=[z],
                    inputs={y: sg.Choice([0.0, 1.0])})


@pytest.mark.parametrize("program", [False, True], ids=["sg.Model", "to_program"])
def test_bce_at_z_152_is_exact_where_the_formula_cancels(program):
    """log(p) at z = 152, y = 1: -log(1/(1 + e^-152)) = log1p(e^-152) = 9.710436457780846e-67
    (1 - p cancels at 50 digits: the old oracle said NaN). The exact value and derivative are
    certified; the cancellation costs bits (> 128), not the answer; the easy sample needs 128."""
    model = _plain_bce()
    r = sg.verify(to_program(model) if program else model,
                  at={"z": np.array([152.0, 152.0, 3.0]), "y": np.array([1.0, 0.0, 1.0])})
    exact = r.comparisons["numpy"].expected
    col = {out: k for k, out in enumerate(r.outputs)}
    assert exact[0, col["value"]] == pytest.approx(9.710436457780846e-67, rel=1e-15)
    assert exact[0, col["d/dz"]] == pytest.approx(-9.710436457780846e-67, rel=1e-15)
    assert exact[1, col["value"]] == pytest.approx(152.0, rel=1e-12)
    assert exact[1, col["d/dz"]] == pytest.approx(1.0, rel=1e-15)
    assert not any(f.kind == "domain" for f in r.failures)
    assert r.ok, str(r)  # symgrad's own programs run the stable form (symgrad.stable)
    bits = r.as_dict()["oracle_bits"]
    assert bits["max"] > 128 and sum(bits["distribution"].values()) == 3
    assert bits["distribution"]["128"] == 1 and bits["uncertain_entries"] == 0


def test_a_planted_wrong_gradient_at_the_cancelling_point_fails():
    """Meant to fail: torch's stable BCE-with-logits with d/dz x (1 + 1e-6) at z = 8, y = 0
    (1 - p = 3.4e-4 cancels in the formula as written, costing ~1e-12 relative) and at z = 3,
    y = 1. (A hand-written torch_fn is allowed the formula as written's bound: at z = 30 a
    1e-6 error is within it - a precision-loss warning - and at z = 152 it is infinite, log of
    1 - p = 0: inconclusive there, never ok.)"""
    at = {"z": np.array([8.0, 3.0]), "y": np.array([0.0, 1.0])}
    good = sg.verify(_plain_bce(), at=at, backends=("torch_fn",),
                     torch_fn=lambda z, y: F.binary_cross_entropy_with_logits(z, y))
    assert good.ok, str(good)
    bad = sg.verify(_plain_bce(), at=at, backends=("torch_fn",),
                    torch_fn=lambda z, y: F.binary_cross_entropy_with_logits(
                        scale_backward(z, 1 + 1e-6), y))
    assert bad.verdict == "fail"
    assert {(f.sample, f.output) for f in bad.failures} == {(0, "d/dz"), (1, "d/dz")}
    assert np.isin(bad.comparisons["torch_fn"].status[:, 1], FAILING).all()


def test_precision_cap_gives_inconclusive_never_ok():
    """At 64 bits at most the cancelling 1 - p at z = 60 cannot be certified: every entry is
    inconclusive and counted as uncertain; with the default cap it is certified."""
    cfg = sg.VerifyConfig(samples=1, oracle_bits=64, oracle_max_bits=64)
    at = {"z": np.array([60.0]), "y": np.array([0.0])}
    r = sg.verify(_plain_bce(), config=cfg, at=at)
    assert (r.comparisons["numpy"].status == INCONCLUSIVE).all()
    assert r.verdict == "inconclusive"
    assert r.as_dict()["oracle_bits"]["uncertain_entries"] == 2
    r = sg.verify(_plain_bce(), at=at)
    assert not (r.comparisons["numpy"].status == INCONCLUSIVE).any() and r.ok


W = sp.Symbol("w", real=True)


def _oracle(expr, w: list[float]) -> np.ndarray:
    """The program's exact (value, d/dw) rows at each w (its array oracle at 50 digits)."""
    m = to_program(sg.Model("domain", expr, params=[W]))
    hi, _ = oracle_view(m, {"w": np.array(w)}, oracle_ops(50))
    return hi


def test_a_true_domain_error_is_still_domain():
    """log and sqrt of -1 are undefined (NaN, the comparer's "domain"); 1/w at -1, log(4),
    sqrt(4) and sqrt(0) are ordinary numbers, computed exactly."""
    assert np.isnan(_oracle(sp.log(W), [-1.0])[0, 0])
    assert np.isnan(_oracle(sp.sqrt(W), [-1.0])[0]).all()
    assert _oracle(1 / W, [-1.0])[0].tolist() == [-1.0, -1.0]
    assert _oracle(sp.log(W), [4.0])[0].tolist() == [np.log(4.0), 0.25]
    assert _oracle(sp.sqrt(W), [4.0, 0.0])[:, 0].tolist() == [2.0, 0.0]
    r = sg.verify(sg.Model("log", sp.log(W), params=[W]), at={"w": np.array([-1.0, 4.0])})
    assert r.comparisons["numpy"].status[0, 0] == DOMAIN
    assert (r.comparisons["numpy"].status[1] == OK).all()
    assert {(f.kind, f.sample) for f in r.failures} == {("domain", 0)}


def test_a_pole_is_domain_not_overflow():
    """log w and 1/w at w = 0 are poles: the function is not defined there (the double-double's
    +-inf would read as "overflow", an exact value beyond the dtype's range); no one-sided
    limit settles (``limits.oracle_limits``), so the oracle leaves them NaN: domain."""
    for expr in (sp.log(W), 1 / W):
        r = sg.verify(sg.Model("pole", expr, params=[W]), at={"w": np.array([0.0, 4.0])})
        assert {f.kind for f in r.failures} == {"domain"}, [f.message() for f in r.failures]
    # an exact value beyond float64 at an input exactly 0 stays an overflow (its limit settles)
    r = sg.verify(sg.Model("big", sp.exp(800 + W), params=[W]), at={"w": np.array([0.0, 4.0])})
    assert {(f.kind, f.sample) for f in r.failures} == {("overflow", 0), ("overflow", 1)}


@pytest.mark.parametrize("s", [1e-200, 1e200])
def test_an_intermediate_beyond_float64s_range_is_exact(s):
    """sqrt(w**2 + v**2) at w = v = 1e-200: w**2 is 0 in double-double (and inf at 1e200), so
    the DD's d/dw = w/0 is inf where the exact value is 0.7071 (it once refused the whole
    verification: "not certified"). The watch (``ddops.ran_out``) sends that row to ARB balls
    (``views.rounded_zone``): the oracle is exact, the run judges (its float64 allowance there
    is unbounded: the formula's own float64 evaluation runs out of range, so that row is
    inconclusive, never failing), and a planted 1e-9 scale error on the other row is caught."""
    w, v = sp.symbols("w v")
    m = sg.Model("norm", sp.sqrt(w**2 + v**2), params=[w, v])
    at = {"w": np.array([s, 3.0]), "v": np.array([s, 4.0])}
    hi, lo = oracle_view(to_program(m), at, oracle_ops(50))
    assert hi[0].tolist() == [float(sp.sqrt(2) * sp.Float(s, 60)), 2**-0.5, 2**-0.5]
    assert hi[1].tolist() == [5.0, 0.6, 0.8]
    r = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda w, v: torch.hypot(w, v))
    status = r.comparisons["torch_fn"].status
    assert not r.failures and (status[1] == OK).all(), str(r)
    assert set(status[0].tolist()) <= {OK, INCONCLUSIVE}
    bad = sg.verify(m, at=at, backends=("torch_fn",),
                    torch_fn=lambda w, v: torch.hypot(w, v) * (1 + 1e-9))
    assert {f.sample for f in bad.failures} == {1}, [f.message() for f in bad.failures]


def test_constants_follow_the_precision():
    """pi - fl(pi) to 2^-80 relative needs pi to 40 digits: more than 64 bits. Started at 64
    bits, the exact value is still fl(pi - fl(pi)) = 1.2246467991473532e-16 (a constant kept
    at the starting precision would give 1.2251e-16) and the derivative -1 exactly."""
    m = sg.Model("pi", sp.pi - W, params=[W])
    for cfg in (sg.VerifyConfig(oracle_bits=64), sg.VerifyConfig()):
        r = sg.verify(m, at={"w": np.array([np.pi])}, config=cfg)
        c = r.comparisons["numpy"]
        assert c.expected[0].tolist() == [1.2246467991473532e-16, -1.0]
        # the value itself is below float64's rounding of pi - w: honest, not a pass
        assert c.status[0, 0] == INCONCLUSIVE and c.status[0, 1] == OK
    assert float(sg.exact_at(m, {"w": np.pi})["value"]) == 1.2246467991473532e-16


@pytest.mark.parametrize("expr,fn", [(sp.log(W), lambda w: torch.log(w)),
                                     (1 / W, lambda w: 1 / w)], ids=["log", "reciprocal"])
def test_a_pole_in_sample_0_leaves_the_other_samples_decided(expr, fn):
    """log w and 1/w with w = 0 in sample 0: sample 0's ARB certificate cannot certify the
    DD's inf of d/dw there, but the limits decided that entry in balls (a pole: NaN, domain).
    It once put the whole d/dw column in doubt, w = 4 included (inconclusive, and a planted
    1e-9 scale error there not caught); now only the pole is undecided by the oracle."""
    m = sg.Model("pole", expr, params=[W])
    at = {"w": np.array([0.0, 4.0])}
    r = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=fn)
    status = r.comparisons["torch_fn"].status
    assert status[0].tolist() == [DOMAIN, DOMAIN], status
    assert (status[1] == OK).all(), status
    assert {(f.kind, f.sample) for f in r.failures} == {("domain", 0)}
    assert "doubt" not in r.program_size["oracle_certified"]
    assert "1 decided in balls at an input exactly 0" in r.program_size["oracle_certified"]
    bad = sg.verify(m, at=at, backends=("torch_fn",),
                    torch_fn=lambda w: fn(w) * (1 + 1e-9))
    bad_status = bad.comparisons["torch_fn"].status
    assert np.isin(bad_status[1], FAILING).all() and (bad_status[1] != DOMAIN).all()
    assert {f.sample for f in bad.failures if f.kind != "domain"} == {1}


@pytest.mark.parametrize("row", [0, 1], ids=["sample0", "sample1"])
@pytest.mark.parametrize("s", [1e-200, 1e200])
def test_a_watched_row_its_balls_cannot_certify_is_inconclusive(monkeypatch, s, row):
    """The watch sends sqrt(w**2 + v**2) at w = v = s to ARB balls (``views.rounded_zone``);
    with the balls' cap forced to 64 bits they cannot certify it (the claim is 1e-30). The DD's
    inf / 0 stayed the oracle's value: the correct torch.hypot failed as "overflow" (sample 1)
    or the run refused (sample 0: "not certified"). Now that row is inconclusive, saying why,
    and a planted 1e-9 scale error on the other row is still caught."""
    monkeypatch.setattr(views, "zone_bits", lambda cfg: (64, 64))  # the run's zone cap
    w, v = sp.symbols("w v")
    m = sg.Model("norm", sp.sqrt(w**2 + v**2), params=[w, v])
    order = [s, 3.0] if row == 0 else [3.0, s]
    at = {"w": np.array(order), "v": np.array([s, 4.0] if row == 0 else [4.0, s])}
    r = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda w, v: torch.hypot(w, v))
    c = r.comparisons["torch_fn"]
    assert not r.failures, [f.message() for f in r.failures]
    assert (c.status[row] == INCONCLUSIVE).all() and (c.status[1 - row] == OK).all()
    assert "views.rounded_zone" in c.undecided[row] and "64 bits" in c.undecided[row]
    assert r.verdict == "inconclusive"
    bad = sg.verify(m, at=at, backends=("torch_fn",),
                    torch_fn=lambda w, v: torch.hypot(w, v) * (1 + 1e-9))
    assert {f.sample for f in bad.failures} == {1 - row}, [f.message() for f in bad.failures]
    assert (bad.comparisons["torch_fn"].status[row] == INCONCLUSIVE).all()
