"""ARB_OPS: python-flint `arb` balls as an array-ops table — rigorous, slow; the certification re-check.

An array is a numpy object array of `flint.arb`; every operation runs at the table's precision
(bits) inside `flint.ctx.workprec`, which restores the global precision afterwards. Every result
ball contains the exact value of the operation on the exact values its input balls contain:
`radius(x)` is a proof. Matrix products go through `flint.arb_mat` (fast, rigorous).
Conditions (Piecewise, Heaviside, Max...) are decided only when certain; where a ball straddles a
boundary, both branches are possible and the result is the union of the branches' balls.

Example:
    >>> import numpy as np, sympy as sp
    >>> x = sp.Symbol("x")
    >>> ops = ARB_OPS.at(128)
    >>> y = ops.map(sp.exp(x), {x: ops.asarray(np.array([1.0]))})
    >>> bool(ops.radius(y)[0] < 1e-35)
    True
"""

from __future__ import annotations

from functools import reduce
from math import prod
from operator import methodcaller

import flint
import numpy as np
import sympy as sp
from flint import arb, arb_mat, ctx

from .. import functions
from ..errors import SymgradError
from .arb_select import place, selection, times_one
from .contract import axes as _axes
from .contract import einsum as _einsum
from .rational import EXACT_PREC, arb_fraction, round_up, split_fraction
from .walk import Kernels, evaluate

DEFAULT_PREC = 128  # bits: exact products of float64 data, ~1e-38 relative on elementwise functions


def _ufunc(f, nin: int = 1):
    return np.frompyfunc(f, nin, 1)


_to_arb = _ufunc(lambda v: arb(float(v)))
_sech2 = _ufunc(lambda v: v.sech() ** 2)
_sigmoid = _ufunc(lambda v: 1 / (1 + (-v).exp()))
_max2 = _ufunc(lambda a, b: a.max(b), 2)
_min2 = _ufunc(lambda a, b: a.min(b), 2)
_union = _ufunc(lambda a, b: a.union(b), 2)
_isnan = _ufunc(lambda v: v.is_nan(), 1)
_lt = _ufunc(lambda a, b: a < b, 2)
_le = _ufunc(lambda a, b: a <= b, 2)
_eq = _ufunc(lambda a, b: a == b, 2)
_ne = _ufunc(lambda a, b: a != b, 2)


def _log_real(v):
    """log with real semantics: -inf at exactly 0, NaN below."""
    if v.is_zero():
        return arb.neg_inf()
    return v.log()


def _pow_int(v, n: int):
    if n < 0 and v.is_zero():
        return arb.pos_inf()  # 1/(+0)**n, as float64 backends and DD give
    return v ** n


def _pow_general(v, e):
    """v**e for an exponent that is not an integer literal, as the scalar oracle takes it:
    real for v > 0; for v < 0 only where e is exactly an integer (``w**p`` at p = 2, 3, as
    torch computes it); at v = 0: 0 for e > 0, 1 for e = 0, undefined below (1/0)."""
    if v > 0:
        return (e * v.log()).exp()
    if v.is_zero():
        return arb(0) if e > 0 else (arb(1) if e.is_zero() else arb.nan())
    if v < 0 and e.is_exact() and e.is_integer():
        return _pow_int(v, int(e.unique_fmpz()))
    return arb.nan()


def _heaviside(x, h0):
    if x.is_nan():
        return arb.nan()
    if x > 0:
        return arb(1)
    if x < 0:
        return arb(0)
    if x.is_zero():
        return h0
    return arb(0).union(arb(1)).union(h0)


def _bool(a) -> np.ndarray:
    return np.asarray(a, dtype=bool)


