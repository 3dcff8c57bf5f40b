"""asin, acos, atan, sinh, cosh, asinh in the double-double oracle (symgrad.precise.ddinverse), in ARB
balls, and through a tensor program (float64 / float32 pass, a planted wrong backward caught)."""

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.precise import ddinverse as I
from symgrad.precise.arb import ARB_OPS
from symgrad.precise.dd import DD
from symgrad.precise.ddops import DD_OPS
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward

_MP = {"asin": mpmath.asin, "acos": mpmath.acos, "atan": mpmath.atan, "sinh": mpmath.sinh,
       "cosh": mpmath.cosh, "asinh": mpmath.asinh}


def _dd(hi, seed: int = 0) -> DD:
    """hi plus a random low part (|lo| <= 2**-54 |hi|): inputs that use both halves."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = hi * np.random.default_rng(seed).uniform(-1, 1, hi.size) * 2.0**-54
    s = hi + lo
    return DD(s, lo - (s - hi))


def _worst(fn: str, x: DD) -> float:
    """The largest relative error of ddinverse's fn at x against mpmath at 400 bits."""
    got = getattr(I, fn)(x)
    worst = mpmath.mpf(0)
    with mpmath.workprec(400):
        for i in range(x.shape[0]):
            ex = _MP[fn](mpmath.mpf(float(x.hi[i])) + mpmath.mpf(float(x.lo[i])))
            assert np.isfinite(got.hi[i]), (fn, x.hi[i])
            g = mpmath.mpf(float(got.hi[i])) + mpmath.mpf(float(got.lo[i]))
            worst = max(worst, abs(g - ex) / abs(ex) if ex else abs(g - ex))
    return float(worst)


_NEAR_ONE = [1 - 2.0**-k for k in range(1, 54)] + [0.999, 0.999999, 0.5, 0.7071067811865476]
_TINY = [0.0, 5e-324, 1e-310, 1e-300, 1e-100, 1e-20, 1e-8]
_RNG = np.random.default_rng(7)
POINTS = {
    "atan": [*_TINY, 2.0**-61, 2.0**-59, 0.5, 1.0, 2.0, 10.0, 1e8, 2.0**59, 2.0**61, 1e20, 1e300,
             1.7e308, *_RNG.uniform(-10, 10, 30), *(10**_RNG.uniform(-12, 25, 30)),
             *(-(10**_RNG.uniform(-12, 25, 10)))],
    "asin": [*_TINY, *_NEAR_ONE, *[-v for v in _NEAR_ONE], *_RNG.uniform(-1, 1, 30)],
    "acos": [*_TINY, *_NEAR_ONE, *[-v for v in _NEAR_ONE], *_RNG.uniform(-1, 1, 30)],
    "sinh": [*_TINY, -1e-20, 1e-5, -1e-3, 0.5, 1.0, 20.0, 37.0, 100.0, 699.0, 700.0, 701.0,
             710.0, 710.47, -710.47, *_RNG.uniform(-40, 40, 30)],
    "asinh": [*_TINY, 2.0**-61, 2.0**-59, 1e-3, 0.1, 1.0, 2.0, 1e8, 1e20, 1e150, 2.0**499,
              2.0**501, 1e300, 1.7e308, *_RNG.uniform(-10, 10, 30),
              *(-(10**_RNG.uniform(-12, 25, 20)))],
    "cosh": [*_TINY, -1e-20, 1e-5, -1e-3, 0.5, 1.0, 20.0, 37.0, 100.0, 699.0, 700.0, 701.0,
             710.0, 710.47, -710.47, *_RNG.uniform(-40, 40, 30)],
}


@pytest.mark.parametrize("fn", sorted(POINTS))
def test_dd_matches_mpmath_to_30_digits(fn):
    """0, subnormal, tiny, near +-1 (1 - 2**-k, k = 1..53: asin / acos), large |x| (atan, asinh
    to 1.7e308; sinh / cosh to their overflow at 710.48), random: <= 1e-31 relative everywhere
    (measured: <= 8e-32)."""
    hi = [v for v in POINTS[fn] if not (fn in ("asin", "acos") and abs(v) == 1.0)]
    x = _dd(hi)
    x = DD(x.hi, np.where(np.abs(x.hi) >= 1.0, 0.0, x.lo)) if fn in ("asin", "acos") else x
    assert _worst(fn, x) < 1e-31


@pytest.mark.parametrize("fn", ["asin", "acos"])
def test_dd_inputs_just_below_one_keep_their_digits(fn):
    """x = 1 - d with d below float64's spacing (DD inputs 1 - 1e-20 .. 1 - 1e-30, and -1 + d):
    asin / acos there are pi/2 - sqrt(2d) and sqrt(2d), which the DD keeps to 1e-31."""
    d = np.array([1e-17, 1e-20, 1e-25, 1e-30])
    x = DD(np.concatenate([np.ones(4), -np.ones(4)]), np.concatenate([-d, d]))
    assert _worst(fn, x) < 1e-31


