"""The certified oracle: the exact value and gradient, each with a proven error, and every side of
every kink the backends may have reached.

The program runs in ball arithmetic (``symgrad.backends.arb``) one sample at a time, starting at
``start_bits`` and doubling until every output's radius is small against the verdict's allowance
for that entry (radius <= allowance / 64, or <= 2^-80 of the value) or the cap is reached; an
entry still too wide at the cap is *uncertain* (the verdict calls it inconclusive). How many bits
each sample needed is returned (``Exact.bits``). A finite true value is never NaN: cancellation
only costs bits.

At a reached kink (``symgrad.backends.arb.Kinks``) the program is evaluated once per combination
of sides of the reached kinks (``vertices``); the backend's gradient must be a convex combination
of them (``symgrad.compare``).

>>> import numpy as np, sympy as sp
>>> z = sp.Symbol("z", real=True)
>>> fn = compile_scalar([], [z], [sp.log(1 - 1 / (1 + sp.exp(-z)))])
>>> e = evaluate(fn, np.array([[152.0]]), np.zeros((1, 1)))
>>> float(e.hi[0, 0]), int(e.bits[0]) > 128
(-152.0, True)
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import sympy as sp
from flint import arb, ctx

from .backends import arb as arb_backend
from .codegen import compile_program
from .derive import Program

MAX_COMBINATIONS = 64  # sides of reached kinks evaluated per sample (more: uncertain)
TIGHT_FRACTION = 64.0  # a radius <= allowance / 64 is tight
TIGHT_RELATIVE_BITS = 80  # ... or <= 2^-80 of the value


@dataclass
class Exact:
    """The oracle's answer for N samples and K outputs."""

    hi: np.ndarray  # (N, K) the exact value rounded to float64 (NaN: undefined there)
    lo: np.ndarray  # (N, K) the rest: hi + lo is a double-double
    uncertain: np.ndarray  # (N, K) bool: not certified tight enough (cap, or too many kinks)
    bits: np.ndarray  # (N,) bits each sample needed
    vertices: dict[int, np.ndarray] = field(default_factory=dict)  # row -> (m, K) at a kink
    labels: dict[int, list[str]] = field(default_factory=dict)  # row -> each side, in words

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
             relative_bits: int = TIGHT_RELATIVE_BITS) -> Exact:
    """Certified outputs for each column of X (n_leaves, N).

    Arguments:
        fn: from ``compile_scalar`` / ``compile_oracle``.
        X: the samples (float64, exactly representable).
        allow: (N, K) the verdict's absolute allowance per entry (0: relative tightness only).
        site_allow: (N, S) per kink site, the distance from the kink that rounding can bridge;
            None: only an exact kink (argument exactly 0) is reached.
        start_bits, max_bits: the precision ladder (doubling).
        relative_bits: a radius <= 2^-relative_bits of the value is tight.
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
    kinks = fn.kinks
    rel = arb(2) ** -relative_bits
    for j in range(n):
        kinks.allow = None if site_allow is None else site_allow[j]
        limit = [arb(float(a) / TIGHT_FRACTION) if np.isfinite(a) else arb(0)
                 for a in np.nan_to_num(allow[j], nan=0.0)]
        outs, verts, complete, loose, bits[j] = certify(
            fn, [arb(float(v)) for v in X[:, j]], limit, rel, start_bits, max_bits)
        if outs is not None:
            for k, o in enumerate(outs):
                hi[j, k], lo[j, k] = _double_double(o)
            if verts:
                vertices[j] = np.array([[_double_double(o)[0] for o in v] for v in verts])
                labels[j] = list(kinks.labels)
                # where every side agrees the function is smooth there, and the sides' value is
                # the derivative; the exact pass used sympy's H(0) = 1/2, sign(0) = 0, which a
                # smooth function written with Abs/Max does not need (sign(0)^2 = 0 made
                # logaddexp2's Hessian 0 at a tie). The rounding bound E was evaluated on that
                # convention's path, so it cannot vouch for the entry: inconclusive, not ok
                same = np.ptp(vertices[j], axis=0) == 0
                for k in np.flatnonzero(same & (vertices[j][0] != hi[j])):
                    hi[j, k], lo[j, k] = _double_double(verts[0][k])
                    uncertain[j, k] = True
                if not complete:
                    uncertain[j] |= np.ptp(vertices[j], axis=0) > 0
        uncertain[j] |= np.array(loose, bool)
    kinks.allow, kinks.dirs, kinks.reached = None, {}, {}
    return Exact(hi, lo, uncertain, bits, vertices, labels)


def certify(fn, args: list, limit: list, rel: arb, start_bits: int, max_bits: int):
    """One sample at rising precision until every output (and every side at a kink) is tight.

    Returns (outputs as balls or None on an error, sides, all sides evaluated, loose per output,
    bits used).
    """
    p, width = start_bits, len(limit)
    while True:
        with ctx.workprec(p):
            arb_backend.set_precision(fn, p)
            try:
                outs, verts, complete = _sample(fn, args)
                loose = [not _tight(o, limit[k], rel) for k, o in enumerate(outs)]
                for v in verts:
                    loose = [a or not _tight(o, limit[k], rel)
                             for k, (a, o) in enumerate(zip(loose, v))]
            except arb_backend.Imprecise:
                outs, verts, complete, loose = None, [], True, [True] * width
            except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                return None, [], True, [False] * width, p
            if not any(loose) or p >= max_bits:
                return outs, verts, complete, loose, p
        p = min(2 * p, max_bits)


def at_point(fn, args: list, *, digits: int, max_bits: int = 4096) -> list:
    """Outputs at one point (mpmath numbers or exact ``arb``) to ``digits`` significant digits
    (or below 2^-1200 in absolute terms), as mpmath numbers; exact kinks take sympy's H(0)."""
    import mpmath
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
    import mpmath
    if isinstance(x, mpmath.mpf):
        sign, man, exp, _ = x._mpf_
        if not man:
            return arb(0)
        return arb(int(-man if sign else man)) * arb(2) ** int(exp)
    return arb(x)


