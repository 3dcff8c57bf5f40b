"""Limits and true domain errors in the program's oracle (ported from tests/test_powers.py's
scalar-oracle case, ``oracle.evaluate(..., limits=True)``, before the scalar oracle's pipeline
is deleted; the tensor half, test_the_tensor_oracle_takes_limits_and_keeps_domain_errors, stays
there, and covers x**y log x at x = 0 as d/dy of x**y): where the value itself is undefined (a
pole, a jump) the program's oracle (``symgrad.tensor.limits.oracle_limits``) never gives a
finite number; a jump's two one-sided limits are not taken yet (xfail)."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
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
    """1/v and log v at 0 have no finite value or derivative (the scalar oracle said NaN; the
    program says +-inf: see test_program_oracle.py's xfail on the cause's name)."""
    hi, got = _limits(expr, {"v": [0.0]})
    assert not np.isfinite(hi[0]).any() and got.sides is None


@pytest.mark.xfail(strict=True, reason="program-path difference (issue 17 ports): the scalar "
                   "oracle gave v/sqrt(v**2) at 0 its one-sided limits -1 and +1 (a kink); the "
                   "program's oracle_limits leaves the value undefined (NaN, no sides)")
def test_a_jump_has_its_two_one_sided_limits():
    hi, got = _limits(V / sp.sqrt(V**2), {"v": [0.0]})
    assert got.sides is not None
    assert sorted(got.sides.vertices[0][:, 0].tolist()) == [-1.0, 1.0]
