"""``zeros._xreplace``: the annihilator probes' substitution, sharing a body's subtrees across
the arguments asked about, gives sympy's ``xreplace`` expression exactly, and never reuses a
subtree that holds the argument now fixed to 0 (planted: a shared ``exp(x1)`` at x1 = 0)."""

from __future__ import annotations

import sympy as sp

from symgrad.tensor import zeros
from symgrad.tensor.program import X

x0, x1, x2 = X[0], X[1], X[2]
BODY = x0 * sp.exp(x1) + x1 * sp.Max(x2, 0) * sp.log(1 + x0 ** 2) + sp.tanh(x2) * x0


def _rule(fixed: sp.Symbol) -> dict:
    values = {x0: sp.Rational(37, 100), x1: sp.Rational(-5, 3), x2: sp.Integer(2)}
    return {**values, fixed: sp.Integer(0)}


def test_shared_substitution_is_sympys_for_every_fixed_argument():
    shared: dict = {}
    for x in (x0, x1, x2, x1, x0):  # later arguments reuse what earlier ones substituted
        rule = _rule(x)
        got = zeros._xreplace(BODY, rule, {x}, shared)
        assert sp.srepr(got) == sp.srepr(BODY.xreplace(rule)), x
    assert shared  # something was shared (the test would pass vacuously otherwise)


def test_a_subtree_holding_the_fixed_argument_is_not_reused():
    shared: dict = {}
    zeros._xreplace(BODY, _rule(x0), {x0}, shared)  # exp(x1) at x1 = -5/3 is now shared
    assert shared[sp.exp(x1)][0] == sp.exp(sp.Rational(-5, 3))
    got = zeros._xreplace(BODY, _rule(x1), {x1}, shared)
    assert sp.exp(sp.Rational(-5, 3)) not in got.atoms(sp.exp)
    assert got == BODY.xreplace(_rule(x1))


def test_annihilators_unchanged_by_sharing():
    zeros._CACHE.clear()
    body = x0 * sp.exp(x1) * x2 + x2 ** 2 * sp.Max(x1, 0)
    assert zeros.annihilators(body, 3) == (2,)
    zeros._CACHE.clear()
