"""DD_OPS: the double-double array-ops table of the tensor oracle (contract: ARRAYOPS.md).

~106-bit values on pairs of float64 numpy arrays. Elementwise functions as documented in
`ddmath`, `dderf`, `ddtrig`, `ddinverse` (~1e-31 relative), sums by pairwise DD addition (error <=
3u**2 log2(n) sum|x|), contractions by Ozaki's error-free split onto float64 BLAS (`ozaki`), max/comparisons/selection
exact. Not rigorous by itself: `certify` checks DD results against ARB balls.

Example:
    >>> import numpy as np, sympy as sp
    >>> x = sp.Symbol("x")
    >>> y = DD_OPS.map(sp.exp(x) - 1, {x: DD_OPS.asarray(np.array([1e-20]))})
    >>> bool(DD_OPS.to_float64(y)[0][0] == 1e-20)
    True
"""

from __future__ import annotations

import copy
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from .. import functions
from ..errors import SymgradError
from ..parallel import serial
from . import dderf as E
from . import ddmath as M
from . import ddinverse as I
from . import ddtrig as T
from .contract import axes as _axes
from .contract import einsum as _einsum
from .dd import DD, add, div, from_fraction, mul, two_sum, where
from .ddkernels import dd_add, dd_div, dd_mul
from .ddsum import dd_sum
from .ozaki import OzakiConfig, dd_matmul
from .selection import apart, select
from .underflow import in_zone, ran_out
from .walk import Kernels, evaluate

_CONST_PREC = 300  # bits for evaluating symbolic constants (pi, sqrt(2/pi), ...) before rounding


