"""Double-double arrays: a value is hi + lo, two float64 arrays with |lo| <= ulp(hi)/2 (~106 bits).

Error-free transformations (TwoSum, Dekker's TwoProd: numpy has no FMA) and the four arithmetic
operations, vectorised with numpy broadcasting. Error of each operation, relative to the exact
result of the operation on its (exact) DD operands, with u = 2**-53 (Joldes, Muller & Popescu,
"Tight and rigorous error bounds for basic building blocks of double-word arithmetic", 2017):

    add / sub   <= 3 u**2        (the "accurate" algorithm: two TwoSums, exact at cancellation)
    mul         <= 5 u**2
    div         <= 10 u**2       (three quotient digits)
    comparisons, abs, neg, max/min, scaling by a power of two: exact.

Non-finite values keep IEEE semantics on hi (lo is 0 there). Results in the subnormal range keep
only the precision that range has (lo underflows first).

Example:
    >>> import numpy as np
    >>> x = DD(np.array([1.0])) / DD(np.array([3.0]))
    >>> float((x * DD(np.array([3.0])) - DD(np.array([1.0]))).hi[0]) == 0.0
    True
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1: Dekker's splitting constant for 53-bit significands
_SPLIT_LIMIT = 2.0**995  # above this, a * _SPLITTER could overflow: split a scaled copy
_SPLIT_DOWN = 2.0**-28
_SPLIT_UP = 2.0**28


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: s + e == a + b exactly, s = fl(a + b)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def quick_two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's FastTwoSum, exact when |a| >= |b| (or a == 0)."""
    s = a + b
    e = b - (s - a)
    return s, e


def split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp/Dekker split a = h + l, each with <= 26 significant bits (overflow-safe)."""
    if np.size(a) and (np.fmax.reduce(a, axis=None) > _SPLIT_LIMIT
                       or np.fmin.reduce(a, axis=None) < -_SPLIT_LIMIT):  # NaN-blind extrema:
        #  two reductions instead of an |a| and a mask array (the same test)
        big = np.abs(a) > _SPLIT_LIMIT
        a_s = np.where(big, a * _SPLIT_DOWN, a)
        c = _SPLITTER * a_s
        h = c - (c - a_s)
        l = a_s - h
        return np.where(big, h * _SPLIT_UP, h), np.where(big, l * _SPLIT_UP, l)
    c = _SPLITTER * a
    h = c - (c - a)
    return h, a - h


def two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProd: p + e == a * b exactly (barring underflow), p = fl(a * b). Where the
    product overflows, p is +-inf and e meaningless (``_finish`` keeps the IEEE result; the
    oracle's watch sends such rows to balls): no warning for it."""
    with np.errstate(over="ignore", invalid="ignore"):
        p = a * b
        ah, al = split(a)
        bh, bl = split(b)
        e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _finish(hi: np.ndarray, lo: np.ndarray, plain: np.ndarray) -> "DD":
    """Wrap a result; where the plain float64 result is inf/nan it is the result (IEEE semantics:
    the error terms are meaningless there), with lo = 0."""
    fin = np.isfinite(plain) & np.isfinite(hi)
    if not fin.all():
        hi = np.where(fin, hi, plain)
        lo = np.where(fin, lo, 0.0)
    return DD(hi, lo)


