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
    assert _E(a - b, {"a": 1.0, "b": 1.0 - 1e-9}) > 1.9  # |a| + |b|, not |a - b|
