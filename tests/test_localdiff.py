"""``tensor.localdiff.diff`` is ``sympy.diff``: the same expression (``==`` and ``srepr``) and the
same value at 40 digits, on every map body the fuzz, the op catalogue's fast subset and the zoo
differentiate (``tests/data/map_bodies.txt.gz``, written by ``scripts/collect_map_bodies.py``),
and on hand-written bodies at kinks, ties and the fallbacks (an unknown function's
``Subs``/``Derivative``). The 40-digit comparison is shown to catch a derivative off by one
part in 10^30 and one with a wrong sign on one side of a kink."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from symgrad.functions import SUPPORTED
from symgrad.tensor.localdiff import diff
from symgrad.tensor.program import X

DATA = Path(__file__).parent / "data" / "map_bodies.txt.gz"
NAMESPACE = {**vars(sp), **{c.__name__: c for c in SUPPORTED}, "ExprCondPair": ExprCondPair}
DIGITS = 40
SPREAD = 100  # the default run checks one body in SPREAD in each of four shares


def _bodies() -> list[tuple[sp.Expr, list[int]]]:
    out = []
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        for line in f:
            args, text = line.rstrip("\n").split("\t")
            out.append((eval(text, dict(NAMESPACE)), [int(i) for i in args.split(",")]))
    return out


BODIES = _bodies()


def _value(e: sp.Expr, point: dict) -> sp.Expr | None:
    """``e`` at ``point`` (60-digit floats), to ``DIGITS`` digits; None where it is not a
    finite real number there (a pole, a complex intermediate, outside its domain)."""
    try:
        v = sp.N(e.xreplace(point), DIGITS)
    except (ValueError, TypeError, ZeroDivisionError):  # Heaviside of a complex number
        return None
    return v if v.is_Number and v.is_finite else None


def _same_at(a: sp.Expr, b: sp.Expr, points: list[dict]) -> bool:
    """Do ``a`` and ``b`` agree to 35 of their 40 digits at every point (or are both
    undefined there)?"""
    for p in points:
        va, vb = _value(a, p), _value(b, p)
        if va is None or vb is None:
            if va is not vb:
                return False
        elif abs(va - vb) > sp.Float(10, DIGITS) ** -35 * max(1, abs(va), abs(vb)):
            return False
    return True


def _points(e: sp.Expr, rng: np.random.Generator, n: int = 2) -> list[dict]:
    """Up to ``n`` random points where ``e`` is a finite real number, each coordinate a
    float64 held at 60 digits (the first tried: integers in -1..1, the kinks of relu-like
    bodies); at most ``10 n`` tries."""
    syms = sorted(e.free_symbols, key=str)
    out: list[dict] = []
    for q in range(10 * n):
        vals = rng.uniform(-2.0, 2.0, len(syms)) if q else rng.integers(-1, 2, len(syms))
        p = {s: sp.Float(float(v), 60) for s, v in zip(syms, vals)}
        if _value(e, p) is not None:
            out.append(p)
        if len(out) == n:
            break
    return out


def _check(body: sp.Expr, args: list[int], rng: np.random.Generator | None) -> int:
    """Assert every derivative is sympy's; returns how many derivatives were also compared
    at 40 digits at a point where they are defined."""
    compared = 0
    points = _points(body, rng) if rng is not None else []
    for i in args:
        got, want = diff(body, X[i]), sp.diff(body, X[i])
        assert got == want and sp.srepr(got) == sp.srepr(want), (
            f"localdiff.diff(body, x{i}) differs from sympy.diff: got {got}, expected {want} "
            f"(body {body})")
        assert _same_at(got, want, points), (
            f"d/dx{i} of {body} differs at 40 digits from sympy.diff's")
        compared += any(_value(want, p) is not None for p in points)
    return compared


def test_the_collected_bodies_cover_the_three_workloads():
    kinds = {type(a) for b, _ in BODIES for a in sp.preorder_traversal(b)}
    assert len(BODIES) > 1000  # fuzz + op catalogue + zoo: 1,114 when collected
    assert {sp.Piecewise, sp.Max, sp.Heaviside, sp.Abs, sp.erf, sp.tanh} <= kinds


@pytest.mark.parametrize("part", range(4))
def test_a_spread_share_of_the_bodies_is_sympys_derivative_at_40_digits(part):
    """Four shares of one body in ``SPREAD`` each (evenly spread; the slow test takes all):
    the same expression for every argument, and the same value at 40 digits at two random
    points where the body is defined."""
    rng = np.random.default_rng(part)
    share = BODIES[part::SPREAD]
    compared = sum(_check(body, args, rng) for body, args in share)
    assert compared >= 0.8 * sum(len(args) for _, args in share)  # not vacuous


@pytest.mark.slow
def test_every_collected_body_is_sympys_derivative():
    rng = np.random.default_rng(17)
    compared = sum(_check(body, args, rng) for body, args in BODIES)
    assert compared >= 0.8 * sum(len(args) for _, args in BODIES)  # not vacuous


x, y, z = X[:3]
f = sp.Function("f")


@pytest.mark.parametrize("body", [
    sp.Max(x, 0), sp.Max(x, y, z) * x, sp.Min(x, 2 * y), sp.Abs(x - y) ** 3,
    sp.Heaviside(x - y, 1) * y, sp.sign(x) * x ** 2,
    sp.Piecewise((sp.log(x), x > 1), (x ** 2, x > 0), (0, True)),
    sp.Piecewise((x * y, x > y), (y, True)) + sp.exp(-sp.Abs(y)),
    x ** y, sp.Abs(x) ** y / x, sp.sqrt(sp.Max(x, 0)) + x, sp.log(1 + sp.exp(x * y)),
    sp.erf(x / sp.sqrt(2)) * x / 2, sp.tanh(sp.Rational(7, 10) * (x + x ** 3 / 23)),
    sp.atan2(x, y), sp.Max(x, y) - sp.Max(y, x), x * y * z * sp.cos(x * z),
])
def test_hand_written_bodies_are_sympys_derivative(body):
    _check(body, [0, 1], np.random.default_rng(3))


@pytest.mark.parametrize("body", [f(x ** 2) * y, sp.Derivative(f(x), x) + x,
                                  sp.Integral(x * y, (y, 0, 1)) + x * sp.Subs(f(y), y, x)])
def test_bodies_sympy_leaves_unevaluated_take_sympys_own_path(body):
    """An undefined function's derivative (``Subs``), a ``Derivative`` or an ``Integral`` in
    the body: the same expression as ``sympy.diff`` (no value to compare)."""
    _check(body, [0, 1], None)


def test_the_40_digit_comparison_catches_a_planted_wrong_derivative():
    body = sp.Max(x, 0) * sp.tanh(x * y) + sp.Piecewise((x ** 2, x > y), (y, True))
    right = sp.diff(body, x)
    points = _points(body, np.random.default_rng(5), 4)
    assert _same_at(diff(body, x), right, points)
    assert not _same_at(right * (1 + sp.Rational(1, 10 ** 30)), right, points)
    flipped = right.xreplace({sp.Heaviside(x): -sp.Heaviside(x)})  # one side's sign wrong
    flipped_points = [{x: sp.Float(0.75, 60), y: sp.Float(0.5, 60)}]
    assert flipped != right and not _same_at(flipped, right, flipped_points)


def test_a_non_symbol_is_named_in_one_line():
    with pytest.raises(TypeError, match=r"differentiate by a Symbol, got x0\*\*2 \(Pow\)"):
        diff(x * y, x ** 2)
