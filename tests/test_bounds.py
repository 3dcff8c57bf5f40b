import sympy as sp

from symgrad.bounds import error_expr, error_program


def test_rules():
    a, b = sp.symbols("a b", real=True)
    assert error_expr(a + b, {}) == sp.Abs(a) + sp.Abs(b)  # one rounding of the sum
    assert error_expr(a * b, {}) == sp.Abs(a * b)
    assert error_expr(2 * a, {}) == 0  # exact scaling
    assert error_expr(sp.Rational(1, 3) * a, {}) != 0  # 1/3 is rounded
    Ea = sp.Symbol("Ea")
    assert error_expr(sp.exp(a), {a: Ea}) == sp.Abs(sp.exp(a)) * Ea + sp.Abs(sp.exp(a))
    assert error_expr(sp.Max(a, 0), {a: Ea}).has(Ea)  # Max propagates, adds no rounding
    assert error_expr(sp.Heaviside(a), {a: Ea}) == 0


def test_cancellation_gets_the_terms_tolerance():
    a, b = sp.symbols("a b", real=True)
    prog, err = error_program([(sp.Symbol("s"), a - b)])
    e = prog[0][1] if prog else err[sp.Symbol("s")]
    assert e.subs({a: 1, b: 1 - sp.Rational(1, 10**9)}) > 1  # |a| + |b|, not |a - b|
