"""ARB balls that tell a proven "undefined" from a NaN that more bits may resolve.

A ball comes out NaN both where the exact value is undefined (log of an exactly negative
number, 0/0 at exact zeros) and where the precision was too low: log(1 - sigmoid(1000)) at 128
bits takes the log of a ball around 0 (1 - sigmoid(1000) = e^-1000 needs ~1450 bits). Only
the first is a domain error; the second is open (inconclusive) until enough bits resolve it.
``watched(prec, watch)`` is ``ARB_OPS.at(prec)`` whose every operation checks each NaN it
*creates* (from operands that are not NaN): it is proven undefined when the operation's rule
(``RULES``: the argument certainly outside the function's domain, or a divisor ball exactly 0,
as ``x - Max(0, x)`` at an exact x > 0 gives: fuzz draw 741) holds for the operand balls,
or when every operand is exact (radius 0: the operation is undefined at that exact point);
any other new NaN (a ball straddling a boundary), and any condition that balls other than
NaN leave undecided (a Piecewise may then take no branch: NaN), is counted unproven. ``DomainWatch.proven``: every NaN of the walk traces back to proven ones.
``tensor.views.rounded_zone`` raises the balls' precision while a NaN is unproven, and reads
"domain" only from a proven one (scripts/wolf_hunt.py --ops bce --seeds 2: 9 of 30 cases with
a false "domain" FAIL before, 0 now; the 3 FAILs left are torch's real BCELoss clamp).

Example:
    >>> import numpy as np, sympy as sp
    >>> x = sp.Symbol("x")
    >>> w = DomainWatch()
    >>> ops = watched(128, w)
    >>> _ = ops.map(sp.log(x), {x: ops.asarray(np.array([-1.0]))}); w.proven
    True
    >>> w = DomainWatch()
    >>> _ = watched(128, w).map(sp.log(x) * x, {x: ops.asarray(np.array([0.0]))}); w.n_proven
    1
    >>> w = DomainWatch()
    >>> ops = watched(128, w)
    >>> s = ops.map(1 - 1 / (1 + sp.exp(-x)), {x: ops.asarray(np.array([1000.0]))})
    >>> _ = ops.map(sp.log(x), {x: s}); w.proven, w.unproven
    (False, 1)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import sympy as sp
from flint import arb

from .arb import ArbKernels, ArbOps

_nan = np.frompyfunc(lambda v: isinstance(v, arb) and v.is_nan(), 1, 1)


def _outside(lo: float | None, hi: float | None) -> Callable[..., bool]:
    """A rule: the first operand's ball lies certainly below ``lo`` or above ``hi``."""
    def rule(v, *_):
        return bool((lo is not None and v < lo) or (hi is not None and v > hi))
    return rule


def _by_exact_zero(_, b) -> bool:
    """A division whose divisor ball is exactly 0 (radius 0: the divisor is 0, as
    ``x - Max(0, x)`` at an exact x > 0): undefined whatever the dividend's ball holds."""
    return isinstance(b, arb) and b.is_exact() and b.is_zero()


# per function (sympy class or kernel method): when a new NaN from inexact operands is proven
# (the argument ball lies wholly outside the function's real domain, or a divisor exactly 0)
RULES: dict = {
    "div": _by_exact_zero,
    sp.log: _outside(0, None), "log1p": _outside(-1, None),
    sp.asin: _outside(-1, 1), sp.acos: _outside(-1, 1),
    "pow_rational": lambda v, p, q: q % 2 == 0 and bool(v < 0),
    "pow_general": lambda v, e: bool(v < 0) and e.is_exact() and not e.is_integer(),
}


class DomainWatch:
    """Counts of the NaNs a ball walk created: ``proven`` (undefined there) and ``unproven``."""

    def __init__(self) -> None:
        self.n_proven = 0
        self.unproven = 0

    @property
    def proven(self) -> bool:
        """Whether every NaN the walk created is proven undefined (none unproven)."""
        return self.unproven == 0

    def seen(self, key, out, operands: tuple) -> None:
        """Record the NaNs of ``out`` that none of ``operands`` (broadcast to it) had at the
        same place, each proven by ``RULES[key]`` or by exact operands, else unproven."""
        out = np.asarray(out, dtype=object)
        nan = np.asarray(_nan(out), bool) if out.size else np.zeros(out.shape, bool)
        if not nan.any():
            return
        arrays = [np.broadcast_to(np.asarray(a, dtype=object), out.shape) for a in operands]
        rule = RULES.get(key)
        for idx in zip(*np.nonzero(nan)):
            ins = [a[idx] for a in arrays]
            if any(isinstance(v, arb) and v.is_nan() for v in ins):
                continue  # carried, not created here
            if (rule is not None and rule(*ins)) or all(
                    not isinstance(v, arb) or v.is_exact() for v in ins):
                self.n_proven += 1
            else:
                self.unproven += 1

    def seen_whole(self, out, operands: tuple) -> None:
        """A reduction's NaNs (operands not aligned with the result): created there when no
        operand entry is NaN, proven only when every operand entry is exact; with NaN operands
        the NaNs are carried unless an operand has an inexact non-finite ball."""
        out = np.asarray(out, dtype=object)
        if not out.size or not np.asarray(_nan(out), bool).any():
            return
        flat = [v for a in operands for v in np.asarray(a, dtype=object).reshape(-1)
                if isinstance(v, arb)]
        if any(v.is_nan() for v in flat):
            if any(not v.is_finite() and not v.is_nan() and not v.is_exact() for v in flat):
                self.unproven += 1
            return
        if all(v.is_exact() for v in flat):
            self.n_proven += 1
        else:
            self.unproven += 1


