"""symgrad.precise: DD functions against mpmath (60 digits), error-free contractions against exact
rationals, the ARB table's enclosures, and certification (a planted DD error is not certified)."""

from __future__ import annotations

import zlib
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from symgrad.errors import SymgradError
from symgrad.precise import DD, DD_OPS, DDOps, OzakiConfig
from symgrad.precise import dderf as E
from symgrad.precise.ddops import dd_constant, sympy_to_fraction
from symgrad.precise import ddmath as M

mp.mp.dps = 60
TINY_FLOOR = mp.mpf(2) ** -968  # below, DD has fewer than 106 bits (lo is subnormal): absolute errors


def _edges(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mags = np.concatenate([10.0 ** rng.uniform(-300, 2.5, 150), rng.uniform(0, 3, 100), rng.uniform(0, 30, 100),
                           [0.0, 5e-324, 1e-300, 1e-20, 0.5, 1.0, 2.0, 2.5, 3.0, 0.34657359027997264, 700.0, 709.7]])
    return np.concatenate([mags, -mags])


def _rel_errors(f, mf, xs) -> tuple[float, float]:
    """(worst relative error, x where) of f on DD(xs) against mf at 60 digits."""
    with np.errstate(all="ignore"):
        y = f(DD(np.asarray(xs, dtype=float)))
    worst, where_ = mp.mpf(0), None
    for x, h, l in zip(xs, y.hi, y.lo):
        ex = mf(mp.mpf(float(x)))
        if mp.isnan(ex) or mp.isinf(ex) or abs(ex) > mp.mpf("1.7976931348623157e308"):
            ok = (np.isnan(h) and mp.isnan(ex)) or (np.isinf(h) and mp.sign(h) == mp.sign(ex)) or \
                (np.isinf(h) and abs(ex) > mp.mpf("1.7976931348623157e308"))
            err = mp.mpf(0) if ok else mp.inf
        else:
            got = mp.mpf(float(h)) + mp.mpf(float(l))
            err = abs(got - ex) / max(abs(ex), TINY_FLOOR)
        if err > worst:
            worst, where_ = err, x
    return float(worst), where_


def _real(f, lo=None):
    return lambda x: mp.nan if (lo is not None and x < lo) else f(x)


FUNCTIONS = [  # name, DD function, mpmath reference, domain filter, documented relative error
    ("exp", M.exp, mp.exp, lambda x: True, 1e-31),
    ("expm1", M.expm1, mp.expm1, lambda x: True, 1e-31),
    ("log", M.log, _real(mp.log, 0), lambda x: True, 2e-31),
    ("log1p", M.log1p, _real(mp.log1p, -1), lambda x: True, 2e-31),
    ("sqrt", M.sqrt, _real(mp.sqrt, 0), lambda x: True, 1e-31),
    ("tanh", M.tanh, mp.tanh, lambda x: True, 1e-31),
    ("sigmoid", M.sigmoid, lambda x: 1 / (1 + mp.exp(-x)), lambda x: True, 1e-31),
    ("sech2", M.sech2, lambda x: mp.sech(x) ** 2, lambda x: True, 1e-31),
    ("erf", E.erf, mp.erf, lambda x: True, 1e-30),
    ("erfc", E.erfc, mp.erfc, lambda x: True, 1e-29),
    ("x**7", lambda x: M.ipow(x, 7), lambda x: x ** 7, lambda x: True, 1e-31),
    ("x**-3", lambda x: M.ipow(x, -3), lambda x: x ** -3, lambda x: x != 0, 1e-31),
    ("x**(3/2)", lambda x: M.pow_rational(x, 3, 2), _real(lambda x: x ** mp.mpf(1.5), 0), lambda x: True, 1e-31),
    ("x**(-5/2)", lambda x: M.pow_rational(x, -5, 2), _real(lambda x: x ** mp.mpf(-2.5), 0), lambda x: x != 0, 1e-31),
    ("x**(1/3)", lambda x: M.pow_rational(x, 1, 3), _real(mp.cbrt, 0), lambda x: True, 1e-29),
]


@pytest.mark.parametrize("name,f,mf,keep,tol", FUNCTIONS, ids=[r[0] for r in FUNCTIONS])
def test_dd_function_against_mpmath(name, f, mf, keep, tol):
    xs = np.array([x for x in _edges(zlib.crc32(name.encode())) if keep(x)])
    worst, at = _rel_errors(f, mf, xs)
    assert worst <= tol, f"{name}: relative error {worst:.3g} at x = {at!r} exceeds {tol}"


def test_cancellation_one_minus_tanh_near_saturation_keeps_lo_bits():
    # tanh(x) = 1 - t with t down to 1e-300: the DD (1, -t) carries t to ~53 bits
    xs = np.array([5.0, 10.0, 18.7, 25.0, 40.0, 100.0, 300.0])
    worst, at = _rel_errors(lambda x: 1 - M.tanh(x), lambda x: 2 / (mp.exp(2 * x) + 1), xs)
    assert worst < 2.0 ** -50, (worst, at)


def test_cancellation_one_minus_erf_keeps_lo_bits():
    xs = np.array([3.0, 3.9, 4.0, 5.5, 6.0, 9.0, 10.0, 20.0, 26.0])
    worst, at = _rel_errors(lambda x: 1 - E.erf(x), mp.erfc, xs)
    assert worst < 2.0 ** -50, (worst, at)


@pytest.mark.parametrize("expr_fn,ref,xs", [
    (lambda x: sp.log(1 + sp.exp(-x)), lambda x: mp.log1p(mp.exp(-x)), [152.0, 600.0, 30.0, -40.0]),
    (lambda x: 1 + sp.erf(x), lambda x: mp.erfc(-x), [-6.0, -20.0, -1.0, 3.0]),
    (lambda x: 1 - sp.erf(x), mp.erfc, [6.0, 20.0, 0.3]),
    (lambda x: 1 + sp.tanh(x), lambda x: 2 / (1 + mp.exp(-2 * x)), [-30.0, -300.0, 0.5]),
    (lambda x: 1 - sp.tanh(x) ** 2, lambda x: 4 / (mp.exp(x) + mp.exp(-x)) ** 2, [20.0, 300.0, 1e-9]),
    (lambda x: sp.exp(x) - 1, mp.expm1, [1e-20, -1e-9, 3.0]),
    (lambda x: x * (1 + sp.erf(x / sp.sqrt(2))) / 2, lambda x: x * mp.erfc(-x / mp.sqrt(2)) / 2, [-10.0, -30.0]),
])
def test_map_rewrites_cancellation_prone_forms(expr_fn, ref, xs):
    x = sp.Symbol("x")
    y = DD_OPS.map(expr_fn(x), {x: np.array(xs)})
    for xi, h, l in zip(xs, *DD_OPS.to_float64(y)):
        ex = ref(mp.mpf(xi))
        assert abs(mp.mpf(h) + mp.mpf(l) - ex) <= 1e-30 * abs(ex), (xi, h, l, ex)


def test_plain_forms_without_rewrite_keep_only_the_low_part():
    # the rewrite is what the test above measures: 1 + erf(-6) computed as written keeps only the
    # ~53 bits of erfc(6) that the DD erf(-6) = (-1, erfc(6)) carries in lo
    naive = E.erf(DD(np.array([-6.0]))) + DD(np.array([1.0]))
    err = abs(mp.mpf(naive.hi[0]) + mp.mpf(naive.lo[0]) - mp.erfc(6)) / mp.erfc(6)
    assert 1e-25 < err < 2.0 ** -50


def test_map_constants_exact_and_symbolic():
    x = sp.Symbol("x")
    one = np.array([1.0])
    for c in (sp.Rational(1, 10 ** 5), -sp.pi, -sp.sqrt(3), sp.pi, sp.E, sp.sqrt(2 / sp.pi), sp.Float("0.044715"), sp.Integer(3) / 7):
        y = DD_OPS.map(c * x, {x: one})
        ex = mp.mpf(sp.N(c, 60))
        assert abs(mp.mpf(y.hi[0]) + mp.mpf(y.lo[0]) - ex) <= 2e-32 * abs(ex), c


def test_map_pow_forms_and_real_semantics():
    x, y = sp.symbols("x y")
    xs = np.array([-2.0, 0.0, 0.25, 3.0])
    got = DD_OPS.map(x ** sp.Rational(1, 2), {x: xs})
    assert np.isnan(got.hi[0]) and got.hi[1] == 0 and got.hi[2] == 0.5
    inv = DD_OPS.map(1 / x, {x: xs})
    assert inv.hi[1] == np.inf and inv.hi[0] == -0.5
    p = DD_OPS.map(x ** y, {x: np.array([2.0]), y: np.array([0.5])})
    assert abs(mp.mpf(p.hi[0]) + mp.mpf(p.lo[0]) - mp.sqrt(2)) < 1e-31
    fl = DD_OPS.map(x ** sp.Float(1.5), {x: np.array([4.0])})
    assert fl.hi[0] == 8.0 and abs(fl.lo[0]) < 1e-29


def test_map_nonsmooth_functions_exact_with_nan_propagation():
    x, y = sp.symbols("x y")
    xs = np.array([-1.5, 0.0, 2.0, np.nan])
    ys = np.array([1.0])
    args = {x: xs, y: ys}
    get = lambda e: DD_OPS.to_float64(DD_OPS.map(e, args))[0]  # noqa: E731
    np.testing.assert_array_equal(get(sp.Abs(x)), [1.5, 0.0, 2.0, np.nan])
    np.testing.assert_array_equal(get(sp.sign(x)), [-1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(get(sp.Max(x, y, 0)), [1.0, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(get(sp.Min(x, y)), [-1.5, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(get(sp.Heaviside(x)), [0.0, 0.5, 1.0, np.nan])
    np.testing.assert_array_equal(get(sp.Heaviside(x, 0)), [0.0, 0.0, 1.0, np.nan])
    pw = sp.Piecewise((x * y, sp.And(x > -1, sp.Ne(x, 0))), (2 * y, sp.Or(sp.Eq(x, 0), x < -1)), (-y, True))
    np.testing.assert_array_equal(get(pw)[:3], [2.0, 2.0, 2.0])
    assert np.isnan(DD_OPS.map(sp.Piecewise((x, x > 5)), args).hi).all()  # no branch: NaN


def test_comparisons_see_the_low_part():
    a = DD(np.array([1.0, 1.0]), np.array([1e-20, -1e-20]))
    b = DD(np.array([1.0, 1.0]))
    assert list(a > b) == [True, False] and list(a < b) == [False, True]
    x, y = sp.symbols("x y")
    m = DD_OPS.map(sp.Max(x, y), {x: a, y: b})
    assert list(m.lo) == [1e-20, 0.0]


def test_map_unsupported_function_and_missing_symbol_are_named():
    x, z = sp.symbols("x z")
    with pytest.raises(SymgradError, match="acosh"):
        DD_OPS.map(sp.acosh(x), {x: np.ones(2)})
    with pytest.raises(SymgradError, match="z"):
        DD_OPS.map(x + z, {x: np.ones(2)})


def test_arithmetic_error_free_cancellation():
    a = DD(np.array([1e16]), np.array([1.0]))
    d = a - DD(np.array([1e16]))
    assert d.hi[0] == 1.0
    third = DD(np.array([1.0])) / DD(np.array([3.0]))
    ex = Fraction(1, 3)
    got = Fraction(float(third.hi[0])) + Fraction(float(third.lo[0]))
    assert abs(got - ex) <= Fraction(1, 3) * Fraction(1, 2 ** 104)


# ---------------------------------------------------------------------------------- contractions
def _fr(a: np.ndarray) -> np.ndarray:
    return np.vectorize(Fraction, otypes=[object])(a)


def _dd_fr(x: DD) -> np.ndarray:
    return x.to_fractions()


def _check_product(a: DD, b: DD, ops=DD_OPS, tol=1e-30):
    c = ops.einsum("ij,jk->ik", a, b)
    exact = _dd_fr(a).dot(_dd_fr(b))
    absab = np.abs(a.hi) @ np.abs(b.hi)
    got = c.to_fractions()
    worst = max((float(abs(g - e)) / s if s else float(abs(g - e)))
                for g, e, s in zip(got.ravel(), exact.ravel(), absab.ravel()))
    assert worst <= tol, f"einsum error {worst:.3g} x |A||B| exceeds {tol}"
    return worst


def test_einsum_random_against_exact_rationals():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((9, 200)), rng.standard_normal((200, 7))
    _check_product(DD_OPS.asarray(a), DD_OPS.asarray(b))


def test_einsum_dd_operands_with_low_parts():
    rng = np.random.default_rng(1)
    a = DD(rng.standard_normal((6, 50))) / DD(np.array(3.0))  # genuine 106-bit entries
    b = M.exp(DD(rng.standard_normal((50, 4))))
    _check_product(a, b)


def test_einsum_wide_exponents_and_scaled_contraction_axis():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 120)) * 2.0 ** rng.integers(-40, 40, (8, 120))
    b = rng.standard_normal((120, 5)) * 2.0 ** rng.integers(-40, 40, (120, 5))
    _check_product(DD_OPS.asarray(a), DD_OPS.asarray(b))
    d = 2.0 ** rng.integers(-60, 60, 120)  # scales along K: equilibration makes this as easy as random
    x, y = rng.standard_normal((8, 120)) * d, rng.standard_normal((120, 5)) / d[:, None]
    _check_product(DD_OPS.asarray(x), DD_OPS.asarray(y))
    plain = DDOps(OzakiConfig(equilibrate=False))
    with pytest.raises(AssertionError):  # the option is what makes it pass
        _check_product(plain.asarray(x), plain.asarray(y), ops=plain)


def test_einsum_cancelling_rows_exact_result():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 64))
    b = rng.standard_normal((64, 3))
    a[1] = -a[0]
    a[2] = a[0] * (1 + 2.0 ** -45)  # result row 2 + row 0 cancels to ~1e-14 of the terms
    c = DD_OPS.einsum("ij,jk->ik", DD_OPS.asarray(a), DD_OPS.asarray(b))
    exact = _fr(a).dot(_fr(b))
    got = c.to_fractions()
    s = (got[0] + got[1])
    assert all(v == 0 for v in s)  # c[1] = -c[0] exactly: each is correctly rounded-to-106-bits of the same value
    rel = max(abs(float((g - e) / e)) for g, e in zip(got[2], exact[2]))
    assert rel < 1e-29


def test_einsum_tiling_and_k_blocks_agree_with_exact():
    rng = np.random.default_rng(4)
    small = DDOps(OzakiConfig(k_block=16, tile_elems=40))
    a, b = rng.standard_normal((7, 70)), rng.standard_normal((70, 11))
    _check_product(small.asarray(a), small.asarray(b), ops=small)


def test_einsum_general_specs():
    rng = np.random.default_rng(5)
    a, b, c = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5)), rng.standard_normal((5,))
    got = DD_OPS.to_float64(DD_OPS.einsum("bij,bjk,k->bi", a, b, c))[0]
    np.testing.assert_allclose(got, np.einsum("bij,bjk,k->bi", a, b, c), rtol=1e-13)
    np.testing.assert_array_equal(DD_OPS.to_float64(DD_OPS.einsum("ii->", np.eye(3) * 2))[0], 6.0)
    np.testing.assert_allclose(DD_OPS.to_float64(DD_OPS.einsum("ij->ji", a[0]))[0], a[0].T)
    np.testing.assert_allclose(DD_OPS.to_float64(DD_OPS.einsum("i,j", c, c))[0], np.outer(c, c))
    with pytest.raises(SymgradError, match="operand 1"):
        DD_OPS.einsum("ij,jk->ik", a[0], c)


def test_einsum_nonfinite_follow_ieee():
    a = np.array([[np.inf, 1.0], [1.0, 2.0]])
    b = np.array([[0.0], [1.0]])
    got = DD_OPS.to_float64(DD_OPS.einsum("ij,jk->ik", a, b))[0]
    assert np.isnan(got[0, 0]) and got[1, 0] == 2.0


def test_sum_amax_take_scatter():
    x = DD(np.array([[1e30, 1.0, -1e30, 1e-30], [3.0, 2.0, 1.0, 0.0]]))
    s = DD_OPS.sum(x, axis=1)
    assert s.hi[0] == 1.0 and s.lo[0] == 1e-30 and s.hi[1] == 6.0
    assert DD_OPS.sum(x, axis=(0, 1), keepdims=True).shape == (1, 1)
    m = DD_OPS.amax(DD(np.array([[1.0, 1.0]]), np.array([[0.0, 1e-20]])), axis=1)
    assert m.hi[0] == 1.0 and m.lo[0] == 1e-20
    rng = np.random.default_rng(6)
    table = DD(rng.standard_normal((5, 3)))
    idx = np.array([[4, 0], [4, 4]])
    g = DD(rng.standard_normal((2, 2, 3)))
    # adjoint identity <take(T), g> = <T, scatter_add(g)>, exactly in rationals
    lhs = (_dd_fr(DD_OPS.take(table, idx, 0)) * _dd_fr(g)).sum()
    sc = DD_OPS.scatter_add(g, idx, 0, 5)
    rhs = (_dd_fr(table) * _dd_fr(sc)).sum()
    assert abs(float(lhs - rhs)) < 1e-28
    assert sc.shape == (5, 3)
    with pytest.raises(SymgradError, match="index"):
        DD_OPS.take(table, np.array([5]), 0)


def test_structural_ops_keep_a_zero_low_part_a_zero_view():
    """A DD made from float64 data (lo: a +0 zero view) keeps a zero view through take,
    reshape and transpose (numpy's take would first copy a broadcast lo whole: GPT-2's token
    table, 309 MB of zeros for a sample's rows), with the values a materialised lo gives;
    a -0 lo view goes the copying way and keeps its sign."""
    rng = np.random.default_rng(3)
    table = DD(rng.standard_normal((50, 4)))
    assert table.lo_is_zero_view
    idx = np.array([7, 0, 7, 49])
    dense = DD(table.hi, np.zeros((50, 4)))
    for f in (lambda t: DD_OPS.take(t, idx, 0), lambda t: DD_OPS.reshape(t, (4, 50)),
              lambda t: DD_OPS.transpose(t, (1, 0))):
        got, ref = f(table), f(dense)
        assert got.lo_is_zero_view and not ref.lo_is_zero_view
        assert np.array_equal(got.hi, ref.hi) and np.array_equal(got.lo, ref.lo)
    neg = DD(table.hi, np.broadcast_to(np.float64(-0.0), (50, 4)))
    assert np.signbit(DD_OPS.take(neg, idx, 0).lo).all()


# ---------------------------------------------------------------------------------- ARB table
import flint  # noqa: E402

from symgrad.precise import ARB_OPS  # noqa: E402
from symgrad.precise.certify import CertifyConfig, certify, escalate  # noqa: E402


def _contains(ball, exact_mp) -> bool:
    with flint.ctx.workprec(400):
        m = mp.mpf(ball.mid().str(120, radius=False))
        r = mp.mpf(ball.rad().str(20, radius=False))
    return abs(exact_mp - m) <= r * (1 + mp.mpf(10) ** -15) + abs(exact_mp) * mp.mpf(10) ** -55


@pytest.mark.parametrize("expr_fn,ref", [
    (sp.exp, mp.exp), (sp.tanh, mp.tanh), (sp.erf, mp.erf),
    (lambda x: sp.log(1 + sp.exp(-x)), lambda x: mp.log1p(mp.exp(-x))),
    (lambda x: x * (1 + sp.erf(x / sp.sqrt(2))) / 2, lambda x: x * mp.erfc(-x / mp.sqrt(2)) / 2),
    (lambda x: sp.sqrt(sp.Abs(x)) + x ** 3 / 7, lambda x: mp.sqrt(abs(x)) + x ** 3 / 7),
])
def test_arb_balls_contain_mpmath_values(expr_fn, ref):
    x = sp.Symbol("x")
    xs = np.array([-7.5, -1.0, -1e-8, 0.25, 2.0, 12.0])
    ops = ARB_OPS.at(160)
    balls = ops.map(expr_fn(x), {x: xs})
    rad = ops.radius(balls)
    for xi, b, r in zip(xs, balls, rad):
        ex = ref(mp.mpf(float(xi)))
        assert _contains(b, ex), (xi, b, ex)
        assert r <= 1e-40 * max(1.0, abs(float(ex))), (xi, r)


def test_arb_precision_is_restored_and_checked():
    before = flint.ctx.prec
    ARB_OPS.at(300).map(sp.exp(sp.Symbol("x")), {sp.Symbol("x"): np.ones(2)})
    assert flint.ctx.prec == before
    with pytest.raises(SymgradError, match="precision"):
        ARB_OPS.at(20)
    with pytest.raises(SymgradError, match="acosh"):
        ARB_OPS.map(sp.acosh(sp.Symbol("x")), {sp.Symbol("x"): np.ones(2)})


def test_arb_einsum_exact_for_float64_data_and_matches_dd():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((5, 40)), rng.standard_normal((40, 3))
    ops = ARB_OPS.at(200)
    c = ops.einsum("ij,jk->ik", a, b)
    exact = _fr(a).dot(_fr(b))
    hi, lo = ops.to_float64(c)
    for h, l, e, r in zip(hi.ravel(), lo.ravel(), exact.ravel(), ops.radius(c).ravel()):
        assert r == 0.0 and Fraction(h) + Fraction(l) == Fraction(float(e)) + Fraction(float(e - Fraction(float(e))))
    dd = DD_OPS.einsum("ij,jk->ik", a, b)
    assert certify(*DD_OPS.to_float64(dd), c, config=CertifyConfig(rel=1e-30)).ok


def test_arb_structural_ops_match_dd():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4))
    idx = np.array([2, 0, 2])
    for f in (lambda o, v: o.sum(v, axis=1), lambda o, v: o.amax(v, axis=0, keepdims=True),
              lambda o, v: o.take(v, idx, 0), lambda o, v: o.scatter_add(v, idx, 0, 4),
              lambda o, v: o.einsum("ij->ji", v), lambda o, v: o.einsum("ij,ij->i", v, v)):
        got = ARB_OPS.to_float64(f(ARB_OPS, ARB_OPS.asarray(x)))[0]
        want = DD_OPS.to_float64(f(DD_OPS, DD_OPS.asarray(x)))[0]
        np.testing.assert_array_equal(got, want)
    for ops in (DD_OPS, ARB_OPS):  # one axes() for both tables: -1 from the end, 2 refused
        v = ops.asarray(x)
        np.testing.assert_array_equal(ops.to_float64(ops.sum(v, axis=-1))[0],
                                      ops.to_float64(ops.sum(v, axis=1))[0])
        with pytest.raises(SymgradError, match="axis 2 out of range for an array of 2"):
            ops.amax(v, axis=(0, 2))


