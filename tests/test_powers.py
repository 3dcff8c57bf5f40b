"""Powers and removable singularities (issue 16, item 5): where every derivative exists, it is
evaluated (as a limit where the formula is 0/0), never called "domain"; a wrong gradient there
still fails; only a truly undefined value is "domain"."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import DOMAIN, FAILING, INCONCLUSIVE
from symgrad.tensor.derive import merge_powers
from symgrad.tensor.front import to_program
from symgrad.tensor.limits import oracle_limits
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor.views import oracle_view

x, y, w, p = sp.symbols("x y w p")


def _xy():
    return sg.Model("x_pow_y", x**y, params=[x, y])


def _w_pow_p():
    return sg.Model("w_pow_p", w**p, params=[w], inputs={p: sg.Choice([2.0, 3.0])})


def _abs_cubed():
    return sg.Model("abs_cubed", sp.Abs(w) ** 3, params=[w])


def _abs_pow_p():
    return sg.Model("abs_pow_p", sp.Abs(w) ** p, params=[w], inputs={p: sg.Choice([3.0])})


def _sqrt_relu():
    return sg.Model("sqrt_relu", sp.sqrt(sp.Max(w, 0)) + w, params=[w])


CASES = {  # model, points, the user's torch code, the exact gradient at sample 0
    "x**y at (0, 2)": (_xy, {"x": [0.0, 0.0, 1.5], "y": [2.0, 1.0, 2.0]},
                       lambda x, y: x**y, [0.0, 0.0]),
    "w**p at w < 0": (_w_pow_p, {"w": [-1.5, -0.3, 0.0], "p": [2.0, 3.0, 2.0]},
                      lambda w, p: w**p, [-3.0]),
    "|w|**3 at 0": (_abs_cubed, {"w": [0.0, -2.0]}, lambda w: w.abs() ** 3, [0.0]),
    "|w|**p at 0": (_abs_pow_p, {"w": [0.0, -2.0], "p": [3.0, 3.0]},
                    lambda w, p: w.abs() ** p, [0.0]),
    "sqrt(relu(w)) + w at -1": (_sqrt_relu, {"w": [-1.0, 4.0]},
                                lambda w: torch.sqrt(torch.relu(w)) + w, [1.0]),
}


def off_by_half(fn, first: str):
    """``fn`` with d/d(``first``) off by 0.5 everywhere (a planted wrong gradient)."""
    def wrong(**kw):
        v = kw[first]
        return fn(**kw) + 0.5 * (v - v.detach())
    return wrong


@pytest.mark.parametrize("case", list(CASES))
def test_derivatives_that_exist_are_not_domain(case):
    build, at, fn, grad0 = CASES[case]
    r = sg.verify(build(), at={k: np.array(v) for k, v in at.items()},
                  torch_fn=fn)
    assert r.ok and r.verdict == "pass", str(r)
    for name, c in r.comparisons.items():  # symgrad's own programs too
        assert not np.isin(c.status, FAILING).any(), name
        assert not (c.status == DOMAIN).any()
    assert r.comparisons["torch_fn"].expected[0, 1:].tolist() == grad0
    assert not r.kinks  # smooth there (|w|**3 at 0: derivative 0)


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_gradient_at_those_points_still_fails(case):
    build, at, fn, _ = CASES[case]
    model = build()
    r = sg.verify(model, at={k: np.array(v) for k, v in at.items()},
                  torch_fn=off_by_half(fn, model.blocks[0].name))
    assert r.verdict == "fail"
    st = r.comparisons["torch_fn"].status[:, 1]
    # x**y at (0, 1): d/dx = y x**(y-1) = 1 * 0**0, and the bound's first-order model of the
    # exponent's rounding (0**(+-d): 0 or inf) gives it an infinite allowance: inconclusive
    expect_open = [1] if case.startswith("x**y") else []
    assert np.isin(np.delete(st, expect_open), FAILING).all(), st
    assert (st[expect_open] == INCONCLUSIVE).all()


def test_merge_powers_never_forms_zero_over_zero():
    assert merge_powers(sp.diff(x**y, x)) == y * x ** (y - 1)
    real = sp.Symbol("v", real=True)
    assert merge_powers(sp.diff(sp.Abs(real) ** p, real)) == (
        p * sp.Abs(real) ** (p - 1) * sp.sign(real))
    assert merge_powers(3 * x**2) == 3 * x**2


def test_a_negative_base_with_a_non_integer_exponent_is_domain():
    half = sg.Model("w_pow_p", w**p, params=[w], inputs={p: sg.Choice([2.0, 2.5, 3.0])})
    r = sg.verify(half, at={"w": np.array([-1.5]), "p": np.array([2.5])})  # 2.5: in its domain
    assert not r.ok and {f.kind for f in r.failures} == {"domain"}


def test_an_infinite_derivative_stays_domain_beside_a_limit():
    """x**y at (0, 1/2): d/dx = y x**(y-1) is infinite (the sequence diverges: domain); d/dy =
    x**y log x has the limit 0, which torch's pow backward computes too."""
    r = sg.verify(_xy(), at={"x": np.array([0.0]), "y": np.array([0.5])},
                  torch_fn=lambda x, y: x**y)
    c = r.comparisons["torch_fn"]
    assert c.status[0].tolist() == [0, DOMAIN, 0] and c.expected[0, 2] == 0