@serial  # mpmath's precision is the process's
def sympy_to_fraction(c: sp.Expr) -> Fraction | float:
    """An exact Fraction for a sympy rational; else the value to 300 bits; inf/nan as floats."""
    c = sp.sympify(c)
    if c.is_Rational:
        return Fraction(int(c.p), int(c.q))
    if c in (sp.oo, -sp.oo, sp.nan, sp.zoo):
        return float({sp.oo: np.inf, -sp.oo: -np.inf}.get(c, np.nan))
    v = sp.N(c, _CONST_PREC // 3 + 10)
    if not v.is_real or not v.is_Float:
        raise SymgradError(f"constant {c} does not evaluate to a real number (got {v})")
    with mpmath.workprec(_CONST_PREC):  # mpf() rounds to the context's precision (53 bits
        return M.mpf_to_fraction(mpmath.mpf(v._mpf_))  # by default): sqrt(2/pi) lost its DD half


_CONSTANTS: dict = {}  # sympy constant -> its value (``sympy_to_fraction``): a map's constants
#                       are converted once per process, not once per evaluation (~3% of a run)


def dd_constant(c: sp.Expr, shape: tuple = ()) -> DD:
    v = _CONSTANTS.get(c)
    if v is None:
        v = sympy_to_fraction(c)
        if len(_CONSTANTS) >= 1 << 14:
            _CONSTANTS.clear()
        _CONSTANTS[c] = v
    if isinstance(v, float):
        return DD(np.full(shape, v))
    return from_fraction(v, shape)


def _nanmax_fold(is_max: bool, *xs: DD) -> DD:
    """Max/Min of DD arrays, exact, NaN if any argument is NaN (as numpy)."""
    out = xs[0]
    nan = np.isnan(out.hi)
    for y in xs[1:]:
        take = (y > out) if is_max else (y < out)
        out = where(take, y, out)
        nan = nan | np.isnan(y.hi)
    return DD(np.where(nan, np.nan, out.hi), np.where(nan, 0.0, out.lo))


def _sign(x: DD) -> DD:
    return DD(np.sign(x.hi))


def _heaviside(x: DD, h0: DD | None = None) -> DD:
    h0v = h0 if h0 is not None else DD(np.full(x.shape, 0.5))
    v = where(x.hi > 0, DD(np.ones(x.shape)), where(x.hi < 0, DD(np.zeros(x.shape)), h0v))
    return DD(np.where(np.isnan(x.hi), np.nan, v.hi), v.lo)


def _nearest(x: DD) -> DD:
    """floor(x + 1/2) (``functions.nearest``): floor of the DD sum, its low part's floor
    added where the high part is an integer."""
    y = add(x, DD(np.full(x.shape, 0.5)))
    f = np.floor(y.hi)
    hi, lo = two_sum(f, np.where(f == y.hi, np.floor(y.lo), 0.0))
    odd = ~np.isfinite(y.hi)  # inf, nan: as they are
    return DD(np.where(odd, y.hi, hi), np.where(odd, 0.0, lo))


# the implementations the rows of symgrad.functions name (their ``walk`` spelling)
_NAMESPACE = {
    "exp": M.exp, "log": M.log, "tanh": M.tanh, "erf": E.erf, "erfc": E.erfc, "abs": abs,
    "log1p": M.log1p, "expm1": M.expm1, "sign": _sign, "heaviside": _heaviside,
    "nearest": _nearest,
    "sin": T.sin, "cos": T.cos, "tan": T.tan,
    "asin": I.asin, "acos": I.acos, "atan": I.atan, "sinh": I.sinh, "cosh": I.cosh,
    "asinh": I.asinh,
    "max": lambda *xs: _nanmax_fold(True, *xs), "min": lambda *xs: _nanmax_fold(False, *xs),
    "diracdelta": lambda x, *a: DD(np.where(np.isnan(x.hi), np.nan, 0.0)),  # a.e. derivative of H
}


class DDKernels(Kernels):
    name = "DD"
    threaded = True  # numpy on float64 arrays; its few mpmath calls hold ``parallel.serial``
    functions = functions.walk_table(_NAMESPACE)

    def constant(self, value, shape):
        return dd_constant(value, shape)

    # + * / of one shape (the walk's blocks) by ``ddkernels``' one-pass kernels: dd's bits
    def add(self, a, b): return dd_add(a, b)
    def neg(self, a): return -a
    def mul(self, a, b): return dd_mul(a, b)
    def div(self, a, b): return dd_div(a, b)
    def pow_int(self, a, n): return M.ipow(a, n)
    def pow_rational(self, a, p, q): return M.pow_rational(a, p, q)
    def pow_general(self, a, b): return M.rpow(a, b)

    def compare(self, op, a, b):
        m = {"lt": lambda: a < b, "le": lambda: a <= b, "gt": lambda: a > b, "ge": lambda: a >= b,
             "eq": lambda: a.eq(b), "ne": lambda: ~a.eq(b)}[op]()
        return m, ~m  # exact comparisons: always decided

    def where(self, mask, a, b): return where(mask, a, b)
    def nan_like(self, shape): return DD(np.full(shape, np.nan))
    def isnan(self, a): return np.isnan(a.hi)
    def shape(self, a): return a.shape
    def broadcast_to(self, a, shape): return a.map_arrays(lambda v: np.broadcast_to(v, shape))
    def reshape(self, a, shape): return a.map_arrays(lambda v: np.reshape(v, shape))
    def concatenate(self, parts): return DD(np.concatenate([p.hi for p in parts]), np.concatenate([p.lo for p in parts]))

    def assemble(self, parts, size: int) -> DD:
        """``concatenate`` written part by part into one output (no list of parts beside it:
        a map over a GPT's 1024 x 50257 logits held 0.8 GB of parts and 0.8 GB of result)."""
        hi, lo, at = np.empty(size), np.empty(size), 0
        for p in parts:
            m = p.hi.size
            hi[at:at + m], lo[at:at + m] = p.hi.reshape(-1), p.lo.reshape(-1)
            at += m
        return DD(hi, lo)
    def sigmoid(self, a): return M.sigmoid(a)
    def sech2(self, a): return M.sech2(a)
    def erfc(self, a): return E.erfc(a)
    def expm1(self, a): return M.expm1(a)
    def log1p(self, a): return M.log1p(a)
    def seen(self, r): return r  # a result the watch looks at (``WatchKernels``)


class WatchKernels(DDKernels):
    """``DDKernels`` that note (``touched``) whether a product, quotient, power or function
    result fell in the underflow zone (0 < |v| < 2^-969, ``symgrad.precise.underflow``), where
    a DD result is right only to a few 2^-1074 *absolute*: a map's intermediate w x = 1e-320 of
    inputs 1e-160 makes log(w x) wrong by 5e-4; or whether a product, quotient or power of
    finite nonzero operands ran out of float64's exponent range (0 or +-inf: w**2 at w =
    1e-200 is 0 in DD, so sqrt(w**2 + v**2)'s d/dw = w/0 = inf where the exact value is
    0.7071: ``ran_out``). Sums are error-free there and not watched; one test per result until
    the first hit."""

    def __init__(self):
        self.touched = False
        self.functions = {c: (lambda k, *a, f=f: k.seen(f(k, *a)))
                          for c, f in DDKernels.functions.items()}

    def seen(self, r, *operands):
        if not self.touched and isinstance(r, DD) and r.hi.size and (
                bool(in_zone(r.hi).any()) or bool(operands) and ran_out(r, *operands)):
            self.touched = True  # only ever set: a map's blocks may be seen on several threads
        return r

    def mul(self, a, b): return self.seen(mul(a, b), a, b)
    def div(self, a, b): return self.seen(div(a, b), a, b)
    def pow_int(self, a, n): return self.seen(M.ipow(a, n), a)
    def pow_rational(self, a, p, q): return self.seen(M.pow_rational(a, p, q), a)
    def pow_general(self, a, b): return self.seen(M.rpow(a, b), a, b)
    def sigmoid(self, a): return self.seen(M.sigmoid(a))
    def sech2(self, a): return self.seen(M.sech2(a))
    def erfc(self, a): return self.seen(E.erfc(a))
    def expm1(self, a): return self.seen(M.expm1(a))
    def log1p(self, a): return self.seen(M.log1p(a))


class DDOps:
    """The double-double table (see module docstring and ARRAYOPS.md)."""

    name = "DD"

    def __init__(self, matmul: OzakiConfig = OzakiConfig(), samples: int = 1):
        self.kernels = DDKernels()
        self.matmul_config = matmul
        self.samples = samples

    def per_sample(self, samples: int) -> "DDOps":
        """This table for ``samples`` samples walked at once (the interpreter's leading batch
        axis): the same bits as one sample at a time. Every elementwise op, sum, max and layout
        op acts on each entry apart already; a general product's Ozaki split (its
        equilibration scales) would see the other samples, so each sample's part of the batch
        is multiplied apart (a selection is exact whatever the batch)."""
        out = copy.copy(self)  # the same table (a subclass too: ``DeviceDDOps``), its kernels
        out.samples = samples
        return out

    def watching(self) -> "DDOps":
        """This table with fresh ``WatchKernels``: after a walk, ``touched`` says whether any
        product, quotient, function or contraction result fell in the underflow zone."""
        out = copy.copy(self)  # the same table (a subclass's overrides too), its own kernels
        out.kernels = WatchKernels()
        return out

    @property
    def touched(self) -> bool:
        return bool(getattr(self.kernels, "touched", False))

    # -- conversion ------------------------------------------------------------------------------
    def asarray(self, x) -> DD:
        if isinstance(x, DD):
            return x
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise SymgradError(f"DD asarray: dtype {a.dtype} is not numeric; pass float64 or integer arrays")
        if a.dtype.kind in "iu" and a.size and np.abs(a).max() > 2**53:
            raise SymgradError("DD asarray: integers beyond 2**53 are not exact in float64")
        return DD(np.asarray(a, dtype=np.float64))  # no copy of float64 data; lo is a zero view

    def constant(self, c, shape=()) -> DD:
        return dd_constant(c, tuple(shape))

    def to_float64(self, x: DD) -> tuple[np.ndarray, np.ndarray]:
        return x.hi, x.lo

    def radius(self, x: DD) -> None:
        return None

    def shape(self, x: DD) -> tuple:
        return x.shape

    # -- elementwise -----------------------------------------------------------------------------
    def map(self, expr, args: dict) -> DD:
        return evaluate(expr, {s: self.asarray(v) for s, v in args.items()}, self.kernels)

    def where(self, mask, a: DD, b: DD) -> DD:
        return where(np.asarray(mask, dtype=bool), self.asarray(a), self.asarray(b))

    # -- reductions and contractions -------------------------------------------------------------
    def sum(self, x: DD, axis=None, keepdims: bool = False) -> DD:
        return dd_sum(x, _axes(axis, x.ndim), keepdims)

    def amax(self, x: DD, axis=None, keepdims: bool = False) -> DD:
        axes = _axes(axis, x.ndim)
        m_hi = np.max(x.hi, axis=axes, keepdims=True)
        with np.errstate(invalid="ignore"):
            lo = np.where(x.hi == m_hi, x.lo, -np.inf)
        m_lo = np.max(lo, axis=axes, keepdims=True)
        m_lo = np.where(np.isfinite(m_hi), m_lo, 0.0)
        out = DD(m_hi, m_lo)
        return out if keepdims else out.map_arrays(lambda v: np.squeeze(v, axis=axes))

    def einsum(self, spec: str, *operands: DD) -> DD:
        return self.kernels.seen(_einsum(self, spec, [self.asarray(o) for o in operands]))

    def apart(self, walks: int) -> "DDOps":
        """This table for ``walks`` walks of one sample stacked on the batch axis
        (``interpret.evaluate_walks``): each walk's product as the walk alone computes it (the
        selection decided walk by walk, ``selection.apart``); every other op acts on each entry
        apart already."""
        out = copy.copy(self)  # the same table (a subclass too), its kernels
        out.walks = walks
        return out

    walks = 1  # walks stacked on the batch axis (``apart``)

    def matmul3(self, a: DD, b: DD) -> DD:
        if self.walks > 1:
            return apart(a, b, self.walks, self._matmul3)
        return self._matmul3(a, b)

    def _matmul3(self, a: DD, b: DD) -> DD:
        picked = select(a, b)
        if picked is not None:
            return picked
        bt = a.shape[0]
        if self.samples <= 1 or bt % self.samples:
            return self.product(a, b)
        per = bt // self.samples  # sample-major: the interpreter's batch letter comes first
        parts = [self.product(a[i:i + per], b[i:i + per]) for i in range(0, bt, per)]
        return DD(np.concatenate([c.hi for c in parts]), np.concatenate([c.lo for c in parts]))

    def product(self, a: DD, b: DD) -> DD:
        """A general (Bt, M, K) @ (Bt, K, N) product: Ozaki's on numpy's BLAS (a subclass may
        run it elsewhere: ``symgrad.precise.device_ops``)."""
        return dd_matmul(a, b, self.matmul_config)

    def diagonal(self, x: DD, letters: str, unique: str) -> DD:
        return x.map_arrays(lambda v: np.einsum(f"{letters}->{unique}", v))

    # -- structure -------------------------------------------------------------------------------
    def take(self, x: DD, idx, axis: int) -> DD:
        idx = np.asarray(idx)
        if idx.size and (idx.min() < -x.shape[axis] or idx.max() >= x.shape[axis]):
            raise SymgradError(f"DD take: index out of range for axis {axis} of size {x.shape[axis]}")
        return x.map_arrays(lambda v: np.take(v, idx, axis=axis))

    def scatter_add(self, x: DD, idx, axis: int, size: int) -> DD:
        """Adjoint of take: out[..., i, ...] = sum of x's slices whose index is i (DD accumulation)."""
        idx = np.asarray(idx)
        nd_idx = idx.ndim
        axis = axis % (x.ndim - nd_idx + 1)
        flat_idx = idx.reshape(-1)
        # bring the index axes of x to the front, flattened
        perm = tuple(range(axis, axis + nd_idx)) + tuple(i for i in range(x.ndim) if not axis <= i < axis + nd_idx)
        xs = self.transpose(x, perm)
        tail = xs.shape[nd_idx:]
        xs = xs.map_arrays(lambda v: v.reshape((flat_idx.size,) + tail))
        flat_idx = np.where(flat_idx < 0, flat_idx + size, flat_idx)
        if flat_idx.size and (flat_idx.min() < 0 or flat_idx.max() >= size):
            raise SymgradError(f"DD scatter_add: index out of range for size {size}")
        out = DD(np.zeros((size,) + tail), np.zeros((size,) + tail))
        order = np.argsort(flat_idx, kind="stable")
        sorted_idx = flat_idx[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_idx)) + 1] if sorted_idx.size else np.array([], int)
        rank = np.arange(sorted_idx.size) - np.repeat(starts, np.diff(np.r_[starts, sorted_idx.size]))
        for r in range(int(rank.max()) + 1 if rank.size else 0):
            sel = order[rank == r]
            tgt = flat_idx[sel]
            s = add(DD(out.hi[tgt], out.lo[tgt]), xs[sel])
            out.hi[tgt] = s.hi
            out.lo[tgt] = s.lo
        return out.map_arrays(lambda v: np.moveaxis(v, 0, axis))

    def reshape(self, x: DD, shape) -> DD:
        return x.map_arrays(lambda v: np.reshape(v, shape))

    def transpose(self, x: DD, perm) -> DD:
        return x.map_arrays(lambda v: np.transpose(v, perm))

    def broadcast_to(self, x: DD, shape) -> DD:
        return x.map_arrays(lambda v: np.broadcast_to(v, tuple(shape)))


DD_OPS = DDOps()