def test_arb_piecewise_straddling_ball_takes_both_branches():
    x = sp.Symbol("x")
    wide = np.array([flint.arb(0, 1e-3), flint.arb(1)], dtype=object)
    out = ARB_OPS.map(sp.Piecewise((x + 10, x > 0), (x, True)), {x: wide})
    assert out[0].contains(flint.arb(10)) and out[0].contains(flint.arb(0))
    assert out[1].contains(flint.arb(11)) and not out[1].contains(flint.arb(1))


# ---------------------------------------------------------------------------------- certification
def _gelu_erf(x):
    return x * (1 + sp.erf(x / sp.sqrt(2))) / 2


def test_certify_accepts_dd_and_rejects_a_planted_error():
    x = sp.Symbol("x")
    xs = np.array([-12.0, -3.0, -0.1, 0.0, 0.7, 5.0])
    expr = _gelu_erf(x) * sp.tanh(x) + sp.log(1 + sp.exp(-x))
    dd = DD_OPS.map(expr, {x: xs})
    run = escalate(lambda ops: ops.map(expr, {x: xs}), 1e-32 * np.maximum(np.abs(dd.hi), 1e-300))
    assert run.converged
    cert = certify(*DD_OPS.to_float64(dd), run.balls)
    assert cert.ok and cert.max_rel_error < 1e-29, cert.summary()
    hi, lo = DD_OPS.to_float64(dd)
    lo = lo.copy()
    lo[2] += abs(hi[2]) * 1e-26  # a DD error 100x above the claim, 10 digits below float64
    bad = certify(hi, lo, run.balls)
    assert not bad.ok and bad.n_certified == xs.size - 1 and bad.worst == (2,)
    assert "allowance" in bad.summary()


