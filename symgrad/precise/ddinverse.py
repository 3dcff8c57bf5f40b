"""asin, acos, atan, sinh, cosh and asinh on double-double arrays (the double-double oracle's rows for
the inverse trigonometric and the hyperbolic functions).

Function   method                                                             measured (tests)
atan       |x| < 2**-60: x (x**3/3 < 1e-37 x); |x| > 2**60: sign pi/2 - 1/x;   <= 1e-31 relative
           else one exact correction of y0 = arctan(x.hi) (float64):
           atan x = y0 + atan(d), d = (x cos y0 - sin y0) / (cos y0 + x sin y0)
           (tan of the difference), |d| <~ 2e-16, atan d = d - d**3/3 (d**5/5 <
           1e-79); sin y0, cos y0 by ``ddtrig`` (~3e-32 relative)
asin       atan(x / sqrt((1 - x)(1 + x))): 1 - x and 1 + x are exact-ish in DD,  <= 1e-31 relative
           so no cancellation near +-1; +-1: +-pi/2; |x| > 1: NaN
acos       2 atan(sqrt((1 - x) / (1 + x))): no cancellation at either end     <= 1e-31 relative
           (acos(1 - e) ~ sqrt(2e) keeps its digits); -1: pi; |x| > 1: NaN
sinh       a = |x|, t = expm1(a): (t + t / (1 + t)) / 2 (all terms positive);   <= 1e-31 relative
           a > 700: e**(a/2) * (e**(a/2) / 2) (e**-a below 1e-300 relative;
           no overflow before sinh's own, at ~710.48); the sign of x
cosh       (e + 1/e) / 2, e = exp(|x|); |x| > 700 as sinh                      <= 1e-31 relative
asinh      a = |x|: log1p(a + a**2 / (1 + sqrt(1 + a**2))) (no cancellation);  <= 1e-31 relative
           a < 2**-60: x; a > 2**500: log a + ln 2 (1/(4a**2) < 1e-300); the sign

(u = 2**-53; "exact-ish": the DD addition's error is ~u**2 of its result.) NaN gives NaN.

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> abs(float(atan(DD(np.array([1.0]))).hi[0]) - 0.7853981633974483) < 1e-16
    True
"""

from __future__ import annotations

import numpy as np

from .dd import DD, add, add_f64, div, ldexp, mul, where
from .ddmath import const, exp, expm1, log, log1p
from .ddmath import sqrt as dd_sqrt
from .ddtrig import sin_cos

_ATAN_TINY = 2.0**-60  # atan x = x (1 - x**2/3 + ...): x**2/3 < 2.3e-37
_ATAN_HUGE = 2.0**60  # atan x = pi/2 - 1/x + 1/(3 x**3): 1/(3x**3) < 2.3e-55
_HYP_BIG = 700.0  # beyond: e**-|x| is below 1e-304 of e**|x|: one exponential


def _nan_free(x: DD) -> tuple[DD, np.ndarray]:
    """x with NaN entries replaced by 0 (so no NaN reaches the reductions), and where they were."""
    nan = np.isnan(x.hi)
    return DD(np.where(nan, 0.0, x.hi), np.where(nan, 0.0, x.lo)), nan


def _restore_nan(v: DD, nan: np.ndarray) -> DD:
    return DD(np.where(nan, np.nan, v.hi), np.where(nan, 0.0, v.lo))


def _half_pi(shape: tuple) -> DD:
    return ldexp(const("pi", shape), np.array(-1))


def _atan_middle(x: DD) -> DD:
    """atan x for 2**-60 <= |x| <= 2**60: y0 = arctan(x.hi), then the exact correction."""
    y0 = np.arctan(x.hi)
    s, c = sin_cos(DD(y0))
    num = add(mul(x, c), -s)  # x cos y0 - sin y0: tan(atan x - y0) (cos y0 + x sin y0)
    den = add(c, mul(x, s))
    d = div(num, den)
    d = add_f64(d, -(d.hi ** 3) / 3.0)  # atan d = d - d**3/3 + d**5/5: the last < 1e-79
    return add(DD(y0), d)


def atan(x: DD) -> DD:
    """atan x elementwise (module docstring: method and accuracy); +-inf give +-pi/2."""
    v, nan = _nan_free(x)
    a = np.abs(v.hi)
    tiny, huge = a < _ATAN_TINY, a > _ATAN_HUGE
    mid = ~tiny & ~huge
    out = v.copy()  # tiny: atan x = x
    if mid.any():
        m = _atan_middle(v[mid])
        out.hi[mid], out.lo[mid] = m.hi, m.lo
    if huge.any():
        h = v[huge]
        with np.errstate(divide="ignore"):
            inv = div(DD(np.ones(h.shape)), h)  # inf: 1/x = 0
        sgn = np.sign(h.hi)
        hp = _half_pi(h.shape)
        r = add(DD(sgn * hp.hi, sgn * hp.lo), -inv)
        out.hi[huge], out.lo[huge] = r.hi, r.lo
    return _restore_nan(out, nan)


