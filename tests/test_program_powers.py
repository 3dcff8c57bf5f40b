"""Limits and true domain errors in the program's oracle (ported from tests/test_powers.py's
scalar-oracle case, ``oracle.evaluate(..., limits=True)``, before the scalar oracle's pipeline
is deleted; the tensor half, test_the_tensor_oracle_takes_limits_and_keeps_domain_errors, stays
there, and covers x**y log x at x = 0 as d/dy of x**y): where the value itself is undefined (a
pole) the program's oracle (``symgrad.tensor.limits.oracle_limits``) never gives a finite
number; a jump (v/sqrt(v**2) at 0: 0/0) is a kink whose sides are its two one-sided limits."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import INCONCLUSIVE, KINK, OK
from symgrad.tensor.front import to_program
from symgrad.tensor.limits import oracle_limits
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor.views import oracle_view

V = sp.Symbol("v", real=True)


def _limits(expr, point: dict):
    params = sorted(expr.free_symbols, key=str)
    m = to_program(sg.Model("limit", expr, params=params))
    values = {k: np.array(a) for k, a in point.items()}
    hi, lo = oracle_view(m, values, oracle_ops(50))
    return hi, oracle_limits(m, values, hi, lo)


@pytest.mark.parametrize("expr", [1 / V, sp.log(V)], ids=["1/v", "log v"])
def test_a_pole_is_never_a_finite_number(expr):
    """1/v and log v at 0 have no finite value or derivative: no one-sided limit settles, so
    the program's oracle says NaN (a pole: domain, as the scalar oracle said)."""
    hi, got = _limits(expr, {"v": [0.0]})
    assert np.isnan(hi[0]).all() and got.sides is None


def test_a_jump_has_its_two_one_sided_limits():
    hi, got = _limits(V / sp.sqrt(V**2), {"v": [0.0]})
    assert got.sides is not None
    assert sorted(got.sides.vertices[0][:, 0].tolist()) == [-1.0, 1.0]


def test_a_jump_is_judged_as_a_kink_with_its_one_sided_limits():
    """v/sqrt(v**2) = sign(v) verified at v = 0: sqrt(v**2) is |v| (a kink site), whose sided
    program is still v/v = 0/0 there; the oracle takes the plain program's limits (-1, +1 for
    the value, 0 for d/dv) as the kink's sides. torch.sign's 0 lies between the sides
    (inconclusive, never failing; d/dv = 0 ok); (the value's allowance there is unbounded); a planted d/dv = 5 at 0 is never
    ok (the float64 bound of 1/|v| - v**2/|v|**3 near 0 is unbounded too: a warning, not a
    proven failure); numpy's
    formula as written is NaN there (non-finite, its own program's forward)."""
    m = sg.Model("sgn", V / sp.sqrt(V**2), params=[V])
    at = {"v": np.array([0.0, -2.0, 3.0])}
    r = sg.verify(m, at=at, backends=("torch_fn",), torch_fn=lambda v: torch.sign(v))
    status = r.comparisons["torch_fn"].status
    assert not r.failures, [f.message() for f in r.failures]
    assert r.comparisons["torch_fn"].expected[0].tolist() == [1.0, 0.0]
    assert status[0, 1] == OK and status[0, 0] in (OK, INCONCLUSIVE, KINK)
    bad = sg.verify(m, at=at, backends=("torch_fn",),  # d/dv = 5 at 0, outside the sides' 0
                    torch_fn=lambda v: torch.sign(v) + 5 * v * (v == 0))
    assert not bad.ok and bad.comparisons["torch_fn"].status[0, 1] != OK, str(bad)
