"""The certified oracle: the exact value and gradient, each with a proven error, and every side of
every kink the backends may have reached.

The program runs in ball arithmetic (``symgrad.backends.arb``) one sample at a time, starting at
``start_bits`` and doubling until every output's radius is small against the verdict's allowance
for that entry (radius <= allowance / 64, or <= 2^-80 of the value) or the cap is reached; an
entry still too wide at the cap is *uncertain* (the verdict calls it inconclusive). How many bits
each sample needed is returned (``Exact.bits``). A finite true value is never NaN: cancellation
only costs bits.

At a reached kink (``symgrad.backends.arb.Kinks``) each reached kink i contributes a local
derivative h_i between its sides (Heaviside: [0, 1], sign: [-1, 1], a Max/Min tie of m
arguments: a simplex), and the gradient is a function G(h); the backend's gradient must lie in
the convex hull of G at the combinations of sides (``symgrad.compare``). Up to
``MAX_COMBINATIONS`` combinations every one is evaluated (``vertices``). Beyond, G is evaluated
at the base (each kink on its first side) and at each single change of side (k + 1 passes, not
2^k); kinks whose changes move a common entry form a group (a Max tie feeding a ReLU), each
group is enumerated with the others at the base, and G is checked at two random points
*between* the sides (fractional local derivatives): where it equals the base plus each group's
own change to 2^-40 of the gradient's scale, G is separable (one ReLU layer, Abs, clamp,
max-pool windows; an interaction term h_i h_j across groups would show there) and its hull is
the Minkowski sum of the groups' hulls, decided exactly by a linear program (``"separable"``).
Otherwise (stacked ReLU layers both at 0: every unit of one layer interacts with every unit of
the next) the sides are *relaxed*: some more combinations are evaluated (an inner hull, whose
members are accepted) and one pass with every local derivative a ball over its whole range
gives a proven enclosure per entry (outside it: a mismatch); an entry between the two stays
inconclusive, with the reason (``"relaxed"``).

>>> import numpy as np, sympy as sp
>>> z = sp.Symbol("z", real=True)
>>> fn = compile_scalar([], [z], [sp.log(1 - 1 / (1 + sp.exp(-z)))])
>>> e = evaluate(fn, np.array([[152.0]]), np.zeros((1, 1)))
>>> float(e.hi[0, 0]), int(e.bits[0]) > 128
(-152.0, True)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import mpmath
import numpy as np
import sympy as sp
from flint import arb, ctx

from .backends import arb as arb_backend
from .codegen import compile_program
from .compare.kinks import Sides, with_interval as _with_interval
from .derive import Program
from .precise.ladder import TIGHT_FRACTION, TIGHT_RELATIVE_BITS, double_double, one_sided_limits
from .sides import sample_sides, side_label

__all__ = ["Exact", "Sides", "TIGHT_FRACTION", "TIGHT_RELATIVE_BITS", "at_point", "certify",
           "compile_oracle", "compile_scalar", "evaluate", "side_label", "site_arguments",
           "to_mpmath"]




@dataclass
class Exact:
    """The oracle's answer for N samples and K outputs."""

    hi: np.ndarray  # (N, K) the exact value rounded to float64 (NaN: undefined there)
    lo: np.ndarray  # (N, K) the rest: hi + lo is a double-double
    uncertain: np.ndarray  # (N, K) bool: not certified tight enough (cap, or too many kinks)
    bits: np.ndarray  # (N,) bits each sample needed
    vertices: dict[int, np.ndarray] = field(default_factory=dict)  # row -> (m, K) at a kink
    labels: dict[int, list[str]] = field(default_factory=dict)  # row -> each side, in words
    structure: dict[int, Sides] = field(default_factory=dict)  # row -> beyond enumeration

    def summary(self) -> dict:
        """``{"max": ..., "distribution": {bits: samples}}`` for reports."""
        counts = Counter(int(b) for b in self.bits)
        return {"max": int(self.bits.max()) if self.bits.size else 0,
                "distribution": {str(k): counts[k] for k in sorted(counts)},
                "uncertain_entries": int(self.uncertain.sum())}


def compile_scalar(assignments: Sequence, leaves: Sequence[sp.Symbol], outputs: Sequence,
                   *, fname: str = "oracle") -> Callable:
    """The program as a ball-arithmetic function; ``fn.kinks`` holds its kink sites."""
    t = arb_backend.target()
    with ctx.workprec(64):
        fn = compile_program(assignments, leaves, outputs, t, fname=fname)
    fn.kinks = t.namespace["kinks"]
    return fn