class WatchedKernels(ArbKernels):
    """``ArbKernels`` reporting each NaN it creates to a ``DomainWatch``."""

    def __init__(self, watch: DomainWatch) -> None:
        self.watch = watch
        self.functions = {key: self._function(key, f) for key, f in ArbKernels.functions.items()}

    def _function(self, key, f):
        def run(k, *args):
            out = f(k, *args)
            self.watch.seen(key, out, args)
            return out
        return run

    def _op(self, key: str, out, *operands):
        self.watch.seen(key, out, operands)
        return out

    def compare(self, op, a, b):
        """As ``ArbKernels.compare``; a condition left undecided by balls that are not NaN (a
        ball straddling the boundary: a Piecewise may take no branch, NaN) is unproven."""
        t, f = super().compare(op, a, b)
        open_ = ~(t | f)
        if open_.any():
            a_, b_ = (np.broadcast_to(np.asarray(v, dtype=object), open_.shape) for v in (a, b))
            for idx in zip(*np.nonzero(open_)):
                if not any(isinstance(v, arb) and v.is_nan() for v in (a_[idx], b_[idx])):
                    self.watch.unproven += 1
        return t, f

    def add(self, a, b): return self._op("add", super().add(a, b), a, b)
    def neg(self, a): return self._op("neg", super().neg(a), a)
    def mul(self, a, b): return self._op("mul", super().mul(a, b), a, b)
    def div(self, a, b): return self._op("div", super().div(a, b), a, b)
    def pow_int(self, a, n): return self._op("pow_int", super().pow_int(a, n), a)

    def pow_rational(self, a, p, q):
        out = super().pow_rational(a, p, q)
        self.watch.seen("pow_rational", out, (a, np.asarray(p), np.asarray(q)))
        return out

    def pow_general(self, a, b): return self._op("pow_general", super().pow_general(a, b), a, b)
    def union(self, a, b): return self._op("union", super().union(a, b), a, b)
    def sigmoid(self, a): return self._op("sigmoid", super().sigmoid(a), a)
    def sech2(self, a): return self._op("sech2", super().sech2(a), a)
    def erfc(self, a): return self._op("erfc", super().erfc(a), a)
    def expm1(self, a): return self._op("expm1", super().expm1(a), a)
    def log1p(self, a): return self._op("log1p", super().log1p(a), a)


class WatchedOps(ArbOps):
    """``ArbOps`` at ``prec`` bits whose elementwise kernels and reductions report the NaNs
    they create to ``watch`` (``at`` keeps the watch)."""

    def __init__(self, prec: int, watch: DomainWatch) -> None:
        super().__init__(prec)
        self.watch = watch
        self.kernels = WatchedKernels(watch)

    def at(self, prec: int) -> "WatchedOps":
        return WatchedOps(prec, self.watch)

    def sum(self, x, axis=None, keepdims: bool = False):
        out = super().sum(x, axis=axis, keepdims=keepdims)
        self.watch.seen_whole(out, (x,))
        return out

    def amax(self, x, axis=None, keepdims: bool = False):
        out = super().amax(x, axis=axis, keepdims=keepdims)
        self.watch.seen_whole(out, (x,))
        return out

    def einsum(self, spec: str, *operands):
        out = super().einsum(spec, *operands)
        self.watch.seen_whole(out, operands)
        return out

    def matmul3(self, a, b):
        out = super().matmul3(a, b)
        self.watch.seen_whole(out, (a, b))
        return out


def watched(prec: int, watch: DomainWatch) -> WatchedOps:
    """The ARB table at ``prec`` bits reporting the NaNs it creates to ``watch``.

    Arguments:
        prec: the balls' precision in bits (>= 53).
        watch: the ``DomainWatch`` to count into (one per row evaluated).
    Returns:
        A ``WatchedOps`` (an ``ArbOps``).
    """
    return WatchedOps(prec, watch)
