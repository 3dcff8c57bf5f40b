"""sin, cos and tan on double-double arrays (the double-double oracle's trigonometric rows).

Method: x = k pi/2 + r, |r| <= pi/4 (+ a rounding), with pi/2 = P1 + ... + P5 (P1..P4 of 33 bits,
so k*P_i is exact for |k| < 2**20; ~185 bits in all). x.hi - k P1 is exact (Sterbenz), TwoSum
with -k P2 is exact, then x.lo and -k P3, -k P4, -k P5 by accurate DD additions whose partial sums
are already within |k| 2**-66 of r: the reduced r keeps ~106 bits relative to |r| down to
|r| ~ 1e-16 (and ~1e-48 absolute below). sin r and cos r by their Taylor series in r**2 (terms
1..9 in DD, 10..16 in float64; (pi/4)**33/33! < 1e-38), then the quadrant k mod 4.

Accuracy (measured against mpmath at 120 digits, tests/test_ddtrig.py): <= 3e-32 relative for
|x| < 2**20 pi/2 (~1.6e6) wherever |sin| (|cos|) >= ~1e-16 (every float64 input: the float64
nearest k pi/2 keeps ~1e-33 relative); at DD inputs within ~1e-30 of a zero, <= ~1e-47 absolute
(measured 1e-53 at |x| ~ 1e4: relative 1e-26 of a value of 1e-30).
tan = sin / cos (another 10 u**2). Beyond |x| >= 2**20 pi/2 (~1.6e6) each entry falls back to
mpmath (sin(hi) cos(lo) + cos(hi) sin(lo) at 200 bits: exact argument reduction, slow but rare).
inf and NaN give NaN (IEEE).

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> s = sin(DD(np.array([1e4])))
    >>> abs(float(s.hi[0]) - (-0.30561438888825215)) < 1e-16
    True
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial

import mpmath
import numpy as np

from ..parallel import serial
from .dd import DD, add, add_const_raw, add_f64, div, mul_raw, sqr, two_sum, where
from .ddmath import mpf_to_fraction, split_constant

_MP_PREC = 256  # bits for the constants
_PARTS_BITS = 33  # bits of P1..P4: k * P_i exact for |k| < 2**20
_K_LIMIT = 2.0**20  # |k| beyond this: the mpmath fallback
_DD_TERMS = 9  # Taylor terms n = 0..8 in DD (their size >= ~1e-17 on |r| <= pi/4), the rest float64
_TERMS = 17  # n = 0..16: the next term of either series is < 1e-38 relative
_FALLBACK_PREC = 200  # bits for the per-entry mpmath fallback


@lru_cache(maxsize=None)
@serial  # mpmath's precision is the process's
def _pio2_parts() -> tuple[float, ...]:
    """pi/2 = P1 + P2 + P3 + P4 + P5: P1..P4 of 33 bits each, P5 a float64 (~185 bits in all)."""
    with mpmath.workprec(_MP_PREC):
        f = mpf_to_fraction(mpmath.pi / 2)
    return split_constant(f, 4, _PARTS_BITS)


@lru_cache(maxsize=None)
def _coeffs(odd: bool) -> tuple[tuple[float, float], ...]:
    """(-1)**n / (2n+1)! (odd: sin) or (-1)**n / (2n)! (cos) as DD (hi, lo), n = 0.._TERMS-1."""
    out = []
    for n in range(_TERMS):
        f = Fraction((-1) ** n, factorial(2 * n + (1 if odd else 0)))
        hi = float(f)
        out.append((hi, float(f - Fraction(hi))))
    return tuple(out)


def _series(z: DD, odd: bool) -> DD:
    """sum_n c_n z**n (Horner): float64 tail for n >= _DD_TERMS, DD for the leading terms."""
    c = _coeffs(odd)
    tail = np.full(z.shape, c[-1][0])
    for hi, _ in reversed(c[_DD_TERMS:-1]):
        tail = tail * z.hi + hi
    t = DD(tail)
    for hi, lo in reversed(c[:_DD_TERMS]):
        t = add_const_raw(mul_raw(t, z), hi, lo)
    return t


def _reduce(x: DD) -> tuple[DD, np.ndarray]:
    """r and k mod 4 with x = k pi/2 + r (see module docstring); x finite, |k| < 2**20."""
    P1, P2, P3, P4, P5 = _pio2_parts()
    k = np.round(x.hi / (P1 + P2))
    s, e = two_sum(x.hi - k * P1, -(k * P2))  # both steps exact
    r = DD(s, e)
    r = add_f64(r, x.lo)
    r = add(r, DD(-(k * P3), -(k * P4)))  # k*P3 and k*P4 exact; |k P4| << ulp(k P3)
    r = add_f64(r, -(k * P5))
    return r, np.mod(k, 4).astype(np.int64)


def _sin_cos_reduced(x: DD) -> tuple[DD, DD]:
    """(sin x, cos x) for finite x with |x| < 2**20 pi/2."""
    r, q = _reduce(x)
    z = sqr(r)
    s = mul_raw(_series(z, True), r)
    c = _series(z, False)
    sin_x = where(q == 0, s, where(q == 1, c, where(q == 2, -s, -c)))
    cos_x = where(q == 0, c, where(q == 1, -s, where(q == 2, -c, s)))
    return sin_x, cos_x


@serial  # mpmath's precision is the process's
def _mp_entry(hi: float, lo: float, fn: str) -> tuple[float, float]:
    """fn(hi + lo) as a DD (hi, lo) by mpmath: sin(a+b) / cos(a+b) from sin, cos of each part."""
    with mpmath.workprec(_FALLBACK_PREC):
        a, b = mpmath.mpf(hi), mpmath.mpf(lo)
        if fn == "sin":
            v = mpmath.sin(a) * mpmath.cos(b) + mpmath.cos(a) * mpmath.sin(b)
        else:
            v = mpmath.cos(a) * mpmath.cos(b) - mpmath.sin(a) * mpmath.sin(b)
        f = mpf_to_fraction(v)
    h = float(f)
    return h, float(f - Fraction(h))


def sin_cos(x: DD) -> tuple[DD, DD]:
    """(sin x, cos x) elementwise (module docstring: method and accuracy)."""
    P1, P2 = _pio2_parts()[:2]
    fin = np.isfinite(x.hi)
    with np.errstate(invalid="ignore"):
        big = fin & (np.abs(x.hi) >= _K_LIMIT * (P1 + P2) - 1.0)
    ok = fin & ~big
    safe = DD(np.where(ok, x.hi, 0.0), np.where(ok, x.lo, 0.0))
    s, c = _sin_cos_reduced(safe)
    shi = np.where(ok, s.hi, np.nan)
    slo = np.where(ok, s.lo, 0.0)
    chi = np.where(ok, c.hi, np.nan)
    clo = np.where(ok, c.lo, 0.0)
    for idx in (np.ndindex(x.shape) if big.any() else ()):
        if not big[idx]:
            continue
        h, l = float(x.hi[idx]), float(x.lo[idx])
        shi[idx], slo[idx] = _mp_entry(h, l, "sin")
        chi[idx], clo[idx] = _mp_entry(h, l, "cos")
    return DD(shi, slo), DD(chi, clo)


def sin(x: DD) -> DD:
    return sin_cos(x)[0]


def cos(x: DD) -> DD:
    return sin_cos(x)[1]


def tan(x: DD) -> DD:
    """sin x / cos x (relative ~1e-31 away from the zeros of sin; cos is accurate near its zeros,
    so tan keeps its digits near the poles)."""
    s, c = sin_cos(x)
    return div(s, c)