def test_certify_nonfinite_agreement_and_shape_check():
    x = sp.Symbol("x")
    xs = np.array([-1.0, 4.0])
    expr = sp.log(x)
    dd = DD_OPS.map(expr, {x: xs})
    balls = ARB_OPS.map(expr, {x: xs})
    assert certify(*DD_OPS.to_float64(dd), balls).ok  # NaN where both are undefined
    hi = np.array([1.0, 2.0])
    assert not certify(hi, np.zeros(2), balls).ok
    with pytest.raises(SymgradError, match="shape"):
        certify(hi, np.zeros(2), balls[:1])


def test_escalate_raises_bits_until_radii_fit():
    x = sp.Symbol("x")
    xs = np.array([1e-30])
    expr = (sp.exp(x) - x) - 1  # expm1(x) - x: cancels to x**2/2 ~ 5e-61 out of terms ~1e-30
    run = escalate(lambda ops: ops.map(expr, {x: xs}), 1e-75, fraction=0.01, start=64)
    assert run.converged and run.bits > 128
    capped = escalate(lambda ops: ops.map(expr, {x: xs}), 1e-300, start=64, cap=128)
    assert not capped.converged and capped.bits == 128


# ---------------------------------------------------------------------------------- docstrings
@pytest.mark.parametrize("name", ["dd", "ddmath", "dderf", "ddops", "walk", "ozaki", "contract", "arb", "certify"])
def test_docstring_examples_run(name):
    import doctest
    import importlib
    mod = importlib.import_module(f"symgrad.precise.{name}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_certify_cancelling_product_needs_the_absolute_allowance():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((1, 30))
    b = rng.standard_normal((30, 1))
    b[-1, 0] = 0.0
    a[0, -1] = 1.0
    b[-1, 0] = -float((a[:, :-1] @ b[:-1]).item()) * (1 + 1e-6)  # the product cancels to ~1e-6 |A||B|
    dd = DD_OPS.einsum("ij,jk->ik", a, b)
    balls = ARB_OPS.at(300).einsum("ij,jk->ik", a, b)
    absab = np.abs(a) @ np.abs(b)
    hi, lo = DD_OPS.to_float64(dd)
    assert certify(hi, lo, balls, abs_allowance=1e-30 * absab).ok
    small = lo + 1e-31 * absab  # 1e-31 of |A||B| but ~1e-25 of the cancelled value
    assert not certify(hi, small, balls).ok
    assert certify(hi, small, balls, abs_allowance=1e-30 * absab).ok
    assert not certify(hi, lo + 1e-28 * absab, balls, abs_allowance=1e-30 * absab).ok


def test_map_scalar_empty_and_constant_shapes():
    x, y = sp.symbols("x y")
    e = sp.erf(x) * sp.tanh(y) + sp.Max(x, y) + sp.log(1 + sp.exp(-x))
    scalar = DD_OPS.map(e, {x: np.array(0.3), y: np.array(-1.0)})
    ref = mp.erf(0.3) * mp.tanh(-1) + 0.3 + mp.log1p(mp.exp(-0.3))
    assert scalar.shape == () and abs(mp.mpf(float(scalar.hi)) + mp.mpf(float(scalar.lo)) - ref) < 1e-30
    assert DD_OPS.map(e, {x: np.zeros((0, 3)), y: np.ones(3)}).shape == (0, 3)
    assert DD_OPS.to_float64(DD_OPS.map(sp.Integer(2), {x: np.ones(3)}))[0].tolist() == [2.0, 2.0, 2.0]
    big = np.linspace(-5, 5, 3 * DD_OPS.kernels.chunk + 7)  # several chunks
    got = DD_OPS.to_float64(DD_OPS.map(sp.tanh(x), {x: big}))[0]
    np.testing.assert_allclose(got, np.tanh(big), rtol=1e-15)


def _cross_entropy(ops, x, w, targets):
    """A small tensor program written once against the table API: logits, stable log-sum-exp,
    target gather: the loss per row (what the tensor interpreter does with either table)."""
    z, m = sp.symbols("z m")
    logits = ops.einsum("td,vd->tv", ops.asarray(x), ops.asarray(w))
    mx = ops.amax(logits, axis=1, keepdims=True)
    e = ops.map(sp.exp(z - m), {z: logits, m: ops.broadcast_to(mx, ops.shape(logits))})
    lse = ops.map(sp.log(z) + m, {z: ops.sum(e, axis=1), m: ops.reshape(mx, (ops.shape(logits)[0],))})
    picked = ops.take(ops.reshape(logits, (-1,)), np.arange(len(targets)) * ops.shape(logits)[1] + targets, 0)
    return ops.map(z - m, {z: lse, m: picked})


def test_a_program_on_both_tables_is_certified_and_a_planted_error_is_not():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((3, 16)), rng.standard_normal((40, 16)) * 3
    targets = np.array([0, 7, 39])
    dd = _cross_entropy(DD_OPS, x, w, targets)
    run = escalate(lambda ops: _cross_entropy(ops, x, w, targets), 1e-33 * np.abs(dd.hi))
    assert run.converged and run.bits >= 128
    # a loss lse - z_t cancels (row 1: 4.7e-5 out of terms ~30): DD's claim is relative to the terms
    terms = np.abs(x @ w.T).max(axis=1)
    cert = certify(*DD_OPS.to_float64(dd), run.balls, abs_allowance=1e-30 * terms)
    assert cert.ok, cert.summary()
    assert not certify(*DD_OPS.to_float64(dd), run.balls).ok  # relative alone: the cancelled row fails
    hi, lo = DD_OPS.to_float64(dd)
    assert not certify(hi, lo + 1e-25 * np.abs(hi), run.balls, abs_allowance=1e-30 * terms).ok


def test_einsum_full_k_block_of_largest_slices_is_exact():
    # every slice at its largest integer on a full K-block: a level's GEMM sums S*K products of
    # tau-bit integers, which must stay below 2**53 (a tau one bit too large fails this)
    rng = np.random.default_rng(6)
    k = 1024
    a = (1 - 2.0 ** -52) * np.sign(rng.standard_normal((3, k)))
    b = np.nextafter(np.ones((k, 2)), 0) * (1 + rng.integers(0, 2, (k, 2)) * 2.0 ** -30)
    a_dd = DD(a, a * 2.0 ** -60)
    _check_product(a_dd, DD_OPS.asarray(b), tol=1e-31)


def test_constants_converted_once_keep_their_double_double_value():
    """dd_constant keeps each sympy constant's value once converted (and a map's walk which
    subexpressions are closed): the second call is the first one's value, bitwise, at any
    shape, and sqrt(2/pi) keeps its low half."""
    c = sp.sqrt(2 / sp.pi)
    first, again = dd_constant(c, (3,)), dd_constant(c, (2, 2))
    assert first.hi[0] == again.hi[0, 0] and first.lo[0] == again.lo[0, 0] != 0.0
    exact = sympy_to_fraction(c)
    assert abs(Fraction(float(first.hi[0])) + Fraction(float(first.lo[0])) - exact) < 2.0**-105
    x = sp.Symbol("x0")
    for _ in range(2):  # the same closed subexpression (2/pi) under two calls
        got = DD_OPS.map(x * c + sp.Rational(1, 3), {x: np.array([[0.0, 1.0]])})
        assert got.lo[0, 0] != 0.0 and got.hi[0, 1] == float(sp.N(c + sp.Rational(1, 3), 30))


def test_from_dd_of_float64_data_gives_the_same_exact_balls():
    """``ARB_OPS.from_dd`` with every lo zero (float64 data) converts hi alone: the same
    exact balls (midpoint and zero radius) as hi + lo converted entry by entry."""
    hi = np.array([1.0 / 3, -2.5e-300, 7.0, 0.0, np.inf, 2.0**-1074])
    for lo in (np.zeros_like(hi), np.broadcast_to(np.float64(-0.0), hi.shape)):
        got = ARB_OPS.from_dd(hi, lo)
        with flint.ctx.workprec(4000):
            ref = [flint.arb(float(h)) + flint.arb(float(l)) for h, l in zip(hi, lo)]
        assert [(g.mid(), g.rad()) == (r.mid(), r.rad()) for g, r in zip(got, ref)] == [True] * 6
    mixed = ARB_OPS.from_dd(np.array([1.0]), np.array([2.0**-60]))
    with flint.ctx.workprec(4000):
        assert mixed[0] == flint.arb(1.0) + flint.arb(2.0**-60)  # both exact: the lo kept
