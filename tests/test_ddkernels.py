"""``precise/ddkernels`` gives ``dd``'s bits (oracle19b): add, mul and div on random operands with
NaN, inf, signed zeros, subnormals, values past the split's overflow limit, and strided views."""

from __future__ import annotations

import numpy as np
import pytest

from symgrad.precise import dd, ddkernels


def _part(rng, n, scale_bits):
    x = rng.standard_normal(n) * 2.0 ** rng.integers(-scale_bits, scale_bits + 1, n)
    pick = rng.random(n)
    x[pick < 0.02] = np.nan
    x[(pick >= 0.02) & (pick < 0.04)] = np.inf
    x[(pick >= 0.04) & (pick < 0.06)] = -np.inf
    x[(pick >= 0.06) & (pick < 0.08)] = -0.0
    x[(pick >= 0.08) & (pick < 0.10)] = 0.0
    x[(pick >= 0.10) & (pick < 0.13)] *= 2.0 ** -1070  # subnormal
    x[(pick >= 0.13) & (pick < 0.16)] = rng.standard_normal(int(((pick >= 0.13) & (pick < 0.16)).sum())) * 2.0 ** 1010  # past 2**995
    return x


def _dd(rng, n, scale_bits):
    h = _part(rng, n, scale_bits)
    lo = np.where(np.isfinite(h), h * rng.standard_normal(n) * 2.0 ** -54, 0.0)
    s = h + lo
    with np.errstate(all="ignore"):
        return dd.DD(s, np.where(np.isfinite(s), lo - (s - h), 0.0))


def _same(a, b):
    nan = np.isnan(a)  # a NaN's sign and payload are no value (IEEE leaves them open)
    assert (nan == np.isnan(b)).all()
    assert np.where(nan, 0.0, a).tobytes() == np.where(nan, 0.0, b).tobytes()


@pytest.mark.parametrize("op", ["add", "mul", "div"])
@pytest.mark.parametrize("scale_bits", [4, 600])
def test_kernels_give_dd_bits(op, scale_bits):
    rng = np.random.default_rng(["add", "mul", "div"].index(op) + scale_bits)
    n = 20000
    a, b = _dd(rng, 2 * n, scale_bits), _dd(rng, n, scale_bits)
    a = dd.DD(a.hi[::2], a.lo[::2])  # strided operands
    with np.errstate(all="ignore"):
        want = {"add": dd.add, "mul": dd.mul, "div": dd.div}[op](a, b)
    hi, lo = getattr(ddkernels, op)(a.hi, a.lo, b.hi, b.lo)
    _same(hi, want.hi)
    _same(lo, want.lo)


@pytest.mark.parametrize("scale", [1.0, 30.0, 800.0])
def test_exp_kernel_gives_ddmath_bits(scale, monkeypatch):
    from symgrad.precise import ddmath
    rng = np.random.default_rng(int(scale))
    n = 20000
    h = rng.uniform(-1, 1, n) * scale
    pick = rng.random(n)
    h[pick < 0.02] = np.nan
    h[(pick >= 0.02) & (pick < 0.03)] = np.inf
    h[(pick >= 0.03) & (pick < 0.04)] = -np.inf
    h[(pick >= 0.04) & (pick < 0.05)] = -0.0
    h[(pick >= 0.05) & (pick < 0.06)] *= 2.0 ** -1070  # subnormal
    c12 = sum(ddmath._ln2_64_parts()[:2])
    h[(pick >= 0.06) & (pick < 0.08)] = (np.round(h[(pick >= 0.06) & (pick < 0.08)] / c12)
                                         + 0.5) * c12  # near the reduction's ties
    lo = np.where(np.isfinite(h), h * rng.standard_normal(n) * 2.0 ** -54, 0.0)
    s = h + lo
    with np.errstate(all="ignore"):
        x = dd.DD(s, np.where(np.isfinite(s), lo - (s - h), 0.0))
        got = ddmath.exp(dd.DD(x.hi[::-1], x.lo[::-1]))  # strided
        monkeypatch.setattr(ddkernels, "exp", lambda *a: None)
        want = ddmath.exp(dd.DD(x.hi[::-1].copy(), x.lo[::-1].copy()))
    _same(got.hi, want.hi)
    _same(got.lo, want.lo)