def compile_oracle(program: Program) -> Callable:
    """The oracle of a derived program: ``[value, *gradient]``."""
    return compile_scalar(program.assignments, program.leaves,
                          (program.value, *program.gradient))


def site_arguments(fn) -> list[sp.Expr]:
    """The argument of every kink site (their rounding bounds decide what is reached)."""
    return [s.arg for s in fn.kinks.sites]


def evaluate(fn, X: np.ndarray, allow: np.ndarray, site_allow: np.ndarray | None = None, *,
             start_bits: int = 128, max_bits: int = 4096,
             relative_bits: int = TIGHT_RELATIVE_BITS, limits: bool = False) -> Exact:
    """Certified outputs for each column of X (n_leaves, N).

    Arguments:
        fn: from ``compile_scalar`` / ``compile_oracle``.
        X: the samples (float64, exactly representable).
        allow: (N, K) the verdict's absolute allowance per entry (0: relative tightness only).
        site_allow: (N, S) per kink site, the distance from the kink that rounding can bridge;
            None: only an exact kink (argument exactly 0) is reached.
        start_bits, max_bits: the precision ladder (doubling).
        relative_bits: a radius <= 2^-relative_bits of the value is tight.
        limits: column 0 is the value and the rest its gradient: where the value is defined
            and a gradient entry is not (0/0, 0 * log 0 at an input exactly 0), the entry is the
            limit as the zero inputs approach 0 (``_limits``).
    Returns:
        An ``Exact``.
    """
    n, width = X.shape[1], len(allow[0]) if len(allow) else 0
    hi = np.full((n, width), np.nan)
    lo = np.zeros((n, width))
    uncertain = np.zeros((n, width), bool)
    bits = np.zeros(n, np.int64)
    vertices: dict[int, np.ndarray] = {}
    labels: dict[int, list[str]] = {}
    structure: dict[int, Sides] = {}
    kinks = fn.kinks
    rel = arb(2) ** -relative_bits
    for j in range(n):
        kinks.allow = None if site_allow is None else site_allow[j]
        limit = [arb(float(a) / TIGHT_FRACTION) if np.isfinite(a) else arb(0)
                 for a in np.nan_to_num(allow[j], nan=0.0)]
        outs, verts, info, loose, bits[j] = certify(
            fn, [arb(float(v)) for v in X[:, j]], limit, rel, start_bits, max_bits)
        if outs is not None and limits and outs[0].is_finite() and \
                not all(o.is_finite() for o in outs[1:]) and not verts:
            outs, verts, labels_j = _limits(fn, X[:, j], outs, limit, rel, start_bits, max_bits)
            if verts:
                kinks.labels = labels_j
        if outs is not None:
            for k, o in enumerate(outs):
                hi[j, k], lo[j, k] = double_double(o)
            if verts:
                vertices[j] = np.array([[double_double(o)[0] for o in v] for v in verts])
                labels[j] = list(kinks.labels)
                # where every side agrees the function is smooth there, and the sides' value is
                # the derivative; the exact pass used sympy's H(0) = 1/2, sign(0) = 0, which a
                # smooth function written with Abs/Max does not need (sign(0)^2 = 0 made
                # logaddexp2's Hessian 0 at a tie). The rounding bound E was evaluated on that
                # convention's path, so it cannot vouch for the entry: inconclusive, not ok
                same = np.ptp(vertices[j], axis=0) == 0
                if info is not None:
                    info = _with_interval(info, vertices[j])
                    structure[j] = info
                    if info.kind == "relaxed":
                        same &= info.outer_high - info.outer_low <= 0
                for k in np.flatnonzero(same & (vertices[j][0] != hi[j])):
                    hi[j, k], lo[j, k] = double_double(verts[0][k])
                    uncertain[j, k] = True
        uncertain[j] |= np.array(loose, bool)
    kinks.allow, kinks.dirs, kinks.reached, kinks.weights = None, {}, {}, {}
    return Exact(hi, lo, uncertain, bits, vertices, labels, structure)