def arb_constant(c: sp.Expr) -> arb:
    """A ball containing a sympy constant, at the current precision (rationals, Floats: exact or
    correctly enclosed; pi, E, and expressions of them through the arb functions)."""
    c = sp.sympify(c)
    if c.is_Integer:
        return arb(flint.fmpz(int(c)))
    if c.is_Rational:
        return arb(flint.fmpq(int(c.p), int(c.q)))
    if c.is_Float:
        sign, man, exp, _ = c._mpf_
        v = arb(flint.fmpz(int(man))) * arb(2) ** int(exp)
        return -v if sign else v
    if c == sp.pi:
        return arb.pi()
    if c == sp.E:
        return arb(1).exp()
    if c in (sp.oo, -sp.oo, sp.zoo, sp.nan):
        return {sp.oo: arb.pos_inf(), -sp.oo: arb.neg_inf()}.get(c, arb.nan())
    if isinstance(c, sp.Add):
        return sum(map(arb_constant, c.args), arb(0))
    if isinstance(c, sp.Mul):
        return prod(map(arb_constant, c.args), start=arb(1))
    if isinstance(c, sp.Pow):
        b = arb_constant(c.base)
        if c.exp.is_Integer:
            return _pow_int(b, int(c.exp))
        if c.exp == sp.S.Half:
            return b.sqrt()
        if c.exp.is_Rational and c.exp.q > 0:
            return b.root(int(c.exp.q)) ** int(c.exp.p)
        return (arb_constant(c.exp) * _log_real(b)).exp()
    row = functions.find(c.func)  # the ball implementation its row names (the walk's)
    if row is not None and row.walk is not None:
        return _NAMESPACE[row.walk](*[arb_constant(a) for a in c.args])
    raise SymgradError(f"ARB constant: {c} ({c.func}) cannot be enclosed: "
                       f"{functions.lacking(c.func, 'ARB')}")


# the implementations the rows of symgrad.functions name (their ``walk`` spelling): arb's
# method of that name on each entry (asin, acos outside [-1, 1]: NaN, an indeterminate ball)
_NAMESPACE = {name: _ufunc(methodcaller(name)) for name in (
    "exp", "tanh", "erf", "erfc", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "asinh")} | {
    "log": _ufunc(_log_real), "abs": _ufunc(abs), "sign": _ufunc(methodcaller("sgn")),
    "max": lambda *xs: reduce(_max2, xs), "min": lambda *xs: reduce(_min2, xs),
    "nearest": _ufunc(lambda v: (v + 0.5).floor()),  # a ball across a half-integer: both
    "heaviside": lambda x, h0=None: _ufunc(_heaviside, 2)(x, h0 if h0 is not None else arb(0.5)),
    "diracdelta": lambda x, *a: _ufunc(lambda v: arb.nan() if v.is_nan() else arb(0))(x),
}


class ArbKernels(Kernels):
    name = "ARB"
    chunk = 1 << 40  # object arrays: no benefit from chunking
    functions = functions.walk_table(_NAMESPACE)

    def constant(self, value, shape):
        out = np.empty(shape, dtype=object)
        out[...] = arb_constant(value)
        return out

    def add(self, a, b): return a + b
    def neg(self, a): return -a
    def mul(self, a, b): return a * b
    def div(self, a, b): return a / b
    def pow_int(self, a, n): return _ufunc(lambda v: _pow_int(v, n))(a)

    def pow_rational(self, a, p, q):
        def f(v):
            if v.is_zero():
                return arb(0) if p > 0 else arb.pos_inf()
            if v < 0:
                return arb.nan()
            return _pow_int(v.sqrt() if q == 2 else v.root(q), p)
        return _ufunc(f)(a)

    def pow_general(self, a, b): return _ufunc(_pow_general, 2)(a, b)

    def compare(self, op, a, b):
        if op == "lt": return _bool(_lt(a, b)), _bool(_le(b, a))
        if op == "le": return _bool(_le(a, b)), _bool(_lt(b, a))
        if op == "gt": return _bool(_lt(b, a)), _bool(_le(a, b))
        if op == "ge": return _bool(_le(b, a)), _bool(_lt(a, b))
        if op == "eq": return _bool(_eq(a, b)), _bool(_ne(a, b))
        return _bool(_ne(a, b)), _bool(_eq(a, b))

    def where(self, mask, a, b): return np.where(mask, a, b)
    def union(self, a, b): return _union(a, b)
    def nan_like(self, shape): return self.constant(sp.nan, shape)
    def isnan(self, a): return _bool(_isnan(a))
    def shape(self, a): return np.shape(a)
    def broadcast_to(self, a, shape): return np.broadcast_to(a, shape)
    def reshape(self, a, shape): return np.reshape(a, shape)
    def concatenate(self, parts): return np.concatenate(parts)
    def sigmoid(self, a): return _sigmoid(a)
    def sech2(self, a): return _sech2(a)
    def erfc(self, a): return _NAMESPACE["erfc"](a)
    def expm1(self, a): return _NAMESPACE["expm1"](a)
    def log1p(self, a): return _NAMESPACE["log1p"](a)