def _one_minus_x_one_plus_x(x: DD) -> tuple[DD, DD]:
    """(1 - x, 1 + x), each to ~u**2 of itself (Sterbenz: x.hi near +-1 cancels exactly)."""
    ones = np.ones(x.shape)
    return add_f64(-x, ones), add_f64(x, ones)


def asin(x: DD) -> DD:
    """asin x = atan(x / sqrt((1 - x)(1 + x))) for |x| <= 1 (NaN beyond; +-1: +-pi/2)."""
    v, nan = _nan_free(x)
    with np.errstate(invalid="ignore"):  # +-inf: NaN, as for any |x| > 1
        m, p = _one_minus_x_one_plus_x(v)
    edge = ((m.hi == 0) & (m.lo == 0)) | ((p.hi == 0) & (p.lo == 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        root = dd_sqrt(mul(m, p))  # NaN for |x| > 1
        safe = where(edge, DD(np.ones(x.shape)), root)
        t = div(v, safe)
    y = atan(DD(np.where(edge, 0.0, t.hi), np.where(edge, 0.0, t.lo)))
    hp = _half_pi(x.shape)
    sgn = np.sign(v.hi)
    y = where(edge, DD(sgn * hp.hi, sgn * hp.lo), y)
    return _restore_nan(DD(np.where(np.isnan(t.hi) & ~edge, np.nan, y.hi), y.lo), nan)


def acos(x: DD) -> DD:
    """acos x = 2 atan(sqrt((1 - x) / (1 + x))) for |x| <= 1 (NaN beyond; -1: pi)."""
    v, nan = _nan_free(x)
    with np.errstate(invalid="ignore"):
        m, p = _one_minus_x_one_plus_x(v)
    minus_one = (p.hi == 0) & (p.lo == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = div(m, where(minus_one, DD(np.ones(x.shape)), p))
        r = dd_sqrt(q)  # NaN for |x| > 1
    bad = np.isnan(r.hi)
    y = ldexp(atan(DD(np.where(bad, 0.0, r.hi), np.where(bad, 0.0, r.lo))), np.array(1))
    y = where(minus_one, const("pi", x.shape), y)
    return _restore_nan(DD(np.where(bad & ~minus_one, np.nan, y.hi), y.lo), nan)


def _exp_half_squared(a: DD) -> DD:
    """e**a / 2 for large a, as e**(a/2) * (e**(a/2) / 2): finite up to e**a / 2's overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = exp(ldexp(a, np.array(-1)))
        r = mul(e, ldexp(e, np.array(-1)))
    fin = np.isfinite(r.hi)
    return DD(np.where(fin, r.hi, np.inf), np.where(fin, r.lo, 0.0))


def _by_size(x: DD, small, big) -> DD:
    """small(|x|) for |x| <= 700, big(|x|) beyond (NaN-free |x|), scattered back."""
    a = abs(x)
    far = a.hi > _HYP_BIG
    out = DD(np.zeros(x.shape), np.zeros(x.shape))
    for mask, fn in ((~far, small), (far, big)):
        if mask.any():
            r = fn(a[mask])
            out.hi[mask], out.lo[mask] = r.hi, r.lo
    return out


def _sinh_small(a: DD) -> DD:
    t = expm1(a)
    return ldexp(add(t, div(t, add_f64(t, np.ones(a.shape)))), np.array(-1))


def _cosh_small(a: DD) -> DD:
    e = exp(a)
    return ldexp(add(e, div(DD(np.ones(a.shape)), e)), np.array(-1))


def sinh(x: DD) -> DD:
    """sinh x elementwise (module docstring); +-inf give +-inf."""
    v, nan = _nan_free(x)
    y = _by_size(v, _sinh_small, _exp_half_squared)
    y = where(v.hi < 0, -y, y)
    return _restore_nan(y, nan)


def cosh(x: DD) -> DD:
    """cosh x elementwise (module docstring); +-inf give inf."""
    v, nan = _nan_free(x)
    return _restore_nan(_by_size(v, _cosh_small, _exp_half_squared), nan)


_ASINH_HUGE = 2.0**500  # beyond: asinh a = log(2a) + 1/(4a**2) - ..., the rest < 1e-300


def asinh(x: DD) -> DD:
    """asinh x elementwise (module docstring); +-inf give +-inf."""
    v, nan = _nan_free(x)
    a = abs(v)
    tiny, huge = a.hi < _ATAN_TINY, a.hi > _ASINH_HUGE
    mid = ~tiny & ~huge
    out = a.copy()  # tiny: asinh a = a (a**2/6 < 1e-37)
    if mid.any():
        m = a[mid]
        ones = np.ones(m.shape)
        a2 = mul(m, m)
        r = log1p(add(m, div(a2, add_f64(dd_sqrt(add_f64(a2, ones)), ones))))
        out.hi[mid], out.lo[mid] = r.hi, r.lo
    if huge.any():
        with np.errstate(divide="ignore", invalid="ignore"):  # inf: inf
            r = add(log(a[huge]), const("ln2", (int(huge.sum()),)))
        out.hi[huge], out.lo[huge] = r.hi, r.lo
    return _restore_nan(where(v.hi < 0, -out, out), nan)
