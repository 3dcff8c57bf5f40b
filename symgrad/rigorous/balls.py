"""The rigorous enclosure: a proven ball around the exact value holding everything correct code
can compute in a dtype, per entry. A failure of the entry test needs the error to lie outside it.

**Theorem.** Let a program P (a straight-line sequence of operations: +, -, x, /, sqrt, integer
powers, n-term sums and products, elementary functions, Abs/Max/Min/sign/Heaviside, Piecewise)
be run on inputs that are numbers of the dtype, each operation's result rounded into the dtype
such that

1. +, -, x, /, sqrt are correctly rounded: |fl(op) - op| <= u |op| + tiny;
2. an n-term sum (or contraction) is evaluated in *any* order or blocking, each addition
   rounded as in 1: |fl(sum) - sum| <= gamma_(n-1) sum |terms| + tiny (Higham, Lemma 3.1 and
   its order-free corollary); an m-factor product likewise within gamma_(m-1) |product| + tiny;
   an integer power b^k within gamma_max(|k|,2) |b^k| + tiny (repeated multiplication or a libm
   pow of <= 2u);
3. every elementary function (exp, log, tanh, erf, ..., pow) is within ``k`` ulps of the
   correctly rounded result of its computed argument, k = ``Tolerance.function_ulps`` (one
   table: libm and numpy's SIMD float32 kernels are documented at <= 4 ulps);
4. Abs, Max, Min, negation, sign, Heaviside and multiplication by +-2^j are exact;
5. no operation overflows (an intermediate whose enclosure exceeds the dtype's largest number
   makes the sample *unbounded*), and underflow or flush-to-zero costs at most ``tiny`` (the
   dtype's smallest normal number) per operation.

Evaluate P in ball arithmetic (python-flint ``arb``) at the computed intervals, widening every
operation's result ball by its own rounding from 1-3. Then by induction over the program every
ball contains both the exact value of its node and every value a computation satisfying 1-5
can produce: the exact result of an operation on the (unknown) computed arguments lies in the
operation's ball over the argument balls, and its rounding is within the widening, which is
taken at the ball's largest magnitude. The output balls B thus hold the exact value x and any
computed value c, so |c - x| <= r = max(sup B - x, x - inf B). An error beyond r is *proven*
not to come from correct code running P. The enclosure is not first order: a variance that is
0 at the exact point (LayerNorm of a constant row) gets its computed width, and eps^(-3/2)
amplifies the ball, so second-order effects are inside it.

Where a branch (a Heaviside, sign or Piecewise condition) is undecided over a ball, or a
domain boundary lies inside one, the enclosure is *unbounded* (NaN radius): not a proof.

Scope: P is the program the running error bound uses (``symgrad.tensor.bound``: the model's
derived program; for a user's ``torch_fn`` also the textbook composition, and the radius is
the larger of the two, like the allowance). Where torch's own backward of an op computes
another formula from the op's rounded output (sigmoid's s (1 - s)), P's VJP map is tagged with
it and its ball is the union of both formulas' balls (``torch_forms``). Code that computes any
other formula (fused kernels, reassociation beyond sums) is covered only as far as its
operations fit 1-5 on P's structure.

>>> import numpy as np
>>> from flint import arb
>>> r = radius_about([[arb(1.3, 1e-16)]], np.array([[1.3]]), np.zeros((1, 1)))
>>> bool(1e-17 < r[0, 0] < 1e-15)
True
"""

from __future__ import annotations

import functools
import math
import time
from fractions import Fraction
from typing import Callable

import numpy as np
import sympy as sp
from flint import arb, ctx, fmpq

from ..backends import arb as arb_backend
from ..compare import dtype_info

PREC = 128  # bits of the balls: their own rounding is ~2^-128, far below any dtype's u
UNIT = arb(0, 1)  # the ball [-1, 1]
EXACT_FUNCTIONS = ("Abs", "Max", "Min", "DiracDelta")


class Unbounded(Exception):
    """An intermediate overflows the dtype, or a branch or domain is undecided: no proof."""


