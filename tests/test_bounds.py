import numpy as np
import sympy as sp

from symgrad.backends.numpy import target
from symgrad.codegen import Printer, build
from symgrad.rounding import error_source


def _E(expr, values):
    """E of one expression of exact leaves (units of u), its ``error_source`` run as numpy."""
    syms = sorted(expr.free_symbols, key=str)
    pr = Printer(target("float64"), {s: f"a{i}" for i, s in enumerate(syms)})
    lines = ["def bound(X):"] + [f"    a{i} = X[{i}]" for i in range(len(syms))]
    lines.append(f"    return {error_source(expr, pr, {})}")
    f = build(lines, target("float64"), pr, "bound")
    return float(np.asarray(f([np.float64(values[str(s)]) for s in syms])))


def test_rules():
    a, b = sp.symbols("a b", real=True)
    pr = Printer(target("float64"), {a: "a", b: "b"})
    assert error_source(2 * a, pr, {}) == "0"  # exact scaling
    assert error_source(3 * a, pr, {}) != "0"  # 3a is rounded
    assert error_source(sp.Rational(1, 3) * a, pr, {}) != "0"  # 1/3 is rounded
    assert error_source(sp.Heaviside(a), pr, {a: "Ea"}) == "0"
    assert "Ea" in error_source(sp.Max(a, 0), pr, {a: "Ea"})  # Max propagates, no rounding
    assert _E(a * b, {"a": 2.0, "b": 3.0}) == 6.0  # one rounding of the product
    assert _E(sp.exp(a), {"a": 1.0}) == np.exp(1.0)


def test_cancellation_gets_the_terms_tolerance():
    a, b = sp.symbols("a b", real=True)
    # exact operands: the one addition rounds its result only (Sterbenz: here exactly 0)
    assert _E(a - b, {"a": 1.0, "b": 1.0 - 1e-9}) < 2e-9
    # rounded operands: their errors, at the terms' scale, cancel nothing
    assert _E(a**2 - b**2, {"a": 1.0, "b": 1.0 - 1e-9}) > 1.9
    # three terms: one inner result (a subset sum, |.| <= (|a|+|b|+|c| + |S|) / 2) and S
    c = sp.Symbol("c", real=True)
    assert _E(a + b + c, {"a": 1.0, "b": -1.0, "c": 0.5}) == (2.5 + 0.5) / 2 + 0.5


def test_a_sum_in_any_order_stays_within_its_bound():
    """float32 sums of 2-8 exact terms that cancel, in random orders: |fl(sum) - sum| <= u E
    (E: the rule's own rounding of the sum, each addition's result at most its subset sum)."""
    rng = np.random.default_rng(5)
    u = 2.0**-24
    worst = 0.0
    for _ in range(400):
        n = int(rng.integers(2, 9))
        x = rng.standard_normal(n).astype(np.float32)
        x[-1] = np.float32(-x[:-1].astype(np.float64).sum() * (1 - 10.0 ** -rng.integers(1, 7)))
        syms = sp.symbols(f"t0:{n}", real=True)
        E = _E(sp.Add(*syms), {str(s): float(v) for s, v in zip(syms, x)})
        got = np.float32(0)
        for i in rng.permutation(n):
            got = np.float32(got + x[i])
        err = abs(float(got) - float(sum(map(float, x))))  # exact: float64 holds these sums
        assert err <= u * E * (1 + 8 * u), (x, err, u * E)
        worst = max(worst, err / (u * E) if E else 0.0)
    assert worst > 0.1  # the bound is reached within a small factor: it could see an error
