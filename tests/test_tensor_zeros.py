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


def test_a_product_with_an_infinity_is_answered_without_simplify(monkeypatch):
    """x0/x1 at x1 = 0 is zoo*x0 (infinite or NaN everywhere, never 0): not an annihilator,
    the answer simplify gives, now without the process's first simplify (it imports
    sympy.physics.units); a body that needs simplify still gets it."""
    bodies = [x0 / x1, x0 * x2 / x1, x0 / (x1 * x2)]
    for body in bodies:
        at = body.subs(x1, 0)
        assert zeros._never_zero(at) and sp.simplify(at) != 0  # simplify's answer: not 0
    assert not zeros._never_zero(x0 * (x2 + x1)) and not zeros._never_zero(x0 + x1)
    calls = []

    def refuse(e, *a, **k):
        calls.append(e)
        return sp.Integer(0)  # a wrong answer, should it be asked
    monkeypatch.setattr(zeros.sp, "simplify", refuse)
    zeros._CACHE.clear()
    assert [zeros.annihilators(b, 3) for b in bodies] == [(0,), (0, 2), (0,)]
    # GPT-2's bound reaches the substitution with the probes undecided (x0/x1 and
    # -x0*x1/x2**2 there): the infinite product is answered before simplify
    monkeypatch.setattr(zeros, "_nonzero_somewhere", lambda e, fixed: False)
    assert not zeros._vanishes_with(x0 / x1, x1)
    assert not zeros._vanishes_with(-x0 * x1 / x2 ** 2, x2)
    assert calls == []
    identity = x0 * x2 + (sp.sin(x1) ** 2 + sp.cos(x1) ** 2 - 1)  # 0 at x0 = 0 only by simplify
    assert zeros.annihilators(identity, 3, among=[0]) == (0,) and len(calls) == 1
    monkeypatch.undo()
    zeros._CACHE.clear()
    assert zeros.annihilators(identity, 3, among=[0]) == (0,)  # sympy's own simplify too
    zeros._CACHE.clear()