class Rounding:
    """The dtype's rounding model: each operation's own widening (module docstring, 1-5).
    ``watch``: whether the rounded kernels report each function's result to ``note``
    (``rigorous.singular``'s walk records where a ball reached a singular point)."""

    watch = False
    # the walk encloses the *finite* results correct code may compute: a one-hot's 0 beside a
    # non-finite ball is NaN in the dtype, left out (``arb_select.selection``'s finite_results)
    finite_results = True

    def __init__(self, dtype: str, function_ulps: float, *, strict: bool = True,
                 exact: bool = False) -> None:
        info = dtype_info(dtype)
        self.dtype = dtype
        self.strict = strict  # raise Unbounded (a scalar sample), or give a NaN ball (an entry)
        self.exact = exact  # no widening: the program's own exact value (the enclosure's centre)
        with ctx.workprec(PREC):
            self.u = arb(fmpq(1, 2 ** (info.digits + 1)))
            self.tiny = arb(Fraction(info.tiny).numerator) / arb(Fraction(info.tiny).denominator)
            self.fn_rel = arb(function_ulps) * 2 * self.u  # k ulps (one ulp is 2u)
        self.max = arb(info.max)
        self._max_int = int(Fraction(float(self.max.mid())))  # the largest finite, an integer
        self.digits = info.digits
        self._gammas: dict = {}

    def note(self, name: str, args: tuple, result) -> None:
        """An operation's result, seen by a watching walk (``watch``); nothing here."""

    def gamma(self, k: int) -> arb:
        """gamma_k = k u / (1 - k u)."""
        if k <= 0:
            return arb(0)
        key = (k, ctx.prec)  # an arb result depends on the working precision
        g = self._gammas.get(key)
        if g is None:
            g = self._gammas[key] = k * self.u / (1 - k * self.u)
        return g

    def widen(self, r, rel: arb, scale=None) -> arb:
        """r widened by rel * |scale| + tiny (scale: r itself unless given)."""
        r = self._check(r)
        if self.exact or not r.is_finite():  # beyond the range: NaN (``_check``)
            return r
        mag = abs(r if scale is None else scale).upper()
        return r + (rel * mag + self.tiny) * UNIT

    def representable(self, value: Fraction) -> bool:
        """Is an exact rational a number of the dtype (normal range, digits + 1 bits)?"""
        if value == 0:
            return True
        p, q = abs(value.numerator), value.denominator
        if q & (q - 1):
            return False
        while not p & 1:
            p >>= 1
        return p.bit_length() <= self.digits + 1 and abs(float(value)) <= float(self.max.mid())

    def exact_point(self, r: arb) -> bool:
        """Is r one number of the dtype? (A correctly rounded operation whose exact result is
        such a number returns it exactly: no widening, no tiny.)"""
        if not (r.is_exact() and r.is_finite()):
            return False
        man, exp = r.mid().man_exp()
        return self.representable(Fraction(int(man)) * Fraction(2) ** int(exp))

    def exact_sum(self, terms: list) -> bool:
        """Is an order-free sum of these exact terms exact? Yes when every term is a multiple
        of 2^e (e: the smallest 2-adic exponent among them) and sum |terms| < 2^(digits+1) 2^e:
        then every partial sum, in any order, is such a multiple within the dtype's digits.
        In integers: each term m 2^x is |m| 2^(x - e) units of 2^e, summed exactly (no float
        sum: an exact yes or no, as the widening it skips needs)."""
        if not all(t.is_exact() and t.is_finite() for t in terms):
            return False
        parts = [(int(m), int(x)) for m, x in (t.mid().man_exp() for t in terms) if m != 0]
        if not parts:
            return True
        low = min(x + ((m & -m).bit_length() - 1) for m, x in parts)  # 2-adic valuations
        units = sum(abs(m) << (x - low) for m, x in parts)  # sum |terms| / 2^low, exactly
        if units >= 1 << (self.digits + 1):
            return False
        return (units << low if low >= 0 else units) <= (self._max_int if low >= 0
                                                         else self._max_int << -low)

    # the operations, as the generated source calls them ----------------------------------------
    def rsum(self, *terms) -> arb:
        terms = [t if type(t) is arb else arb(t) for t in terms]
        out = sum(terms, arb(0))
        if self.exact:  # the centre: no widening (an exact sum is in range, and >= 0 where
            r = self._check(out)  # every term is: the same ball as the branches below give)
            return nonnegative(r) if all(t >= 0 for t in terms) else r
        if self.exact_sum(terms) if len(terms) > 2 else self.exact_point(out):
            return out  # no rounding happens (a two-term sum is one correctly rounded op)
        mag = sum((abs(t).upper() for t in terms), arb(0))
        r = self.widen(out, self.gamma(len(terms) - 1), mag)
        # rounding is monotone: a sum of nonnegative numbers is computed nonnegative
        return nonnegative(r) if all(t >= 0 for t in terms) else r

    def rprod(self, rounded: int, *factors) -> arb:
        factors = [f if type(f) is arb else arb(f) for f in factors]
        if any(f.is_zero() for f in factors):  # an exact zero factor: 0 in any order; beside a
            return arb(0)  # non-finite factor a finite result can only be a masked 0 (torch's
        #                    relu/threshold backward): 0 * inf = NaN is judged as non-finite
        out = math.prod(factors, start=arb(1))
        if rounded <= 0:
            return self._check(out)
        if self.exact:  # the centre: unwidened, as below (an exact point is in range, >= 0
            r = self._check(out)  # where every factor is)
            return nonnegative(r) if all(f >= 0 for f in factors) else r
        if out.is_exact() and all(f.is_exact() for f in factors) and self.exact_point(out):
            return out  # every partial product's odd part divides the product's: all exact
        r = self.widen(out, self.gamma(rounded))
        return nonnegative(r) if all(f >= 0 for f in factors) else r

    def _check(self, r) -> arb:
        r = arb_backend._a(r)
        if not r.is_finite() or abs(r).upper() > self.max:
            if self.strict:
                raise Unbounded("an intermediate beyond the dtype's range or not finite")
            return arb.nan()
        return r

    def rfun(self, r) -> arb:
        r = arb_backend._a(r)
        w = self.widen(r, self.fn_rel)
        return nonnegative(w) if r >= 0 else w  # exp, sqrt, erfc, ...: k ulps of a value >= 0

    def rsqrt(self, x) -> arb:
        r = arb_backend.rsqrt(x)
        return r if self.exact_point(r) else nonnegative(self.widen(r, self.u))

    def rdiv(self, a, b) -> arb:
        a = arb_backend._a(a)
        if a.is_exact() and a == 0:  # an exact 0 over anything: 0, or NaN where b is 0 or
            return arb(0)            # inf (a non-finite result is judged as such, not here)
        r = a / arb_backend._a(b)
        return r if self.exact_point(r) else self.widen(r, self.u)

    def ripow(self, b, k: int) -> arb:
        b = arb_backend._a(b)
        r = arb_backend.ipow(b, k)
        if k % 2 == 0:  # an even power is >= 0 (a ball about 0 squared is [0, r^2], not +-)
            r = nonnegative(r)
        if k == 1 or (k in (-1, 2) and self.exact_point(r)):
            return self._check(r)
        w = self.widen(r, self.gamma(max(abs(k), 2)) if abs(k) != 1 else self.u)
        return nonnegative(w) if (k % 2 == 0 or b >= 0) else w

    def constant(self, e: sp.Expr) -> arb:
        """A sympy constant as the dtype holds it: exact if representable, else rounded."""
        c = arb_backend.constant(e)
        if not c.is_finite() or self.exact:
            return c  # nan / oo as written (a Piecewise's "otherwise"): no rounding
        if (e.is_Rational or e.is_Float) and self.representable(Fraction(str(sp.Rational(e)))):
            return c
        return self.widen(c, self.u)