def _sample(fn, args):
    """The exact pass, then one pass per combination of sides of the reached kinks."""
    kinks = fn.kinks
    kinks.dirs, kinks.reached = {}, {}
    outs = [arb_backend._a(o) for o in fn(args)]
    known = {k: set(v) for k, v in kinks.reached.items()}
    if not known:
        return outs, [], True
    for _ in range(4):  # a side can reach new kinks (a Piecewise branch): widen and redo
        keys = sorted(known, key=repr)
        combos = itertools.product(*[sorted(known[k]) for k in keys])
        verts, grew, labels = [], False, []
        kinks.labels = labels
        complete = True
        for i, combo in enumerate(combos):
            if i == MAX_COMBINATIONS:
                complete = False
                break
            kinks.dirs, kinks.reached = dict(zip(keys, combo)), {}
            verts.append([arb_backend._a(o) for o in fn(args)])
            labels.append("; ".join(side_label(k, c) for k, c in zip(keys, combo)))
            for k, v in kinks.reached.items():
                if not v <= known.get(k, set()):
                    known.setdefault(k, set()).update(v)
                    grew = True
        if not grew:
            break
    kinks.dirs = {}
    return outs, verts, complete


def side_label(key, choice) -> str:
    """``w*x → 0−`` (the left side of that kink) or ``w2 wins the max``."""
    if key[0] == "select":
        return f"{key[2][choice]} wins the {key[1]}"
    return f"{key[1]} → 0{'+' if choice > 0 else '−'}"


def _tight(o: arb, limit: arb, rel: arb) -> bool:
    if not o.is_finite():
        return True  # NaN: undefined (a certain domain error), nothing to tighten
    rad = o.rad()
    return bool(rad <= limit or rad <= abs(o.mid()) * rel)


def _double_double(o: arb) -> tuple[float, float]:
    """A ball as hi + lo. A tight ball that contains 0 is 0: its midpoint is rounding debris of
    the terms that cancelled (e.g. 1e-38 for a gradient that is exactly 0 by symmetry), and a
    direction made of debris would mislead the block test."""
    if not o.is_finite():
        return np.nan, 0.0
    if o.contains(0):
        return 0.0, 0.0
    mid = o.mid()
    h = float(mid)
    if not np.isfinite(h):
        return h, 0.0  # beyond float64: compare reports it as overflow
    return h, float(mid - h)


def to_mpmath(o) -> "object":
    """A ball's midpoint as an mpmath number (exact conversion)."""
    import mpmath
    o = arb_backend._a(o)
    if not o.is_finite():
        return mpmath.nan
    man, exp = o.mid().man_exp()
    return mpmath.mpf((int(man), int(exp)))
