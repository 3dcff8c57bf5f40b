"""Elementwise evaluation of a sympy expression on high-precision arrays: one tree walk, per-function tables.

The walk is shared by the DD and the ARB tables; each supplies a `Kernels` object (arithmetic,
comparisons, selection and a dict sympy function -> implementation). Cancellation-prone shapes
the models actually contain are evaluated in a stable form (a row each in `_ADD_REWRITES`):

    1 + tanh(u) -> 2 sigmoid(2u)      1 - tanh(u) -> 2 sigmoid(-2u)     1 - tanh(u)**2 -> sech(u)**2
    1 + erf(u)  -> erfc(-u)           1 - erf(u)  -> erfc(u)            exp(u) - 1     -> expm1(u)
    log(1 + u)  -> log1p(u)

(all exact identities: the value is unchanged, only the rounding is). Piecewise evaluates every
branch on all entries (with floating-point warnings silenced) and selects by exact comparisons.

Example:
    >>> import numpy as np, sympy as sp
    >>> from symgrad.precise import DD_OPS
    >>> x = sp.Symbol("x")
    >>> y = DD_OPS.map(sp.log(1 + sp.exp(-x)), {x: DD_OPS.asarray(np.array([200.0]))})
    >>> abs(float(y.hi[0]) / 1.3838965267367376e-87 - 1) < 1e-15
    True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sympy as sp

from .. import functions
from ..errors import SymgradError
from ..freesyms import free_symbols
from ..parallel import ordered

_REL_OPS = {sp.StrictLessThan: "lt", sp.LessThan: "le", sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge",
            sp.Equality: "eq", sp.Unequality: "ne"}


class Kernels:
    """What a high-precision array type provides to the walk (subclassed by DD and ARB)."""

    name = "?"
    functions: dict[Any, Callable] = {}  # sympy function class -> f(kernels, *evaluated args)
    chunk = 1 << 15  # entries per chunk of a large map (cache-sized intermediates)
    threaded = False  # a large map's chunks may run on ``symgrad.parallel``'s threads: its
    #                   arithmetic is numpy's on float64 arrays (not ARB's objects)

    def constant(self, value: sp.Expr, shape: tuple) -> Any: raise NotImplementedError
    def add(self, a, b): raise NotImplementedError
    def neg(self, a): raise NotImplementedError
    def mul(self, a, b): raise NotImplementedError
    def div(self, a, b): raise NotImplementedError
    def pow_int(self, a, n: int): raise NotImplementedError
    def pow_rational(self, a, p: int, q: int): raise NotImplementedError
    def pow_general(self, a, b): raise NotImplementedError
    def compare(self, op: str, a, b) -> tuple[np.ndarray, np.ndarray]:
        """(certainly true, certainly false) masks of `a op b`."""
        raise NotImplementedError
    def where(self, mask: np.ndarray, a, b): raise NotImplementedError
    def union(self, a, b): raise NotImplementedError  # an enclosure of both (ARB); unused by exact types
    def nan_like(self, shape: tuple): raise NotImplementedError
    def isnan(self, a) -> np.ndarray: raise NotImplementedError
    def shape(self, a) -> tuple: raise NotImplementedError
    def reshape(self, a, shape: tuple): raise NotImplementedError
    def concatenate(self, parts: list): raise NotImplementedError
    def assemble(self, parts, size: int):
        """The flat array of ``size`` entries made of ``parts`` (an iterable of flat arrays, in
        order); a table may fill one output as they come instead of holding them all."""
        return self.concatenate(list(parts))
    # stable forms used by the rewrites
    def sigmoid(self, a): raise NotImplementedError
    def sech2(self, a): raise NotImplementedError
    def erfc(self, a): raise NotImplementedError
    def expm1(self, a): raise NotImplementedError
    def log1p(self, a): raise NotImplementedError


def evaluate(expr: sp.Expr, args: dict, k: Kernels) -> Any:
    """The elementwise value of expr with args broadcast together (see module docstring).

    Arguments:
        expr: a sympy scalar expression of (some of) the symbols in args.
        args: symbol -> array of the kernels' type.
        k: the kernels of that type.
    Returns:
        an array of the kernels' type with the broadcast shape of args.
    """
    expr = sp.sympify(expr)
    missing = free_symbols(expr) - set(args)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise SymgradError(f"{k.name} map: no array given for symbol(s) {names} of {expr}; "
                           f"pass them in args")
    shapes = [k.shape(v) for v in args.values()]
    shape = np.broadcast_shapes(*shapes) if shapes else ()
    bargs = {s: _broadcast(k, v, shape) for s, v in args.items()}
    size = int(np.prod(shape))
    with np.errstate(all="ignore"):
        if size <= k.chunk:
            return _Walk(k, bargs, shape).value(expr)
        # cache-sized blocks, each intermediate in L2; a block of a broadcast argument is
        # copied alone (never the whole flattened argument: a GPT's (T, 1) softmax shift
        # broadcast over 1024 x 50257 logits would be 0.8 GB of double-double)
        # (the chunks are the same on any number of threads: ``symgrad.parallel``)
        def part(idx):
            sub = {s: v[idx] for s, v in bargs.items()}
            n = int(np.prod(k.shape(next(iter(sub.values())))))
            with np.errstate(all="ignore"):  # on a pool's thread too
                return _Walk(k, {s: k.reshape(v, (n,)) for s, v in sub.items()},
                             (n,)).value(expr)
        chunks = blocks(shape, k.chunk)
        parts = ordered(part, chunks) if k.threaded else map(part, chunks)
        return k.reshape(k.assemble(parts, size), shape)


def blocks(shape: tuple, chunk: int):
    """Index tuples of consecutive C-order blocks of ``shape`` of at most ``chunk`` entries
    (whole trailing axes where they fit, else slices of the last one), in order: their
    flattened values concatenated are the whole array's.

    >>> [tuple((s.start, s.stop) if isinstance(s, slice) else s for s in i)
    ...  for i in blocks((2, 5), 4)]
    [(0, (0, 4)), (0, (4, 5)), (1, (0, 4)), (1, (4, 5))]
    """
    j, inner = len(shape), 1  # axis j is sliced; the axes after it are whole
    while j > 0 and inner * shape[j - 1] <= chunk:
        j -= 1
        inner *= shape[j]
    if j == 0:
        yield (slice(None),) * len(shape)
        return
    j -= 1
    rows = max(1, chunk // inner)
    for prefix in np.ndindex(*shape[:j]):
        for r0 in range(0, shape[j], rows):
            yield prefix + (slice(r0, min(shape[j], r0 + rows)),)


def _broadcast(k: Kernels, v, shape):
    return v if k.shape(v) == shape else k.broadcast_to(v, shape)


def _closed(e: sp.Expr) -> bool:
    """Whether ``e`` has no free symbols (``freesyms``: sympy recomputes them on every read,
    once per subexpression per map evaluated)."""
    return not free_symbols(e)


class _Walk:
    def __init__(self, k: Kernels, args: dict, shape: tuple):
        self.k, self.args, self.shape = k, args, shape
        self.memo: dict = {}

    def value(self, e: sp.Basic):
        got = self.memo.get(e)
        if got is None:
            got = self._eval(e)
            self.memo[e] = got
        return got

    def _eval(self, e: sp.Basic):
        k = self.k
        if e in self.args:
            return self.args[e]
        if isinstance(e, sp.Expr) and _closed(e):
            if e.is_number and e.is_real is False:  # log(-1) = I*pi, sqrt(-1/2): sympy's
                return k.nan_like(self.shape)  # complex value of a constant undefined on the reals
            return k.constant(e, self.shape)
        if isinstance(e, sp.Symbol):
            raise SymgradError(f"{k.name} map: no array given for symbol {e}")
        if isinstance(e, sp.Add):
            return self._add(e)
        if isinstance(e, sp.Mul):
            return self._mul(e)
        if isinstance(e, sp.Pow):
            return self._pow(e)
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e)
        if isinstance(e, sp.log) and isinstance(e.args[0], sp.Add) and sp.S.One in e.args[0].args:
            return k.log1p(self.value(e.args[0] - 1))
        f = k.functions.get(type(e)) or k.functions.get(e.func)
        if f is None:
            raise SymgradError(f"{k.name} map: {e}: {functions.lacking(e.func, k.name)}")
        return f(k, *[self.value(a) for a in e.args])

    # -- arithmetic ------------------------------------------------------------------------------
    def _add(self, e: sp.Add):
        terms = list(e.args)
        out = None
        for rewrite in _ADD_REWRITES:
            hit = rewrite(self, terms)
            if hit is not None:
                val, terms = hit
                out = val if out is None else self.k.add(out, val)
        for t in terms:
            v = self.value(t)
            out = v if out is None else self.k.add(out, v)
        return out

    def _mul(self, e: sp.Mul):
        k = self.k
        num, den = [], []
        for f in e.args:
            if isinstance(f, sp.Pow) and f.exp.is_Integer and f.exp < 0:
                den.append(f.base ** (-f.exp))
            else:
                num.append(f)
        if num == [sp.S.NegativeOne] and den:
            num = []
            den_v = self._product(den)
            return k.neg(k.div(k.constant(sp.S.One, self.shape), den_v))
        out = self._product(num) if num else None
        if den:
            den_v = self._product(den)
            out = k.div(out if out is not None else k.constant(sp.S.One, self.shape), den_v)
        return out

    def _product(self, factors):
        k = self.k
        out = None
        for f in factors:
            if f == sp.S.NegativeOne:
                out = k.neg(out) if out is not None else k.constant(f, self.shape)
                continue
            v = self.value(f)
            out = v if out is None else k.mul(out, v)
        return out

    def _pow(self, e: sp.Pow):
        k = self.k
        base, ex = e.base, e.exp
        if base == sp.E:
            return k.functions[sp.exp](k, self.value(ex))
        b = self.value(base)
        if ex.is_Integer:
            return k.pow_int(b, int(ex))
        if ex.is_Rational:
            return k.pow_rational(b, int(ex.p), int(ex.q))
        return k.pow_general(b, self.value(ex))

    # -- piecewise and conditions ------------------------------------------------------------------
    def _piecewise(self, e: sp.Piecewise):
        k = self.k
        out = k.nan_like(self.shape)
        for val, cond in reversed(e.args):
            t, f = self._cond(cond)
            t, f = np.broadcast_to(t, self.shape), np.broadcast_to(f, self.shape)
            undecided = ~(t | f)
            if t.all():
                out = self.value(val)
                continue
            if not t.any() and not undecided.any():
                continue
            v = self.value(val)
            if undecided.any():  # balls straddling a condition's boundary: both branches are possible
                out = k.where(undecided, k.union(v, out), out)
            out = k.where(t, v, out)
        return out

    def _cond(self, c) -> tuple[np.ndarray, np.ndarray]:
        """(certainly true, certainly false) masks of a condition (DD: exact, complementary)."""
        shape = self.shape
        if c is sp.true or c == True:  # noqa: E712 (sympy booleans)
            return np.ones(shape, bool), np.zeros(shape, bool)
        if c is sp.false or c == False:  # noqa: E712
            return np.zeros(shape, bool), np.ones(shape, bool)
        if type(c) in _REL_OPS:
            t, f = self.k.compare(_REL_OPS[type(c)], self.value(c.lhs), self.value(c.rhs))
            return np.broadcast_to(t, shape), np.broadcast_to(f, shape)
        parts = [self._cond(a) for a in c.args]
        ts = [p[0] for p in parts]
        fs = [p[1] for p in parts]
        if isinstance(c, sp.And):
            return np.logical_and.reduce(ts), np.logical_or.reduce(fs)
        if isinstance(c, sp.Or):
            return np.logical_or.reduce(ts), np.logical_and.reduce(fs)
        if isinstance(c, sp.Not):
            return fs[0], ts[0]
        if isinstance(c, sp.Xor):
            decided = np.logical_and.reduce([t | f for t, f in parts])
            x = np.logical_xor.reduce(ts)
            return x & decided, ~x & decided
        if isinstance(c, sp.ITE):
            (at, af), (bt, bf), (ct, cf) = parts
            return (at & bt) | (af & ct) | (bt & ct), (at & bf) | (af & cf) | (bf & cf)
        raise SymgradError(f"{self.k.name} map: condition {c} ({type(c).__name__}) is not supported "
                           f"in a Piecewise (use Eq/Ne/Lt/Le/Gt/Ge/And/Or/Not/ITE of the arguments)")


# ---------------------------------------------------------------------------------- rewrites
def _split_one(terms, const):
    """(terms without the number `const`) if const is a term of the Add, else None."""
    for i, t in enumerate(terms):
        if t == const:
            return terms[:i] + terms[i + 1:]
    return None


def _signed(t):
    """(sign, core) with t = sign * core for a term of the form core or -core."""
    if isinstance(t, sp.Mul) and len(t.args) == 2 and t.args[0] == sp.S.NegativeOne:
        return -1, t.args[1]
    return 1, t


def _one_plus(w: _Walk, terms):
    rest = _split_one(terms, sp.S.One)
    if rest is None:
        return None
    k = w.k
    for i, t in enumerate(rest):
        sgn, core = _signed(t)
        others = rest[:i] + rest[i + 1:]
        if isinstance(core, sp.tanh):  # 1 ± tanh(u) = 2 sigmoid(±2u)
            u = core.args[0]
            return k.mul(k.constant(sp.Integer(2), w.shape), k.sigmoid(w.value(2 * sgn * u))), others
        if isinstance(core, sp.erf):  # 1 + erf(u) = erfc(-u); 1 - erf(u) = erfc(u)
            u = core.args[0]
            return k.erfc(w.value(-sgn * u)), others
        if sgn < 0 and isinstance(core, sp.Pow) and core.exp == 2 and isinstance(core.base, sp.tanh):
            return k.sech2(w.value(core.base.args[0])), others
    return None


def _minus_one(w: _Walk, terms):
    rest = _split_one(terms, sp.S.NegativeOne)
    if rest is None:
        return None
    for i, t in enumerate(rest):
        if isinstance(t, sp.exp):
            return w.k.expm1(w.value(t.args[0])), rest[:i] + rest[i + 1:]
    return None


_ADD_REWRITES = (_one_plus, _minus_one)