class DD:
    """A double-double array: value = hi + lo elementwise (see module docstring for errors)."""

    __slots__ = ("hi", "lo")
    __array_priority__ = 1000  # numpy defers to DD's operators

    def __init__(self, hi, lo=None):
        self.hi = _arr(hi)
        if lo is None:  # a read-only zero view: no memory for float64 data (DD never writes in place)
            self.lo = np.broadcast_to(np.float64(0.0), self.hi.shape)
        else:
            lo = _arr(lo)
            self.lo = lo if lo.shape == self.hi.shape else np.broadcast_to(lo, self.hi.shape).copy()

    # -- views ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.hi.shape

    @property
    def ndim(self) -> int:
        return self.hi.ndim

    def __len__(self) -> int:
        return len(self.hi)

    def __getitem__(self, key) -> "DD":
        return DD(self.hi[key], self.lo[key])

    def __repr__(self) -> str:
        return f"DD(hi={self.hi!r}, lo={self.lo!r})"

    @property
    def lo_is_zero_view(self) -> bool:
        """True when lo is the zero view of a DD made from float64 data (cheap test, no pass)."""
        return self.lo.ndim > 0 and all(st == 0 for st in self.lo.strides) and self.lo.size > 0 and self.lo.flat[0] == 0

    def copy(self) -> "DD":
        return DD(self.hi.copy(), np.array(self.lo, copy=True))

    def map_arrays(self, f) -> "DD":
        """Apply an exact structural function (reshape, transpose, take...) to hi and lo alike.
        A +0 zero view lo (float64 data) stays one: ``f`` maps zeros to zeros, and numpy's
        take of a broadcast view first copies it whole (GPT-2's 50257 x 768 token table:
        a 309 MB pass of zeros for the 64 rows a sample picks, ~1 CPU s)."""
        if self.lo_is_zero_view and not np.signbit(self.lo.flat[0]):
            return DD(f(self.hi))
        return DD(f(self.hi), f(self.lo))

    def to_fractions(self) -> np.ndarray:
        """Exact values as an object array of Fractions (finite entries only)."""
        out = np.empty(self.shape, dtype=object)
        for idx in np.ndindex(self.shape):
            out[idx] = Fraction(float(self.hi[idx])) + Fraction(float(self.lo[idx]))
        return out

    # -- arithmetic ----------------------------------------------------------------------------
    def __neg__(self) -> "DD":
        return DD(-self.hi, -self.lo)

    def __abs__(self) -> "DD":
        neg = self.hi < 0
        return DD(np.where(neg, -self.hi, self.hi), np.where(neg, -self.lo, self.lo))

    def __add__(self, other) -> "DD":
        return add(self, as_dd(other))

    __radd__ = __add__

    def __sub__(self, other) -> "DD":
        return add(self, -as_dd(other))

    def __rsub__(self, other) -> "DD":
        return add(as_dd(other), -self)

    def __mul__(self, other) -> "DD":
        return mul(self, as_dd(other))

    __rmul__ = __mul__

    def __truediv__(self, other) -> "DD":
        return div(self, as_dd(other))

    def __rtruediv__(self, other) -> "DD":
        return div(as_dd(other), self)

    # -- exact comparisons (lexicographic on normalised (hi, lo)) --------------------------------
    def __lt__(self, other):
        o = as_dd(other)
        return (self.hi < o.hi) | ((self.hi == o.hi) & (self.lo < o.lo))

    def __le__(self, other):
        o = as_dd(other)
        return (self.hi < o.hi) | ((self.hi == o.hi) & (self.lo <= o.lo))

    def __gt__(self, other):
        return as_dd(other) < self

    def __ge__(self, other):
        return as_dd(other) <= self

    def eq(self, other) -> np.ndarray:
        o = as_dd(other)
        return (self.hi == o.hi) & (self.lo == o.lo)


def as_dd(x) -> DD:
    """A DD from a DD, a float64 array or a Python number (exact for float64 values)."""
    if isinstance(x, DD):
        return x
    return DD(_arr(x))


def from_fraction(value: Fraction, shape: tuple = ()) -> DD:
    """The DD nearest (to ~107 bits) a rational number, broadcast to shape."""
    hi = float(value)
    lo = float(value - Fraction(hi)) if np.isfinite(hi) else 0.0
    return DD(np.full(shape, hi), np.full(shape, lo))


def add(a: DD, b: DD) -> DD:
    """Accurate DD addition (error <= 3u**2 relative to the exact sum)."""
    s1, s2 = two_sum(a.hi, b.hi)
    plain = s1
    t1, t2 = two_sum(a.lo, b.lo)
    s2 = s2 + t1
    s1, s2 = quick_two_sum(s1, s2)
    s2 = s2 + t2
    s1, s2 = quick_two_sum(s1, s2)
    return _finish(s1, s2, plain)


