"""The tensor oracle at subnormal magnitudes (symgrad.precise.underflow, views.rounded_zone).

Below 2^-969 a double-double's low part is on float64's 2^-1074 grid and its products and
quotients are a few spacings off; the comparer reads an error of exactly 0 as the exact value
itself, so there the oracle must give the exact value rounded to nearest on that grid. Each
value and gradient entry below is checked against mpmath at 1100 digits: meant to fail on the
oracle before the zone's rows were re-evaluated in balls (tanh(w x) came out one spacing high)."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
import torch
from flint import arb, ctx

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import Tolerance
from symgrad.config import VerifyConfig
from symgrad.errors import SymgradError
from symgrad.precise import DD_OPS
from symgrad.precise.certify import CertifyConfig, certify
from symgrad.precise.dd import DD
from symgrad.precise.underflow import in_zone, rounded, zone_rows
from symgrad.tensor.doubt import judge_certificate
from symgrad.tensor.model import TensorModel
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor import views
from symgrad.tensor.views import oracle_view
from symgrad.verdict import PASS
from symgrad.tensor.front import to_program

SPACING = mp.mpf(2) ** -1074
W, XS = 0.9709527680353416, [2.2250738585e-313, 5e-324, 7.4e-323, 1.1e-310, -3.3e-316]

X0, X1 = st.X[0], st.X[1]
OPS = [  # name, map body of (w, x), the same in mpmath: (value, d/dw)
    ("tanh", sp.tanh(X0 * X1), lambda w, x: (mp.tanh(w * x), x / mp.cosh(w * x) ** 2)),
    ("sin", sp.sin(X0 * X1), lambda w, x: (mp.sin(w * x), x * mp.cos(w * x))),
    ("expm1", sp.exp(X0 * X1) - 1, lambda w, x: (mp.expm1(w * x), x * mp.exp(w * x))),
    ("log1p", sp.log(1 + X0 * X1), lambda w, x: (mp.log1p(w * x), x / (1 + w * x))),
    ("x*y", X0 * X1, lambda w, x: (w * x, x)),
    ("x/y", X1 / X0, lambda w, x: (x / w, -x / w ** 2)),
    ("erf", sp.erf(X0 * X1), lambda w, x: (mp.erf(w * x),
                                           2 * x * mp.exp(-(w * x) ** 2) / mp.sqrt(mp.pi))),
]


def _model(body) -> TensorModel:
    return TensorModel("zone", st.map_(body, st.param("w", ()), st.input("x", ())))


def _off_by(h: float, l: float, exact) -> mp.mpf:
    """|hi + lo - exact| in subnormal spacings."""
    return abs(mp.mpf(h) + mp.mpf(l) - exact) / SPACING


@pytest.mark.parametrize("name,body,ref", OPS, ids=[o[0] for o in OPS])
def test_oracle_at_subnormals_is_the_exact_value_rounded_to_nearest(name, body, ref):
    xs = np.array(XS + [0.75])  # the last row lies outside the zone: DD as before
    hi, lo = oracle_view(_model(body), {"w": np.full(len(xs), W), "x": xs}, oracle_ops(50))
    with mp.workprec(3700):
        for i, x in enumerate(xs):
            value, grad = ref(mp.mpf(W), mp.mpf(float(x)))
            for col, exact in enumerate((value, grad)):
                h, l = float(hi[i, col]), float(lo[i, col])
                if in_zone(np.array(h)):
                    assert h == float(mp.mpf(exact)), (name, x, col, h, exact)  # nearest
                    assert _off_by(h, l, exact) <= 0.5, (name, x, col)
                else:
                    assert abs(mp.mpf(h) + mp.mpf(l) - exact) <= 1e-29 * abs(exact) + SPACING


def test_the_dd_alone_is_off_by_a_spacing_there():
    # why the rows are re-evaluated: the DD product's error term is rounded to the 2^-1074 grid
    # and added back (Dekker's TwoProd is error-free only above the zone)
    w, x = sp.symbols("w x")
    dd = DD_OPS.map(w * x, {w: DD_OPS.asarray(np.array([W])), x: DD_OPS.asarray(np.array([XS[0]]))})
    exact = mp.mpf(W) * mp.mpf(XS[0])
    assert float(dd.hi[0]) != float(exact)
    assert _off_by(float(dd.hi[0]), float(dd.lo[0]), exact) > 0.5


def test_zone_rows_and_rounding():
    assert zone_rows([np.array([[1.0, 0.0], [1e-300, 2.0], [np.nan, np.inf]])], 3).tolist() == \
        [False, True, False]
    assert zone_rows([np.array([[1.0]]), np.array([[5e-324]])], 2).tolist() == [True, True]
    assert zone_rows([np.array([[3, 0]])], 1).tolist() == [False]  # integers: no zone
    with ctx.workprec(200):
        third = arb(1) / 3
    wide = arb(3 * 2.0**-1074, 2.0**-1074)  # a ball a spacing wide: not rounded to nearest
    hi, lo, ok = rounded(np.array([third, arb(1) / 3, wide, arb("nan")], dtype=object))
    assert ok.tolist() == [True, False, False, False]  # 53 bits: no DD
    assert hi[0] + lo[0] == hi[0] and abs(mp.mpf(hi[0]) + mp.mpf(lo[0]) - mp.mpf(1) / 3) < 1e-32


def test_verify_at_a_subnormal_passes_on_the_program_pipeline():
    w, x = sp.symbols("w x")
    m = sg.Model("tanh_neuron", sp.tanh(w * x), params=[w], inputs=[x])
    r = sg.verify(to_program(m), at={"w": W, "x": XS[0]},
                  torch_fn=lambda w, x: torch.tanh(w * x))
    assert r.verdict == PASS, str(r)


def _tanh_ball(w: float, x: float):
    with ctx.workprec(128):
        return np.array([(arb(w) * arb(x)).tanh()], dtype=object)


def test_certification_flags_a_dd_value_off_by_a_spacing_in_the_zone():
    # the DD value of tanh(w x) before the zone's rows were re-evaluated: one spacing high. Its
    # claim (1e-20 |v| + 1e-30) certifies it, zero_below of the allowance would too; the
    # comparer's "error exactly 0" needs half a ULP (E of one rounding: its allowance is
    # 4 tiny, as large as the value), so the certificate's judge raises
    ball = _tanh_ball(W, XS[0])
    best = float(mp.tanh(mp.mpf(W) * mp.mpf(XS[0])))
    off = np.nextafter(best, 1.0)
    assert certify(np.array([off]), np.zeros(1), ball, config=CertifyConfig(1e-20, 1e-30)).ok
    with pytest.raises(SymgradError, match=r"entry 0 .*below 2\^-969.*not the nearest float64"):
        judge_certificate(certify(np.array([off]), np.zeros(1), ball), np.array([3 * best]),
                          ["float64"], Tolerance())
    d = judge_certificate(certify(np.array([best]), np.zeros(1), ball), np.array([3 * best]),
                          ["float64", "float32"], Tolerance())
    assert not d.columns.any()
    # a ball too wide to tell the two neighbours apart: in doubt, not ok and not an error
    with ctx.workprec(40):
        wide = np.array([(arb(W) * arb(XS[0])).tanh()], dtype=object)
    d = judge_certificate(certify(np.array([best]), np.zeros(1), wide), np.array([3 * best]),
                          ["float64"], Tolerance())
    assert d.columns.tolist() == [True] and "half a ULP" in d.why


def test_an_intermediate_in_the_zone_of_normal_inputs_and_results():
    # w, x = 1e-160 are normal, log(w x) = -736.8 too; the product 1e-320 in between is not:
    # the DD's product there is a spacing off, 2^-11 of itself, and log(w x) 5e-4 wrong
    m = _model(sp.log(X0 * X1) + X0 * X1 * X1)
    w = np.array([1e-160, 0.5, 3e-161, 2.0])
    x = np.array([1.3e-160, 0.25, 1e-160, 3.0])
    hi, lo = oracle_view(m, {"w": w, "x": x}, oracle_ops(50))
    with mp.workprec(3700):
        for i in range(len(w)):
            W_, X_ = mp.mpf(w[i]), mp.mpf(x[i])
            for col, exact in enumerate((mp.log(W_ * X_) + W_ * X_ ** 2, 1 / W_ + X_ ** 2)):
                got = mp.mpf(float(hi[i, col])) + mp.mpf(float(lo[i, col]))
                assert abs(got - exact) <= 1e-29 * abs(exact), (i, col, got, exact)


def test_a_ball_beyond_float64_rounds_to_inf_not_an_error():
    """1/x at a subnormal x (log's derivative, the op catalogue's bulk log) is beyond float64:
    the ball wholly beyond it is inf, certified (the overflow class); one straddling the
    largest float is not certified. Python's float(Fraction) raised OverflowError here."""
    big = arb(2) ** 1100
    hi, lo, ok = rounded(np.array([big, -big, arb(np.finfo(np.float64).max, 2.0 ** 1000)],
                                  dtype=object))
    assert hi[0] == np.inf and hi[1] == -np.inf and ok[0] and ok[1]
    assert not ok[2]


