"""The double-double underflow zone, and a DD value rounded from a ball there.

A double-double keeps ~106 bits only while its low part is a normal-range float: below
``ZONE`` = 2^-969 the low part falls on float64's fixed grid of 2^-1074 (subnormal spacing), and
the error-free transforms stop being error-free (a product's error term is rounded to that grid,
a quotient's remainder with it). There a DD result is right to a few multiples of 2^-1074
*absolute*, not to ~1e-31 relative (``tests/test_precise.py``: ``TINY_FLOOR``): tanh(w x) at
x = 2.2e-313 came out one subnormal spacing above the correctly rounded value, which the
comparer's "an error of exactly 0 is the exact value itself" reads as a one-ULP error.

What the oracle needs there is the exact value rounded to that grid: ``rounded`` takes it from a
ball (ARB has no exponent range to run out of), decided in exact rationals (``nearest``: half a
spacing is no float64); a row of the oracle that touches the zone (an input, a result, or an
intermediate: ``ddops.WatchKernels``) is re-evaluated in balls (``symgrad.tensor.views``), and
so is a row where a product, quotient or power of finite nonzero operands ran out of float64's
exponent range (``ran_out``: 1e-200**2 is 0 in DD, 1e200**2 inf; a ball has the exact value).

Example:
    >>> import numpy as np
    >>> from flint import arb
    >>> in_zone(np.array([0.0, 5e-324, 1e-300, 1e-290, np.nan])).tolist()
    [False, True, True, False, False]
    >>> hi, lo, ok = rounded(np.array([arb(2.5) * arb(2.0) ** -1074], dtype=object))
    >>> hi[0] == 2 * 2.0**-1074, lo[0], bool(ok[0])   # a tie: to even, certified to half a spacing
    (np.True_, np.float64(0.0), True)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from flint import arb, ctx

from .dd import DD
from .rational import EXACT_PREC, arb_fraction, overflow_sign, split_fraction

ZONE = 2.0**-969  # |value| below this (and not 0): the DD's low part is on the 2^-1074 grid
_HALF = Fraction(1, 2**1075)  # half float64's subnormal spacing (no float64: it rounds to 0)
ROUNDED_SLACK = 2.0**-20  # a rounded ball's bound may exceed half a spacing by this much of it
#                           (the ball's own radius): "rounded to nearest" in ``rounded``'s claim
REL_CLAIM = 1e-30  # outside the zone: the DD's relative claim (as ``certify.CertifyConfig``)


def in_zone(a: np.ndarray) -> np.ndarray:
    """Where a float array's entries lie in the underflow zone: 0 < |a| < 2^-969 (NaN: no).

    Arguments:
        a: a float array (float64 or narrower).
    Returns:
        A bool array of the same shape.
    """
    a = np.asarray(a)
    with np.errstate(invalid="ignore"):
        return (a != 0) & (np.abs(a) < ZONE)


def zone_rows(arrays, n: int) -> np.ndarray:
    """The rows (leading axis, ``n`` of them) of which any float array in ``arrays`` has an
    entry in the zone; an array of one row (broadcast) marks every row.

    Arguments:
        arrays: float arrays of shape (n, ...) or (1, ...); integer arrays are skipped.
        n: the number of rows.
    Returns:
        A bool array (n,).
    """
    rows = np.zeros(n, bool)
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind != "f" or a.ndim == 0 or a.size == 0:
            continue
        hit = in_zone(a).reshape(a.shape[0], -1).any(axis=1)
        rows |= hit if hit.shape[0] == n else hit.any()
    return rows


def _claim(h: float) -> Fraction:
    """What a DD value with high part ``h`` is certified to, exactly (half a spacing is not a
    float64): ``REL_CLAIM`` |h| outside the zone, and half a subnormal spacing (the value
    rounded to nearest on the 2^-1074 grid) times 1 + ``ROUNDED_SLACK`` in it."""
    return Fraction(REL_CLAIM) * abs(Fraction(h)) + _HALF * (1 + Fraction(ROUNDED_SLACK))


def nearest(h: float, l: float, ball: arb) -> tuple[bool, bool]:
    """Whether the DD value h + l is the nearest to every point of ``ball`` on the 2^-1074
    grid (sup |h + l - ball| within half a spacing and ``ROUNDED_SLACK`` of it), and whether
    the ball is narrow enough to tell (its radius within ``ROUNDED_SLACK`` of half a spacing);
    decided in exact rationals (a float64 bound resolves no finer than a whole spacing).

    Arguments:
        h, l: the DD value's two parts.
        ball: a finite ``flint.arb``.
    Returns:
        (within, narrow).
    """
    with ctx.workprec(EXACT_PREC):
        m, r = arb_fraction(ball.mid()), arb_fraction(ball.rad())
    return abs(Fraction(h) + Fraction(l) - m) + r <= _claim(h), r <= _HALF * Fraction(ROUNDED_SLACK)


FAR_BITS = 1100  # |x| >= 2^1100 is beyond float64 (max < 2^1024); |x| < 2^-1100 rounds to 0


def _log2(v: arb) -> int:
    """floor(log2 |v|) + 1 for a finite arb number (its midpoint or radius), read from its
    mantissa and exponent without forming the number (0: a large negative number)."""
    man, exp = v.man_exp()
    return int(exp) + abs(int(man)).bit_length() if int(man) else -(1 << 62)


def rounded(balls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ball's midpoint as the nearest double-double (``precise.rational.split_fraction``:
    correctly rounded, subnormals included; +-inf beyond float64's range, certified when the
    whole ball is beyond it), and whether the rigorous bound sup |hi + lo -
    ball| is within the claim (``REL_CLAIM`` relative; in the zone half a subnormal spacing
    and ``ROUNDED_SLACK`` of it: the ball is rounded to nearest on the 2^-1074 grid), decided
    in exact rationals.

    Arguments:
        balls: an object array of ``flint.arb``.
    Returns:
        (hi, lo, certified): float64 arrays and a bool array of the balls' shape; a ball that is
        not finite gives NaN and is not certified.
    """
    balls = np.asarray(balls, dtype=object)
    hi, lo = np.full(balls.shape, np.nan), np.zeros(balls.shape)
    ok = np.zeros(balls.shape, bool)
    with ctx.workprec(EXACT_PREC):
        for idx in np.ndindex(balls.shape):
            b = balls[idx]
            if not b.is_finite():
                continue
            # far outside float64's range the exact rational of a midpoint such as e^(e^10)
            # would not fit in memory: its rounding is decided by comparisons alone
            mid, rad, negative = _log2(b.mid()), _log2(b.rad()), bool(b.mid() < 0)
            if mid > FAR_BITS:  # beyond float64: +-inf, certified when the whole ball is
                hi[idx] = -np.inf if negative else np.inf
                ok[idx] = overflow_sign(b) == np.sign(hi[idx])
                continue
            if max(mid, rad) < -FAR_BITS:  # the whole ball far below half the smallest
                hi[idx], ok[idx] = (-0.0 if negative else 0.0), True  # subnormal: a zero
                continue
            h, l = split_fraction(arb_fraction(b.mid()))
            if rad > FAR_BITS:  # a radius beyond float64's range certifies nothing
                hi[idx], lo[idx] = h, l
                continue
            if np.isinf(h):  # beyond float64 (1/x at a subnormal x): certified when the whole
                hi[idx], ok[idx] = h, overflow_sign(b) == np.sign(h)  # ball is beyond it
                continue
            hi[idx], lo[idx] = h, l
            ok[idx] = nearest(h, l, b)[0]
    return hi, lo, ok


def ran_out(r: DD, *operands) -> bool:
    """Whether an arithmetic result ``r`` is 0 or +-inf somewhere its operands (DD arrays or
    numbers, broadcast to it) are all finite and nonzero: the double-double's exponent range
    ran out there (flushed to 0 or overflowed), the exact value did not (a ball has it).

    >>> from symgrad.precise.dd import mul
    >>> a = DD(np.array([1e-200, 3.0, 0.0]))
    >>> ran_out(mul(a, a), a, a), ran_out(mul(a, DD(np.array([1.0, 1.0, 5.0]))), a)
    (True, False)
    """
    hi = np.asarray(r.hi)
    with np.errstate(invalid="ignore"):
        hit = (hi == 0) | np.isinf(hi)
        if not hit.any():
            return False
        for x in operands:
            h = np.broadcast_to(np.asarray(x.hi if isinstance(x, DD) else x, float), hi.shape)
            hit &= np.isfinite(h) & (h != 0)
    return bool(hit.any())