def test_edges_nan_and_shapes():
    one = DD(np.array([1.0, -1.0, 1.0 + 2.0**-52, -2.0, np.nan, np.inf]))
    a, c = I.asin(one), I.acos(one)
    assert a.hi[0] == np.pi / 2 and a.hi[1] == -np.pi / 2 and c.hi[0] == 0.0
    assert c.hi[1] == np.pi and np.isnan(a.hi[2:]).all() and np.isnan(c.hi[2:]).all()
    t = I.atan(DD(np.array([np.inf, -np.inf, np.nan, -0.0])))
    assert t.hi[0] == np.pi / 2 and t.hi[1] == -np.pi / 2 and np.isnan(t.hi[2])
    assert t.hi[3] == 0.0 and np.signbit(t.hi[3])
    s = I.asinh(DD(np.array([np.inf, -np.inf, np.nan, -0.0])))
    assert s.hi[0] == np.inf and s.hi[1] == -np.inf and np.isnan(s.hi[2]) and np.signbit(s.hi[3])
    h = DD(np.array([711.0, -711.0, np.inf, -np.inf, np.nan]))
    assert I.sinh(h).hi.tolist()[:4] == [np.inf, -np.inf, np.inf, -np.inf]
    assert I.cosh(h).hi.tolist()[:4] == [np.inf] * 4 and np.isnan(I.cosh(h).hi[4])
    for fn in (I.asin, I.acos, I.atan, I.sinh, I.cosh, I.asinh):
        assert fn(DD(np.full((2, 3), 0.25))).shape == (2, 3)
        assert fn(DD(np.array(0.25))).shape == ()


def test_dd_map_and_arb_balls_agree():
    """The rows reach both walks: DD_OPS.map and ARB_OPS.map agree to 1e-30 relative, and the
    balls are ~1e-45 tight."""
    x = sp.Symbol("x")
    e = (sp.asin(x / 4) * sp.acos(x / 8) + sp.atan(7 * x) + sp.sinh(x) - sp.cosh(2 * x)
         + sp.asinh(3 * x))
    v = np.array([0.3, -2.5, 1.0, 3.75, -4.0])
    d = DD_OPS.map(e, {x: DD_OPS.asarray(v)})
    ops = ARB_OPS.at(200)
    b = ops.map(e, {x: ops.asarray(v)})
    hi, lo = ops.to_float64(b)
    assert np.all(np.abs((d.hi - hi) + (d.lo - lo)) <= 1e-30 * np.abs(hi))
    assert np.all(ops.radius(b) < 1e-45)


def _model() -> TensorModel:
    W, x = st.param("W", (3, 4)), st.input("x", (4,), sg.Uniform(-0.5, 0.5))
    z = st.einsum("ij,j->i", W, x)
    u = st.map_(sp.atan(st.X[0]) + sp.asin(sp.tanh(st.X[0])) * sp.acos(sp.tanh(st.X[0]) / 2)
                + sp.sinh(st.X[0]) / sp.cosh(st.X[0] / 3) + sp.asinh(2 * st.X[0]), z)
    return TensorModel("inverse_hyperbolic", st.sum_(u))


def _torch_fn(factor: float = 1.0):
    def fn(W, x):
        W = scale_backward(W, factor) if factor != 1.0 else W
        z = W @ x
        t = torch.tanh(z)
        return (torch.atan(z) + torch.asin(t) * torch.acos(t / 2)
                + torch.sinh(z) / torch.cosh(z / 3) + torch.asinh(2 * z)).sum()
    return fn


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensor_model_with_the_five_functions_passes(dtype):
    r = sg.verify(_model(), torch_fn=_torch_fn(), samples=4, dtype=dtype)
    assert r.verdict == "pass", str(r)
    assert set(r.comparisons) == {"numpy", "torch", "torch_fn"}


def test_tensor_model_scaled_backward_is_caught():
    r = sg.verify(_model(), torch_fn=_torch_fn(1 + 1e-9), samples=4)
    assert r.verdict == "fail"
    assert not r.comparisons["torch_fn"].ok
    assert r.comparisons["torch"].ok and r.comparisons["numpy"].ok


def test_scalar_model_with_asinh_runs_every_printer():
    """asinh's row reaches a plain model's whole run too (its tensor program on numpy and
    torch, the double-double oracle and its ARB certification)."""
    w, x = sp.symbols("w x", real=True)
    m = sg.Model("asinh_wx", sp.asinh(w * x) + sp.atan(w) * sp.cosh(x / 4), params=[w],
                 inputs=[x])
    r = sg.verify(m, torch_fn=lambda w, x: torch.asinh(w * x) + torch.atan(w) * torch.cosh(x / 4),
                  samples=16)
    assert r.verdict == "pass", str(r)
    bad = sg.verify(m, torch_fn=lambda w, x: torch.asinh(scale_backward(w, 1 + 1e-9) * x)
                    + torch.atan(w) * torch.cosh(x / 4), samples=16)
    assert bad.verdict == "fail" and not bad.comparisons["torch_fn"].ok