def test_two_different_one_sided_limits_at_an_infinite_allowance():
    """sqrt(v**2 + v**4) = |v| sqrt(1 + v**2) at 0: its derivative (v + 2 v**3) / sqrt(v**2 +
    v**4) is 0/0 with the one-sided limits -1 and +1 (a kink); its rounding bound is 1/0 there
    too, so nothing is decided: inconclusive, never domain, never ok, the same on both
    pipelines; a gradient of 2 elsewhere still fails."""
    v = sp.Symbol("v", real=True)
    model = sg.Model("abs_by_sqrt", sp.sqrt(v**2 + v**4), params=[v])
    at = {"v": np.array([0.0, 2.0])}
    r = sg.verify(model, at=at, torch_fn=lambda v: v.abs() * (1 + v**2).sqrt())
    c = r.comparisons["torch_fn"]
    assert r.verdict == "inconclusive" and c.status.tolist() == [[0, INCONCLUSIVE], [0, 0]]
    assert c.expected[0, 1] == 1.0
    r = sg.verify(model, at=at, torch_fn=lambda v: v.abs() * (1 + v**2).sqrt() + 2 * v
                  - 2 * v.detach())
    assert r.verdict == "fail" and r.comparisons["torch_fn"].status[1, 1] in FAILING


def test_the_tensor_oracle_takes_limits_and_keeps_domain_errors():
    """The tensor oracle's limits (symgrad.tensor.limits), as the scalar oracle's above: x**y
    log x at x = 0 is 0; sqrt(v**2 + v**4)'s derivative at 0 has the sides -1, +1; d/dx x**y
    at (0, 1/2) diverges and stays undefined (domain) beside d/dy's limit 0."""
    v = sp.Symbol("v", real=True)
    table = oracle_ops(50)
    for expr, point, want, sides in [
            (x**y, {"x": [0.0], "y": [2.0]}, [0.0, 0.0, 0.0], None),
            (sp.sqrt(v**2 + v**4), {"v": [0.0]}, [0.0, 1.0], [-1.0, 1.0]),
            (x**y, {"x": [0.0], "y": [0.5]}, [0.0, np.nan, 0.0], None)]:
        params = sorted(expr.free_symbols, key=str)
        m = to_program(sg.Model("limit", expr, params=params))
        values = {k: np.array(a) for k, a in point.items()}
        hi, lo = oracle_view(m, values, table)
        got = oracle_limits(m, values, hi, lo)
        np.testing.assert_array_equal(hi[0], want)
        if sides is None:
            assert got.sides is None
        else:
            assert got.sides.vertices[0][:, 1].tolist() == sides