class ArbOps:
    """The arb-ball table (see module docstring and ARRAYOPS.md) at `prec` bits."""

    name = "ARB"

    def __init__(self, prec: int = DEFAULT_PREC):
        if prec < 53:
            raise SymgradError(f"ARB precision {prec} bits is below float64's 53; use prec >= 53")
        self.prec = int(prec)
        self.kernels = ArbKernels()

    def at(self, prec: int) -> "ArbOps":
        """The same table at another precision (bits)."""
        return ArbOps(prec)

    # -- conversion ------------------------------------------------------------------------------
    def asarray(self, x) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype == object:
            return a
        if a.dtype.kind not in "biuf":
            raise SymgradError(f"ARB asarray: dtype {a.dtype} is not numeric; pass float64 or integer arrays")
        with ctx.workprec(self.prec):
            out = _to_arb(a.astype(np.float64))
        return np.asarray(out, dtype=object).reshape(a.shape)

    def from_dd(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Exact balls of double-double values (hi + lo); where every lo is +0 (float64 data:
        the spot check's weight rows) the balls of hi alone, the same exact balls without a
        second conversion and an addition per entry (arb has no signed zero: -0 alike)."""
        hi, lo = np.asarray(hi, float), np.asarray(lo, float)
        with ctx.workprec(EXACT_PREC):
            if lo.size and not lo.any():
                out = _to_arb(hi)
            else:
                out = _ufunc(lambda h, l: arb(float(h)) + arb(float(l)), 2)(hi, lo)
        return np.asarray(out, dtype=object).reshape(np.shape(hi))

    def constant(self, c, shape=()) -> np.ndarray:
        with ctx.workprec(self.prec):
            return self.kernels.constant(c, tuple(shape))

    def to_float64(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(midpoint rounded to float64, (mid - hi) rounded to float64); NaN where not finite."""
        hi = np.empty(np.shape(x))
        lo = np.empty(np.shape(x))
        for idx, v in np.ndenumerate(np.asarray(x, dtype=object)):
            if not v.is_finite():
                hi[idx], lo[idx] = np.nan, 0.0
            else:
                hi[idx], lo[idx] = split_fraction(arb_fraction(v.mid()))
        return hi, lo

    def radius(self, x) -> np.ndarray:
        """Each ball's radius rounded up to float64 (inf where the ball is not finite)."""
        r = np.empty(np.shape(x))
        for idx, v in np.ndenumerate(np.asarray(x, dtype=object)):
            if not v.is_finite():
                r[idx] = np.inf
                continue
            r[idx] = round_up(arb_fraction(v.rad()))
        return r

    def shape(self, x) -> tuple:
        return np.shape(x)

    # -- elementwise -----------------------------------------------------------------------------
    def map(self, expr, args: dict) -> np.ndarray:
        with ctx.workprec(self.prec):
            out = evaluate(expr, {s: self.asarray(v) for s, v in args.items()}, self.kernels)
        return np.asarray(out, dtype=object)

    def where(self, mask, a, b) -> np.ndarray:
        return np.where(np.asarray(mask, dtype=bool), self.asarray(a), self.asarray(b))

    # -- reductions and contractions -------------------------------------------------------------
    def sum(self, x, axis=None, keepdims: bool = False) -> np.ndarray:
        axes = _axes(axis, np.ndim(x))
        with ctx.workprec(self.prec):
            zero = arb(0)
            out = np.add.reduce(np.asarray(x, dtype=object), axis=axes, keepdims=keepdims, initial=zero)
        return np.asarray(out, dtype=object)

    def amax(self, x, axis=None, keepdims: bool = False) -> np.ndarray:
        axes = _axes(axis, np.ndim(x))
        x = np.asarray(x, dtype=object)
        rest = [i for i in range(x.ndim) if i not in axes]
        moved = np.transpose(x, axes + tuple(rest)).reshape((-1,) + tuple(x.shape[i] for i in rest))
        with ctx.workprec(self.prec):
            out = reduce(_max2, moved)
        out = np.asarray(out, dtype=object)
        if keepdims:
            out = np.expand_dims(out, axes)
        return out

    def einsum(self, spec: str, *operands) -> np.ndarray:
        ops = [self.asarray(o) for o in operands]
        with ctx.workprec(self.prec):
            picked = selection(spec, ops)
            if picked is not None:  # a 0/1 selector: the chosen balls (``selection``)
                return place(times_one(picked[0]), *picked[1:])
        return _einsum(self, spec, ops)

    def matmul3(self, a, b) -> np.ndarray:
        bt, m, k = a.shape
        n = b.shape[2]
        out = np.empty((bt, m, n), dtype=object)
        with ctx.workprec(self.prec):
            for i in range(bt):
                if k == 0:
                    out[i] = arb(0)
                    continue
                p = arb_mat(a[i].tolist()) * arb_mat(b[i].tolist())
                out[i] = np.array(p.entries(), dtype=object).reshape(m, n)
        return out

    def diagonal(self, x, letters: str, unique: str) -> np.ndarray:
        idx = np.indices(tuple(x.shape[letters.index(c)] for c in unique))
        sel = tuple(idx[unique.index(c)] for c in letters)
        return np.asarray(x, dtype=object)[sel]

    # -- structure -------------------------------------------------------------------------------
    def take(self, x, idx, axis: int) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.size and (idx.min() < -x.shape[axis] or idx.max() >= x.shape[axis]):
            raise SymgradError(f"ARB take: index out of range for axis {axis} of size {x.shape[axis]}")
        return np.take(x, idx, axis=axis)

    def scatter_add(self, x, idx, axis: int, size: int) -> np.ndarray:
        idx = np.asarray(idx)
        nd_idx = idx.ndim
        axis = axis % (np.ndim(x) - nd_idx + 1)
        perm = tuple(range(axis, axis + nd_idx)) + tuple(i for i in range(np.ndim(x)) if not axis <= i < axis + nd_idx)
        xs = np.transpose(x, perm)
        tail = xs.shape[nd_idx:]
        xs = xs.reshape((idx.size,) + tail)
        flat = idx.reshape(-1)
        flat = np.where(flat < 0, flat + size, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= size):
            raise SymgradError(f"ARB scatter_add: index out of range for size {size}")
        with ctx.workprec(self.prec):
            out = self.kernels.constant(sp.S.Zero, (size,) + tail)
            np.add.at(out, flat, xs)
        return np.moveaxis(out, 0, axis)

    def reshape(self, x, shape) -> np.ndarray:
        return np.reshape(x, shape)

    def transpose(self, x, perm) -> np.ndarray:
        return np.transpose(x, perm)

    def broadcast_to(self, x, shape) -> np.ndarray:
        return np.broadcast_to(x, tuple(shape))


ARB_OPS = ArbOps()