def test_the_watch_marks_a_product_that_ran_out_of_float64s_exponent_range():
    """w**2 of w = 1e-200 is 0 in double-double (1e200: inf): the watch marks that walk, so
    ``views.rounded_zone`` takes its row from balls; a product with an exact 0 operand, an
    ordinary product and exp(-1000) (a function result: the watch's zone test only) do not."""
    def touched(f) -> bool:
        t = DD_OPS.watching()
        f(t)
        return t.touched
    tiny, big = DD(np.array([1e-200])), DD(np.array([1e200]))
    w = sp.Symbol("w")
    assert touched(lambda t: t.kernels.pow_int(tiny, 2))
    assert touched(lambda t: t.kernels.mul(big, big))
    assert touched(lambda t: t.kernels.div(tiny, big))
    assert touched(lambda t: t.map(w**2, {w: tiny}))  # a map's body: the same kernels
    assert not touched(lambda t: t.kernels.mul(DD(np.array([0.0])), tiny))
    assert not touched(lambda t: t.kernels.mul(DD(np.array([3.0])), DD(np.array([4.0]))))
    assert not touched(lambda t: t.map(sp.exp(w), {w: DD(np.array([-1000.0]))}))


@pytest.mark.parametrize("cfg", [VerifyConfig(oracle_bits=64, oracle_max_bits=128),
                                 VerifyConfig(oracle_bits=64, oracle_max_bits=64)])