def nonnegative(r: arb) -> arb:
    """The part of ball r at or above 0 (a ball enclosing [max(inf r, 0), sup r])."""
    if not r.is_finite() or r >= 0:
        return r
    hi = r.upper()
    if hi < 0:
        return r
    return arb(0).union(hi)


def spread(balls: list, centres: list, shape: tuple) -> np.ndarray:
    """max |v - c| over v in the enclosure B and c in the program's exact ball C, per entry,
    rounded up: how far rounding can carry correct code from the program's exact value. (If
    the program equals the function, that value is the exact one; if it does not - a wrong
    rewrite or derivative - its own code lands that far from the oracle and is proven wrong,
    while a user's correct code is still judged about the true value.) NaN: unbounded."""
    out = np.full(shape, np.nan)
    with ctx.workprec(PREC):
        for i, (row, centre) in enumerate(zip(balls, centres)):
            if row is None or centre is None:
                continue
            for k in range(shape[1]):
                b, c = arb_backend._a(row[k]), arb_backend._a(centre[k])
                if b.is_finite() and c.is_finite():
                    out[i, k] = _up(max(b.upper() - c.lower(), c.upper() - b.lower(), arb(0)))
    return out


def radius_about(balls: list, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """max(sup B - x, x - inf B) per entry, x = hi + lo (the oracle's double-double), rounded
    up to float64; NaN where a sample or entry is unbounded. ``balls``: per row, a list of
    ``arb`` (or None); hi, lo: (rows, K)."""
    rows, width = np.shape(hi)
    out = np.full((rows, width), np.nan)
    with ctx.workprec(PREC):
        for i, row in enumerate(balls):
            if row is None:
                continue
            for k in range(width):
                out[i, k] = _radius(row[k], hi[i, k], lo[i, k])
    return out


def _radius(b, hi: float, lo: float) -> float:
    b = arb_backend._a(b)
    if not (b.is_finite() and np.isfinite(hi)):
        return np.nan
    x = arb(float(hi)) + arb(float(lo))
    r = max(b.upper() - x, x - b.lower(), arb(0))
    return _up(r)


def _up(r) -> float:
    """A finite nonnegative ball's upper bound as a float64, rounded up."""
    r = arb_backend._a(r).upper()
    man, exp = r.mid().man_exp()
    f = Fraction(int(man)) * Fraction(2) ** int(exp)
    d = float(f)
    return d if Fraction(d) >= f else float(np.nextafter(d, np.inf))


class Enclosure:
    """The rigorous radii of one run, computed lazily for the rows that need them and cached:
    ``enc(rows) -> (len(rows), K)`` (NaN: unbounded). ``compare`` calls it only for samples
    with an entry beyond the fast allowance.

    Arguments:
        radii_of: rows (indices into the compared samples) -> (len(rows), K) radii.
        singular_of: rows -> ((len(rows), K) bool, row position -> reason): the entries whose
            enclosure reaches a singular point (``rigorous.singular``; None: not asked).
    """

    def __init__(self, radii_of: Callable[[np.ndarray], np.ndarray],
                 singular_of: Callable | None = None) -> None:
        self._radii_of = radii_of
        self._singular_of = singular_of
        self._cache: dict[int, np.ndarray] = {}
        self.seconds = 0.0
        self.rows_computed = 0

    def __call__(self, rows: np.ndarray, columns: slice | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=int)
        todo = [int(r) for r in rows if int(r) not in self._cache]
        if todo:
            t0 = time.perf_counter()
            got = self._radii_of(np.array(todo))
            for r, v in zip(todo, got):
                self._cache[r] = v
            self.seconds += time.perf_counter() - t0
            self.rows_computed += len(todo)
        out = np.array([self._cache[int(r)] for r in rows]).reshape(len(rows), -1)
        return out if columns is None else out[:, columns]

    def singular(self, rows: np.ndarray) -> tuple[np.ndarray, dict]:
        """The entries of these samples whose rounded enclosure reaches a singular point, and
        why (``rigorous.singular.singular_entries``); nothing reached without ``singular_of``."""
        rows = np.asarray(rows, dtype=int)
        if self._singular_of is None or not rows.size:
            return np.zeros((len(rows), 0), bool), {}
        t0 = time.perf_counter()
        try:
            return self._singular_of(rows)
        finally:
            self.seconds += time.perf_counter() - t0

    def columns(self, columns: slice) -> Callable[[np.ndarray], np.ndarray]:
        """The same cache, restricted to a column slice (one chunk of compare_compact)."""
        return lambda rows: self(rows, columns)


def union(*radii: np.ndarray) -> np.ndarray:
    """The radius of the union of enclosures about one exact value: the largest. As the
    allowance of user code (``np.fmax`` of the two bounds), an unbounded part (NaN: its
    composition overflows or leaves its domain in the dtype, so it computes inf or NaN there,
    not a finite value) does not widen the others; NaN only where every part is unbounded."""
    return functools.reduce(np.fmax, radii)
