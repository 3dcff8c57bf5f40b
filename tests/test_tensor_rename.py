"""symgrad.tensor.rename: the same body as xreplace (equal, hash-equal, same derivative)."""

import sympy as sp

from symgrad.tensor.program import X
from symgrad.tensor.rename import rename

a, b, c, d = sp.symbols("a b c d", real=True)

BODIES = [
    sp.Max(a, b, c, d) * a,
    sp.Min(a, 0, b + c) - sp.Max(0, sp.Min(a, d)),
    sp.exp(a - sp.Max(a, b, c)) / (sp.exp(b - sp.Max(a, b, c)) + 1),
    sp.Piecewise((a * b, a > 0), (sp.Max(c, d), True)),
    sp.Heaviside(a - sp.Max(b, c), 1) * d,
    sp.log(1 + sp.exp(-sp.Abs(a))) + sp.Max(a, 0),
]


def test_rename_equals_xreplace_on_bodies_with_max_and_min():
    mapping = {a: X[3], b: X[0], c: X[2], d: X[1]}
    for e in BODIES:
        got, want = rename(e, mapping), e.xreplace(mapping)
        assert got == want and hash(got) == hash(want), e
        assert got.free_symbols == want.free_symbols
        assert sp.diff(got, X[3]) == sp.diff(want, X[3])


def test_rename_is_simultaneous_and_leaves_unmapped_symbols():
    e = sp.Max(a, b) + c
    assert rename(e, {a: b, b: a}) == e  # a swap: the same Max
    assert rename(e, {a: d}) == sp.Max(d, b) + c
    assert rename(e, {}) is e


def test_renamed_max_still_evaluates_at_numbers():
    e = rename(sp.Max(a, b, c), {a: X[0], b: X[1], c: X[2]})
    assert e.subs({X[0]: 1, X[1]: 3, X[2]: 2}) == 3