def test_an_entry_the_balls_cannot_certify_is_open_not_the_dds_value(cfg):
    """A watched row (x subnormal) whose ball of d/dw = 1/w + x is too wide at the cap (the
    config's oracle bits at 64, its cap 128 or 64: the zone's balls stop at 64 bits, 2^-64
    against a claim of 1e-30, ``views.zone_bits``) is open: NaN, and returned by ``rounded_zone``
    (the run marks it inconclusive), not the DD's value kept as if exact. The value log(-1)
    is NaN in the DD and in the ball: undefined there (domain), not open. At the usual cap
    nothing is open and d/dw is -1 + x to the claim."""
    m = _model(sp.log(X0) + X0 * X1)
    vals = {"w": np.array([-1.0, 2.0]), "x": np.array([5e-324, 0.5])}
    open_ = {}
    hi, lo = oracle_view(m, vals, oracle_ops(50), undecided=open_)
    assert open_ == {} and np.isnan(hi[0, 0])
    assert hi[0, 1] == -1.0 and abs(lo[0, 1]) <= 1e-30  # within the DD's claim of -1 + x
    assert hi[1].tolist() == [np.log(2.0) + 1.0, 1.0]
    assert views.zone_bits(cfg) == (64, 64)
    hi, lo = oracle_view(m, vals, oracle_ops(50), undecided=open_,
                         zone_bits=views.zone_bits(cfg))
    assert {r: c.tolist() for r, c in open_.items()} == {0: [1]}
    assert np.isnan(hi[0]).all() and hi[1].tolist() == [np.log(2.0) + 1.0, 1.0]


def test_balls_far_outside_float64_round_without_forming_their_rationals():
    """A ball re-evaluated in the zone can hold e^(e^20)-sized values (an exp that overflowed
    the double-double, a NaN row recomputed in balls): ``rounded`` used to form its midpoint as
    an exact Fraction (2^(3e9) - gigabytes; `symgrad ops` grew to 16 GB on one catalogue row).
    Far outside float64's range the rounding is decided by comparisons: +-inf certified when
    the whole ball is beyond the range, a signed zero when it is far below half a subnormal,
    nothing certified for a ball that straddles."""
    big = arb(10) ** (arb(10) ** 9)
    straddles = arb("0 +/- 1e400")
    hi, lo, ok = rounded(np.array([big, -big, 1 / big, -1 / big, straddles, arb(3)], dtype=object))
    assert hi[:2].tolist() == [np.inf, -np.inf] and ok[:2].all()
    assert hi[2] == 0 and not np.signbit(hi[2]) and hi[3] == 0 and np.signbit(hi[3])
    assert ok[2:4].all() and not ok[4] and hi[5] == 3.0 and ok[5]
    assert (lo == 0).all()
