"""sin, cos, tan in the double-double oracle (symgrad.precise.ddtrig) and through a tensor program."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.precise.arb import ARB_OPS
from symgrad.precise.dd import DD
from symgrad.precise.ddmath import mpf_to_fraction
from symgrad.precise.ddops import DD_OPS
from symgrad.precise import ddtrig as T
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward

_MP = {"sin": mpmath.sin, "cos": mpmath.cos, "tan": mpmath.tan}


def _dd_near(values) -> DD:
    """The DD nearest each mpmath value."""
    his, los = [], []
    for v in values:
        f = mpf_to_fraction(v)
        his.append(float(f))
        los.append(float(f - Fraction(float(f))))
    return DD(np.array(his), np.array(los))


def _errors(fn: str, x: DD) -> tuple[list, list]:
    """(|error|, |exact|) of ddtrig's fn at x against mpmath at 400 bits (~120 digits)."""
    got = getattr(T, fn)(x)
    errs, exact = [], []
    with mpmath.workprec(400):
        for i in range(x.shape[0]):
            xe = mpmath.mpf(float(x.hi[i])) + mpmath.mpf(float(x.lo[i]))
            ex = _MP[fn](xe)
            g = mpmath.mpf(float(got.hi[i])) + mpmath.mpf(float(got.lo[i]))
            errs.append(abs(g - ex))
            exact.append(abs(ex))
    return errs, exact


def _spread() -> DD:
    rng = np.random.default_rng(0)
    hi = np.array([0.0, 5e-324, 1e-300, 1e-20, 1e-8, 0.5, np.pi / 4, np.pi / 2, np.pi,
                   3 * np.pi / 2, 2 * np.pi, -1.0, -np.pi, 355.0, 710.0, 1e3, -1e3, 1e4, -1e4,
                   12345.678, 1e5, 103993.0, 1e6, 3e6, -5e7, 1e20, 1e300,
                   *rng.uniform(-1e4, 1e4, 40), *rng.uniform(-10, 10, 40)])
    lo = hi * rng.uniform(-1, 1, hi.size) * 2.0**-54
    s = hi + lo
    return DD(s, lo - (s - hi))


@pytest.mark.parametrize("fn", ["sin", "cos", "tan"])
def test_dd_trig_matches_mpmath_to_30_digits(fn):
    """0, tiny, subnormal, near multiples of pi/2 (as float64), negative, 1e3..1e6, and the
    mpmath fallback beyond 2**20 pi/2 (3e6, 1e20, 1e300): <= 1e-31 relative everywhere."""
    errs, exact = _errors(fn, _spread())
    rel = [e / x if x else e for e, x in zip(errs, exact)]
    assert max(rel) < 1e-31, (fn, mpmath.nstr(max(rel), 3))


@pytest.mark.parametrize("fn", ["sin", "cos"])
def test_dd_inputs_at_a_zero_keep_their_absolute_digits(fn):
    """The DD nearest k pi/2 (|value| ~ 1e-33..1e-28, x up to 1.6e6): absolute error <= 1e-47,
    and the float64 nearest k pi/2 (|value| >= 6e-17): relative <= 1e-31."""
    ks = [1, 2, 3, 4, 7, 100, 1001, 6366, -6366, -3, 2**19 + 1, 2**20 - 5]
    zeros = [k for k in ks if (k % 2 == 0) == (fn == "sin")]
    with mpmath.workprec(400):
        x = _dd_near([k * mpmath.pi / 2 for k in zeros])
    errs, exact = _errors(fn, x)
    assert max(exact) < 1e-27 and max(errs) < 1e-47, [mpmath.nstr(e, 3) for e in errs]
    x64 = DD(x.hi)
    errs, exact = _errors(fn, x64)
    assert min(exact) > 1e-17
    assert max(e / v for e, v in zip(errs, exact)) < 1e-31


def test_non_finite_and_shapes():
    s, c = T.sin_cos(DD(np.array([np.inf, -np.inf, np.nan, 0.0])))
    assert np.isnan(s.hi[:3]).all() and np.isnan(c.hi[:3]).all()
    assert s.hi[3] == 0.0 and c.hi[3] == 1.0
    m = T.sin(DD(np.full((2, 3), 2e7)))  # the fallback path keeps the shape
    assert m.shape == (2, 3) and abs(m.hi[1, 2] - np.sin(2e7)) < 1e-16
    assert T.cos(DD(np.array(1e30))).shape == ()


def test_dd_map_and_arb_balls_agree():
    """The rows reach both walks: DD_OPS.map and ARB_OPS.map of sin/cos/tan of a sum agree
    to 1e-30 relative, and the balls are ~1e-45 tight."""
    x = sp.Symbol("x")
    e = sp.sin(x) * sp.cos(2 * x) + sp.tan(x)  # (x / 3 would round the argument: 1e-32 of x)
    v = np.array([0.3, -2.5, 1e4, 7.0])
    d = DD_OPS.map(e, {x: DD_OPS.asarray(v)})
    ops = ARB_OPS.at(200)
    b = ops.map(e, {x: ops.asarray(v)})
    hi, lo = ops.to_float64(b)
    assert np.all(np.abs((d.hi - hi) + (d.lo - lo)) <= 1e-30 * np.abs(hi))
    assert np.all(ops.radius(b) < 1e-45)


def _sin_model():
    W, x = st.param("W", (3, 4)), st.input("x", (4,))
    return TensorModel("sinWx", st.sum_(st.map_(sp.sin(st.X[0]), st.einsum("ij,j->i", W, x))))


def _torch_fn(factor: float = 1.0):
    def fn(W, x):
        W = scale_backward(W, factor) if factor != 1.0 else W
        return torch.sin(W @ x).sum()
    return fn


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sum_sin_Wx_passes_with_torch(dtype):
    m = _sin_model()
    r = sg.verify(m, torch_fn=_torch_fn(), samples=4, dtype=dtype)
    assert r.verdict == "pass", str(r)
    assert set(r.comparisons) == {"numpy", "torch", "torch_fn"}


def test_sum_sin_Wx_scaled_backward_is_caught():
    r = sg.verify(_sin_model(), torch_fn=_torch_fn(1 + 1e-9), samples=4)
    assert r.verdict == "fail"
    assert not r.comparisons["torch_fn"].ok
    assert r.comparisons["torch"].ok and r.comparisons["numpy"].ok


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_angles_pass_and_a_scaled_backward_is_caught(dtype):
    """RoPE-like angles: sum(cos(p * w)) with p up to 1e4 (argument reduction through the
    verifier); correct torch passes, a (1 + 1e-3) scaled backward is caught even in float32."""
    w = st.param("w", (6,), sg.Uniform(0.5, 1.0))
    p = st.input("p", (6,), sg.Uniform(-1e4, 1e4))
    m = TensorModel("cos_pw", st.sum_(st.map_(sp.cos(st.X[0] * st.X[1]), w, p)))

    def fn(factor):
        return lambda w, p: torch.cos(scale_backward(w, factor) * p).sum()
    r = sg.verify(m, torch_fn=fn(1.0), samples=4, dtype=dtype)
    assert r.verdict == "pass", str(r)
    bad = sg.verify(m, torch_fn=fn(1 + 1e-3), samples=4, dtype=dtype)
    assert bad.verdict == "fail" and not bad.comparisons["torch_fn"].ok
