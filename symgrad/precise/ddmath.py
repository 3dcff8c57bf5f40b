"""Elementary functions on double-double arrays, each to ~1e-31 relative (u = 2**-53, u**2 ~ 1.2e-32).

Function     method                                                         measured error (tests)
exp, expm1   x = (64q + j) ln2/64 + r (three-part constant, k*C1 exact), a    <= 1e-31 relative
             DD table of 2**(j/64) (and of 2**(j/64) - 1 for expm1), Taylor of
             expm1(r), |r| <= 0.0054: terms 1..6 in DD, 7..11 in float64
log          |x-1| >= 1/8: x = m 2**e, e ln2 + one Newton step on exp <= 2e-31 relative
             near 1: log1p
log1p        |d| < 1/8: 2 atanh(s), s = d/(2+d), odd series; else log(1+d) <= 2e-31 relative
sqrt         Karp's step: y + (x - y*y)/(2y), y*y by TwoProd                 <= 1e-31 relative
pow          integer: binary powering; p/2: sqrt then integer power;        ~ (log2 n) u**2;
             other rationals / floats: exp(e*log x)                          exp-log: |e log x| u**2
tanh         |x| <= 1: t/(t+2), t = expm1(2|x|); else 1 - 2/(exp(2|x|)+1)   <= 1e-31 relative;
             (1 - tanh near saturation keeps ~53 bits in lo: exact cancellation of the DD sum)
sigmoid      1/(1+exp(-x)) (both signs, no cancellation)                     <= 1e-31 relative
sech2        4/(e^x + e^-x)^2 = 1 - tanh^2 without cancellation              <= 1e-31 relative
(erf and erfc: symgrad.precise.dderf)

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> y = exp(DD(np.array([1.0])))
    >>> abs(float(y.hi[0]) - 2.718281828459045) < 1e-15
    True
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial

import mpmath
import numpy as np

from ..parallel import serial
from . import ddkernels as K
from .dd import (DD, add_const_raw, add_f64, add_raw, ldexp, mul_raw, quick_two_sum, sqr,
                 two_prod, where)
from .ddkernels import dd_add as add  # dd's add, mul, div: the same bits, one pass per entry
from .ddkernels import dd_div as div
from .ddkernels import dd_mul as mul

_MP_PREC = 256  # bits for constants: far beyond DD's 106


def mpf_to_fraction(v) -> Fraction:
    """The exact value of a finite mpmath number."""
    sign, man, exp, _ = mpmath.mpf(v)._mpf_
    f = Fraction(int(man)) * (Fraction(2) ** int(exp))
    return -f if sign else f


@lru_cache(maxsize=None)
@serial  # mpmath's precision is the process's
def _const(name: str) -> tuple[float, float]:
    with mpmath.workprec(_MP_PREC):
        v = {"ln2": mpmath.ln2, "pi": mpmath.pi, "e": mpmath.e, "2/sqrt(pi)": 2 / mpmath.sqrt(mpmath.pi),
             "1/sqrt(pi)": 1 / mpmath.sqrt(mpmath.pi)}[name]
        f = mpf_to_fraction(+v)
    hi = float(f)
    return hi, float(f - Fraction(hi))


def const(name: str, shape: tuple = ()) -> DD:
    hi, lo = _const(name)
    return DD(np.full(shape, hi), np.full(shape, lo))


def split_constant(f: Fraction, n: int, bits: int) -> tuple[float, ...]:
    """An exact constant as n parts of ``bits`` bits each plus a float64 remainder (Cody-Waite):
    k * part is exact for |k| < 2**(53 - bits).

    >>> parts = split_constant(Fraction(1, 3), 2, 20)
    >>> len(parts), float(sum(map(Fraction, parts))) == 1 / 3
    (3, True)
    """
    parts = []
    for _ in range(n):
        m, e = np.frexp(float(f))
        p = float(np.ldexp(np.round(np.ldexp(m, bits)), int(e) - bits))
        parts.append(p)
        f -= Fraction(p)
    parts.append(float(f))
    return tuple(parts)


@lru_cache(maxsize=None)
@serial  # mpmath's precision is the process's
def _ln2_parts() -> tuple[float, float, float]:
    """ln2 = L1 + L2 + L3 with L1, L2 of 42 bits, so k*L1, k*L2 are exact for |k| < 2**11."""
    with mpmath.workprec(_MP_PREC):
        f = mpf_to_fraction(+mpmath.ln2)
    return split_constant(f, 2, 42)


@lru_cache(maxsize=None)
def _fraction_dd(num: int, den: int) -> tuple[float, float]:
    f = Fraction(num, den)
    hi = float(f)
    return hi, float(f - Fraction(hi))


def frac(num: int, den: int = 1) -> DD:
    hi, lo = _fraction_dd(num, den)
    return DD(np.array(hi), np.array(lo))


# ----------------------------------------------------------------------------- exp / expm1
_EXP_HI = 709.782712893384  # just above log(max float64)
_EXP_LO = -745.2  # below: exp underflows to 0
_TABLE = 64  # exp(x) = 2**q * 2**(j/64) * exp(r), |r| <= ln2/128
_DD_TERMS = 6  # Taylor terms 1..6 of expm1(r) in DD; 7..11 in float64 (each < 1e-16 of r: 1e-33 abs.)
_F64_TERMS = 11


@lru_cache(maxsize=None)
@serial  # mpmath's precision is the process's
def _exp_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2**(j/64) and 2**(j/64) - 1 as DD for j = -32..32 (index j + 32)."""
    th, tl, eh, el = [], [], [], []
    with mpmath.workprec(_MP_PREC):
        for j in range(-_TABLE // 2, _TABLE // 2 + 1):
            for v, hs, ls in ((mpmath.power(2, mpmath.mpf(j) / _TABLE), th, tl),
                              (mpmath.power(2, mpmath.mpf(j) / _TABLE) - 1, eh, el)):
                f = mpf_to_fraction(v)
                hi = float(f)
                hs.append(hi)
                ls.append(float(f - Fraction(hi)))
    return np.array(th), np.array(tl), np.array(eh), np.array(el)


@lru_cache(maxsize=None)
@serial  # mpmath's precision is the process's
def _ln2_64_parts() -> tuple[float, float, float]:
    """ln2/64 = C1 + C2 + C3, C1 and C2 of 36 bits: k*C1, k*C2 exact for |k| < 2**17."""
    with mpmath.workprec(_MP_PREC):
        f = mpf_to_fraction(mpmath.ln2 / _TABLE)
    return split_constant(f, 2, 36)


@lru_cache(maxsize=None)
def _inv_factorials(n: int) -> tuple[tuple[float, float], ...]:
    return tuple(_fraction_dd(1, factorial(k)) for k in range(1, n + 1))


def _horner(coeffs, m: int, z: DD) -> DD:
    """sum_k coeffs[k] z**k (coeffs: DD pairs (hi, lo)) by Horner, z finite: the terms from m
    on in float64 on z.hi (the small tail), then c_{m-1} + z tail and the first m - 1 in DD."""
    tail = np.zeros(z.shape)
    for hi, _ in reversed(coeffs[m:]):
        tail = tail * z.hi + hi
    hi, lo = coeffs[m - 1]
    t = add_const_raw(DD(tail * z.hi), hi, lo)
    for hi, lo in reversed(coeffs[:m - 1]):
        t = add_const_raw(mul_raw(t, z), hi, lo)
    return t


@lru_cache(maxsize=None)
def _coeffs() -> np.ndarray:
    return np.array(_inv_factorials(_F64_TERMS))


def _expm1_small(r: DD) -> DD:
    """expm1(r) for |r| <= ln2/128 (~1e-32 relative): Horner, DD terms 1..6, float64 tail."""
    return mul_raw(_horner(_inv_factorials(_F64_TERMS), _DD_TERMS, r), r)


def _exp_parts(x: DD):
    """x = (64 q + j) ln2/64 + r: returns (q, j index, expm1(r), overflow, underflow)."""
    over = x.hi > _EXP_HI
    under = x.hi < _EXP_LO
    xh = np.clip(np.nan_to_num(x.hi, nan=0.0), _EXP_LO, _EXP_HI)
    xl = np.where(x.hi == xh, x.lo, 0.0)
    C1, C2, C3 = _ln2_64_parts()
    k = np.round(xh / (C1 + C2))
    # x - k C1 is exact-ish (Sterbenz range), then the small corrections
    r = add_raw(DD(xh - k * C1, np.zeros(x.shape)), DD(xl, np.zeros(x.shape)))
    r = add_raw(r, DD(-(k * C2), -(k * C3)))
    ki = k.astype(np.int64)
    q = (ki + _TABLE // 2) // _TABLE
    j = ki - _TABLE * q + _TABLE // 2  # table index 0..64 (j - 32 in -32..31)
    return q, j, _expm1_small(r), over, under


def _patch(res: DD, x: DD, over: np.ndarray, under: np.ndarray, over_v: float, under_v: float) -> DD:
    nan = np.isnan(x.hi)
    if over.any() or under.any() or nan.any():
        hi = np.where(over, over_v, np.where(under, under_v, res.hi))
        hi = np.where(nan, np.nan, hi)
        lo = np.where(over | under | nan, 0.0, res.lo)
        return DD(hi, lo)
    return res


def exp(x: DD) -> DD:
    th, tl, _, _ = _exp_table()
    got = K.exp(x, _ln2_64_parts(), _coeffs(), th, tl)  # one pass per entry, these bits
    if got is not None:
        return got
    q, j, p, over, under = _exp_parts(x)
    th, tl, _, _ = _exp_table()
    t = DD(th[j], tl[j])
    res = ldexp(add_raw(t, mul_raw(t, p)), q)
    return _patch(res, x, over, under, np.inf, 0.0)


def expm1(x: DD) -> DD:
    q, j, p, over, under = _exp_parts(x)
    th, tl, eh, el = _exp_table()
    t = DD(th[j], tl[j])
    tp = mul_raw(t, p)
    small = add_raw(DD(eh[j], el[j]), tp)  # q == 0: (2**(j/64) - 1) + 2**(j/64) expm1(r), no cancellation
    big = add_f64(ldexp(add_raw(t, tp), q), -np.ones(x.shape))
    res = where(q == 0, small, big)
    tiny = np.abs(x.hi) < 2.0**-900  # keep full precision where the reduction's products underflow
    if tiny.any():
        res = where(tiny, x, res)
    return _patch(res, x, over, under, np.inf, -1.0)


# ----------------------------------------------------------------------------- log / log1p
_LOG1P_TERMS = 15  # |s| < 0.067: s**30/31 < 1e-35
_NEAR_ONE = 1.0 / 8


def _atanh_series(s: DD) -> DD:
    """2*atanh(s) = 2(s + s^3/3 + ...) for |s| < 0.067."""
    z = sqr(s)
    hi, lo = _fraction_dd(1, 2 * _LOG1P_TERMS - 1)
    t = DD(np.full(s.shape, hi), np.full(s.shape, lo))
    for n in range(_LOG1P_TERMS - 2, -1, -1):
        hi, lo = _fraction_dd(1, 2 * n + 1)
        t = add_const_raw(mul_raw(t, z), hi, lo)
    return ldexp(mul(t, s), np.array(1))


def log1p(d: DD) -> DD:
    """log(1 + d) without forming 1 + d where d is small."""
    small = np.abs(d.hi) < _NEAR_ONE

    def series(ds: DD) -> DD:
        return _atanh_series(div(ds, add_f64(ds, np.full(ds.shape, 2.0))))

    def direct(db: DD) -> DD:
        return _log_newton(add_f64(db, np.ones(db.shape)))

    return on_masks(d, ((small, series), (~small, direct)))


def on_masks(x: DD, pieces) -> DD:
    """Evaluate each fn only on x[mask] (masks disjoint, covering) and scatter the results back."""
    hi = np.full(x.shape, np.nan)
    lo = np.zeros(x.shape)
    for mask, fn in pieces:
        if mask.all():
            return fn(x)
        if mask.any():
            v = fn(x[mask])
            hi[mask] = v.hi
            lo[mask] = v.lo
    return DD(hi, lo)


def _log_newton(x: DD) -> DD:
    """log x for x >= 0: x = m 2**e (m in [sqrt(1/2), sqrt(2)), exact scaling), log x = e ln2 + log m,
    log m by one Newton step on exp from log(m.hi) (abs. error ~u**2, |log m| <= 0.35)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y_plain = np.log(x.hi)
    fin = np.isfinite(y_plain)
    xh = np.where(fin, x.hi, 1.0)
    m, e = np.frexp(xh)
    low = m < 0.7071067811865476
    e = np.where(low, e - 1, e)
    scaled = ldexp(DD(xh, np.where(fin, x.lo, 0.0)), -e)
    y0 = np.log(scaled.hi)
    t = add_f64(mul(scaled, exp(DD(-y0))), -np.ones(x.shape))
    logm = add_f64(t, y0)
    L1, L2, L3 = _ln2_parts()
    ef = e.astype(np.float64)
    eln2 = add_f64(add_f64(DD(ef * L1), ef * L2), ef * L3)
    y = add(eln2, logm)
    return DD(np.where(fin, y.hi, y_plain), np.where(fin, y.lo, 0.0))


def log(x: DD) -> DD:
    near = np.abs(x.hi - 1.0) < _NEAR_ONE
    return on_masks(x, ((near, lambda xs: log1p(add_f64(xs, -np.ones(xs.shape)))), (~near, _log_newton)))


# ----------------------------------------------------------------------------- sqrt / pow
def sqrt(x: DD) -> DD:
    """Karp's step on x = m 4**k (exact scaling keeps TwoProd's error term out of underflow)."""
    with np.errstate(invalid="ignore"):
        y_plain = np.sqrt(x.hi)
    ok = np.isfinite(y_plain) & (y_plain > 0)
    _, e = np.frexp(np.where(ok, x.hi, 1.0))
    k = e // 2
    xs = ldexp(DD(np.where(ok, x.hi, 1.0), np.where(ok, x.lo, 0.0)), -2 * k)
    ys = np.sqrt(xs.hi)
    p, err = two_prod(ys, ys)
    r = add(xs, DD(-p, -err))
    corr = r.hi / (2.0 * ys)
    hi, lo = quick_two_sum(ys, corr)
    hi, lo = np.ldexp(hi, k), np.ldexp(lo, k)
    return DD(np.where(ok, hi, y_plain), np.where(ok, lo, 0.0))


def ipow(x: DD, n: int) -> DD:
    """x**n for an integer n: binary powering of x, or of 1/x for n < 0 (so intermediates move
    monotonically towards the result and do not underflow where the result does not)."""
    if n == 0:
        return DD(np.ones(x.shape))
    m = abs(n)
    base = div(DD(np.ones(x.shape)), x) if n < 0 else x
    result = None
    while m:
        if m & 1:
            result = base if result is None else mul(result, base)
        m >>= 1
        if m:
            base = sqr(base)
    return result


def rpow(x: DD, e: DD) -> DD:
    """x**e for a non-integer exponent (real semantics: NaN for x < 0, except where e is
    exactly an integer: ``w**p`` at p = 2, 3 is an integer power, as torch and the scalar
    oracle compute it; 0**0 = 1, 0**e undefined for e < 0, as on the scalar oracle)."""
    with np.errstate(all="ignore"):
        pos = x.hi > 0
        e_hi = np.broadcast_to(e.hi, x.shape)
        integral = (np.broadcast_to(e.lo, x.shape) == 0) & np.isfinite(e_hi) & \
            (np.floor(e_hi) == e_hi)
        neg = (x.hi < 0) & integral
        xs = where(pos, x, where(neg, -x, DD(np.ones(x.shape))))
        v = exp(mul(e, log(xs)))
        odd = neg & (np.mod(e_hi, 2) == 1)
        e_sign = np.sign(e_hi)
        zero_v = np.where(e_sign > 0, 0.0, np.where(e_sign < 0, np.nan, 1.0))  # 1/0: undefined
        hi = np.where(pos | neg, np.where(odd, -v.hi, v.hi),
                      np.where(x.hi == 0, zero_v, np.nan))
        lo = np.where(pos | neg, np.where(odd, -v.lo, v.lo), 0.0)
    return DD(hi, lo)


def pow_rational(x: DD, p: int, q: int) -> DD:
    """x**(p/q) for a rational exponent in lowest terms."""
    if q == 1:
        return ipow(x, p)
    if q == 2:
        return ipow(sqrt(x), p)
    return rpow(x, frac(p, q))


# ----------------------------------------------------------------------------- tanh / sigmoid
def tanh(x: DD) -> DD:
    a = abs(DD(np.where(np.isnan(x.hi), 0.0, x.hi), np.where(np.isnan(x.hi), 0.0, x.lo)))
    small = a.hi <= 1.0

    def near0(v: DD) -> DD:
        t = expm1(ldexp(v, np.array(1)))
        return div(t, add_f64(t, np.full(t.shape, 2.0)))

    def far(v: DD) -> DD:
        e = exp(ldexp(v, np.array(1)))
        return add_f64(-div(DD(np.full(v.shape, 2.0)), add_f64(e, np.ones(v.shape))), np.ones(v.shape))

    v = on_masks(a, ((small, near0), (~small, far)))
    v = where(x.hi < 0, -v, v)
    return DD(np.where(np.isnan(x.hi), np.nan, v.hi), np.where(np.isnan(x.hi), 0.0, v.lo))


def sigmoid(x: DD) -> DD:
    """1/(1 + exp(-x)): accurate for both signs (exp(-x) overflows to inf -> 0, correctly)."""
    with np.errstate(over="ignore"):
        e = exp(-x)
    return div(DD(np.ones(x.shape)), add_f64(e, np.ones(x.shape)))


def sech2(x: DD) -> DD:
    """1 - tanh(x)**2 = 4 / (e^x + e^-x)**2, without cancellation."""
    a = abs(x)
    e = exp(a)
    s = add(e, div(DD(np.ones(x.shape)), e))
    return div(DD(np.full(x.shape, 4.0)), sqr(s))