def add_f64(a: DD, b: np.ndarray) -> DD:
    """DD + float64 (error <= 2u**2)."""
    s1, s2 = two_sum(a.hi, b)
    plain = s1
    s2 = s2 + a.lo
    s1, s2 = quick_two_sum(s1, s2)
    return _finish(s1, s2, plain)


def mul(a: DD, b: DD) -> DD:
    """DD multiplication (error <= 5u**2 relative)."""
    p, e = two_prod(a.hi, b.hi)
    plain = p
    e = e + (a.hi * b.lo + a.lo * b.hi)
    p, e = quick_two_sum(p, e)
    return _finish(p, e, plain)


def mul_f64(a: DD, b: np.ndarray) -> DD:
    """DD * float64 (error <= 3u**2 relative)."""
    p, e = two_prod(a.hi, b)
    plain = p
    e = e + a.lo * b
    p, e = quick_two_sum(p, e)
    return _finish(p, e, plain)


def sqr(a: DD) -> DD:
    p, e = two_prod(a.hi, a.hi)
    plain = p
    e = e + 2.0 * a.hi * a.lo
    p, e = quick_two_sum(p, e)
    return _finish(p, e, plain)


def div(a: DD, b: DD) -> DD:
    """DD division by long division with three float64 quotient digits (error <= 10u**2)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q1 = a.hi / b.hi
        r = add(a, -mul_f64(b, q1))
        q2 = r.hi / b.hi
        r = add(r, -mul_f64(b, q2))
        q3 = r.hi / b.hi
        q1, q2 = quick_two_sum(q1, q2)
        res = add_f64(DD(q1, q2), q3)
    # inf/0/nan cases: IEEE quotient of the leading parts
    bad = ~np.isfinite(q1) | (b.hi == 0) | ~np.isfinite(a.hi) | ~np.isfinite(b.hi)
    if bad.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            q = a.hi / b.hi
        res = DD(np.where(bad, q, res.hi), np.where(bad, 0.0, res.lo))
    return res


def ldexp(a: DD, k: np.ndarray) -> DD:
    """a * 2**k, exact unless it over/underflows."""
    return DD(np.ldexp(a.hi, k), np.ldexp(a.lo, k))


def where(mask: np.ndarray, a: DD, b: DD) -> DD:
    return DD(np.where(mask, a.hi, b.hi), np.where(mask, a.lo, b.lo))


def isnan(a: DD) -> np.ndarray:
    return np.isnan(a.hi)


def sign(a: DD) -> np.ndarray:
    """-1, 0, 1 (float64; NaN for NaN). Exact: the sign of hi is the sign of the DD value."""
    return np.sign(a.hi)


def to_float64(a: DD) -> np.ndarray:
    """hi + lo rounded to float64 (hi itself when normalised)."""
    return a.hi + a.lo


# -- unchecked variants for the inner loops of ddmath (finite, moderate operands: |x| < 2**995) --
def split_raw(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    h = c - (c - a)
    return h, a - h


def mul_raw(a: DD, b: DD) -> DD:
    p = a.hi * b.hi
    ah, al = split_raw(a.hi)
    bh, bl = split_raw(b.hi)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    e += a.hi * b.lo + a.lo * b.hi
    s = p + e
    return DD(s, e - (s - p))


def add_raw(a: DD, b: DD) -> DD:
    s1, s2 = two_sum(a.hi, b.hi)
    t1, t2 = two_sum(a.lo, b.lo)
    s2 += t1
    s = s1 + s2
    s2 = s2 - (s - s1)
    s2 += t2
    s1 = s + s2
    return DD(s1, s2 - (s1 - s))


def add_const_raw(a: DD, c_hi: float, c_lo: float) -> DD:
    """a + (c_hi + c_lo) for a DD constant (accurate addition)."""
    return add_raw(a, DD(c_hi, c_lo))
