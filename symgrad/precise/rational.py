"""Exact rationals of arb balls, and a rational as a double-double: the one conversion the
ball table (``precise.arb``), the certification (``precise.certify``) and the underflow zone
(``precise.underflow``) share.

>>> from fractions import Fraction
>>> from flint import arb
>>> arb_fraction(arb(3) / 4)
Fraction(3, 4)
>>> split_fraction(Fraction(1, 3))[1] != 0, split_fraction(Fraction(2) ** 1100)
(True, (inf, 0.0))
>>> overflow_sign(arb(2) ** 1100), overflow_sign(arb(1))
(1, 0)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from flint import arb

EXACT_PREC = 2300  # bits that hold hi + lo of any double-double exactly
FLOAT64_MAX = arb(float(np.finfo(np.float64).max))  # float64's largest, as a ball


def arb_fraction(v: arb) -> Fraction:
    """A finite arb number (a ball's midpoint or radius) as an exact rational."""
    man, exp = v.man_exp()
    return Fraction(int(man)) * Fraction(2) ** int(exp)


def overflow_sign(b: arb) -> int:
    """+1 / -1 when the whole ball lies above / below float64's range (its exact value rounds
    to +-inf: a DD inf agrees with it), else 0."""
    return 1 if b > FLOAT64_MAX else -1 if b < -FLOAT64_MAX else 0


def split_fraction(f: Fraction) -> tuple[float, float]:
    """``f`` as a double-double: hi the float64 nearest ``f`` (subnormals included), lo the
    float64 nearest ``f - hi``; beyond float64's range hi is +-inf and lo 0, as IEEE rounds
    (Python's ``float(Fraction)`` raises OverflowError there: 1/x at a subnormal x)."""
    try:
        hi = float(f)
    except OverflowError:
        return (np.inf if f > 0 else -np.inf), 0.0
    return hi, float(f - Fraction(hi))


def round_up(f: Fraction) -> float:
    """The smallest float64 >= ``f`` (inf beyond float64's range): a radius or an error bound
    rounded up, so the float never claims less than the rational."""
    try:
        d = float(f)
    except OverflowError:
        return np.inf if f > 0 else -float(np.finfo(np.float64).max)
    return d if Fraction(d) >= f else float(np.nextafter(d, np.inf))