def _limits(fn, x: np.ndarray, outs: list, limit: list, rel: arb, start_bits: int,
            max_bits: int) -> tuple[list, list, list]:
    """A removable singularity: the derivative at a point where its formula is 0/0 or
    0 * log 0 (d/dy x**y = x**y log x at x = 0), as the limit when the inputs that are exactly 0
    approach 0 from either side (``symgrad.precise.ladder``, the ball oracle at each step; a
    step that reaches a kink ends its side). One side defined (log: x > 0): its limit; both,
    equal: the derivative; both, different: a kink, the two limits are its sides. Otherwise the
    entry stays undefined (domain: 1/w at 0, d/dx x**0.5 at 0). Returns (outputs, sides, their
    labels)."""
    zeros = np.flatnonzero(x == 0)
    bad = [k for k, o in enumerate(outs) if not o.is_finite()]
    if not zeros.size:
        return outs, [], []

    def at(t: arb) -> list | None:
        args = [t if v == 0 else arb(float(v)) for v in x]
        got, verts, _, _, _ = certify(fn, args, limit, rel, start_bits, max_bits)
        return None if got is None or verts else got
    left, right = one_sided_limits(at, bad, rel)
    one = [o if k not in bad else right.get(k, left.get(k, o)) for k, o in enumerate(outs)]
    split = [k for k in bad if k in left and k in right
             and double_double(left[k]) != double_double(right[k])]
    if not split:
        return one, [], []
    names = ", ".join(f"input {int(i)}" for i in zeros)
    sides = [[side.get(k, o) if k in split else o for k, o in enumerate(one)]
             for side in (left, right)]
    return one, sides, [f"{names} → 0− (limit)", f"{names} → 0+ (limit)"]


def certify(fn, args: list, limit: list, rel: arb, start_bits: int, max_bits: int):
    """One sample at rising precision until every output (and every side at a kink) is tight.

    Returns (outputs as balls or None on an error, sides, their ``Sides`` beyond enumeration
    or None, loose per output, bits used).
    """
    p, width = start_bits, len(limit)
    while True:
        with ctx.workprec(p):
            arb_backend.set_precision(fn, p)
            try:
                outs, verts, info = sample_sides(fn, args)
                loose = [not _tight(o, limit[k], rel) for k, o in enumerate(outs)]
                for v in verts:
                    loose = [a or not _tight(o, limit[k], rel)
                             for k, (a, o) in enumerate(zip(loose, v))]
            except arb_backend.Imprecise:
                outs, verts, info, loose = None, [], None, [True] * width
            except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                return None, [], None, [False] * width, p
            if not any(loose) or p >= max_bits:
                return outs, verts, info, loose, p
        p = min(2 * p, max_bits)


def at_point(fn, args: list, *, digits: int, max_bits: int = 4096) -> list:
    """Outputs at one point (mpmath numbers or exact ``arb``) to ``digits`` significant digits
    (or below 2^-1200 in absolute terms), as mpmath numbers; exact kinks take sympy's H(0)."""
    balls = [a if isinstance(a, arb) else _arb_of(a) for a in args]
    fn.kinks.allow = None
    start = max(128, int(digits * 3.33) + 16)
    rel = arb(2) ** -(int(digits * 3.33) + 4)
    p = start
    while True:
        with ctx.workprec(p):
            arb_backend.set_precision(fn, p)
            fn.kinks.dirs, fn.kinks.reached = {}, {}
            try:
                outs = [arb_backend._a(o) for o in fn(balls)]
                if all(_tight(o, arb(2) ** -1200, rel) for o in outs) or p >= max_bits:
                    break
            except arb_backend.Imprecise:
                if p >= max_bits:
                    raise
        p = min(2 * p, max_bits)
    with mpmath.workdps(digits):
        return [to_mpmath(o) for o in outs]


def _arb_of(x) -> arb:
    """An mpmath number or a Python number as an exact ball."""
    if isinstance(x, mpmath.mpf):
        sign, man, exp, _ = x._mpf_
        if not man:
            return arb(0)
        return arb(int(-man if sign else man)) * arb(2) ** int(exp)
    return arb(x)


def _tight(o: arb, limit: arb, rel: arb) -> bool:
    if not o.is_finite():
        return True  # NaN: undefined (a certain domain error), nothing to tighten
    rad = o.rad()
    return bool(rad <= limit or rad <= abs(o.mid()) * rel)


def to_mpmath(o) -> "object":
    """A ball's midpoint as an mpmath number (exact conversion)."""
    o = arb_backend._a(o)
    if not o.is_finite():
        return mpmath.nan
    man, exp = o.mid().man_exp()
    return mpmath.mpf((int(man), int(exp)))
