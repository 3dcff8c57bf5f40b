"""Limits and the stable-rewrite check in the tensor oracle, as the scalar oracle has them.

**Removable singularities** (``oracle_limits``; the scalar ``oracle._limits``). Where a
sample's loss or a gradient entry's formula is 0/0 or 0 * log 0 (d/dy x**y = x**y log x at
x = 0; v/sqrt(v**2) at v = 0), the entry is the limit as the sample's float inputs that are exactly 0
approach 0 from either side, t = 2^-64, 2^-128, ... 2^-65536: the whole derived program in
``arb`` balls at each t (the precision doubling until the entries are tight). A side's limit is
taken when two successive values agree to 2^-80 of the value or to 2^-1100 (below float64); one
side defined (log: x > 0): its limit; both, equal: the derivative; both, different: a kink,
the two limits are its sides (``KinkSides`` for the comparer). Otherwise the entry is
undefined, NaN (domain: 1/w and log w at 0 are poles, d/dx x**0.5 at 0; the double-double's
+-inf there would read as an overflow, an exact value beyond the dtype's range). Only rows that need it cost anything; a row
that already reaches a kink (its sides decide it) is left alone.

**The rounding bound there** (``limit_bounds``): where E is
NaN at a sample with inputs exactly 0, the larger E of the two sides at 0 +- ``LIMIT_OFFSET``.

**The rewrite check** (``check_rewrite``): a plain sympy model runs a stable rewrite of its
formula (``symgrad.stable``); the oracle's double-double pass evaluates that rewrite, so every
compared sample is also evaluated as written (``TensorModel.written_program``) in ``arb``
balls, and where the two differ by more than the oracle resolves the formula as written decides
(a wrong rule fails the value); an entry
whose ball stays too wide at the precision cap is inconclusive.

>>> import numpy as np, sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> from symgrad.tensor.views import oracle_view
>>> from symgrad.tensor.tables import oracle_ops
>>> x, y = sp.symbols("x y")
>>> m = to_program(sg.Model("x_pow_y", x**y, params=[x, y]))
>>> v = {"x": np.array([0.0]), "y": np.array([2.0])}
>>> hi, lo = oracle_view(m, v, oracle_ops(50))
>>> hi.tolist()
[[0.0, 0.0, nan]]
>>> got = oracle_limits(m, v, hi, lo)
>>> hi.tolist() == [[0.0, 0.0, 0.0]], got.rows  # d/dy = x**y log x -> 0 as x -> 0+
(True, [0])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np
from flint import arb, ctx

from ..compare import DOMAIN, INCONCLUSIVE, KINK, LOSS, MISMATCH, OK, Comparison, KinkSides
from ..compare import allowance
from ..precise.arb import ARB_OPS
from ..precise.ladder import (LIMIT_OFFSET, TIGHT_FRACTION, TIGHT_RELATIVE_BITS, double_double,
                              one_sided_limits)
from .exact import ball_leaves
from .interpret import evaluate
from .model import TensorModel
from .views import flat_balls

LIMITS_UP_TO = 200_000  # parameters: a row's limit evaluates its whole program in balls


@dataclass
class Limits:
    """What ``oracle_limits`` did: the rows whose entries are limits, and the kinks it found
    (two different one-sided limits) as the comparer's sides."""

    rows: list = field(default_factory=list)  # rows with at least one entry taken as a limit
    sides: KinkSides | None = None  # rows where the two one-sided limits differ
    decided: dict = field(default_factory=dict)  # row -> the entries it decided in balls (a
    #                                              limit, or NaN at a pole): not the DD's


def _float_zeros(model: TensorModel, values: Mapping, r: int) -> bool:
    return any(not b.domain.integer and (np.asarray(values[b.name])[r] == 0).any()
               for b in model.blocks)


def _leaves_at(model: TensorModel, values: Mapping, r: int, t: arb | None) -> dict:
    """Row ``r`` as exact balls (1, *shape), its float zeros replaced by ``t`` (None: kept)."""
    return ball_leaves(model, {b.name: np.asarray(values[b.name])[r:r + 1] for b in model.blocks},
                       lambda x: t if (t is not None and x == 0) else arb(float(x)))


def _loose(outs, limit: Sequence, defined: Sequence[bool] | None, p: int) -> list:
    """Per output ball at ``p`` bits: not yet tight (radius above its ``limit`` and above
    2^-TIGHT_RELATIVE_BITS of its value), or not finite where it is ``defined``."""
    rel = arb(2) ** -TIGHT_RELATIVE_BITS
    with ctx.workprec(p):
        return [not (o.rad() <= lim or o.rad() <= abs(o.mid()) * rel) if o.is_finite()
                else bool(defined is not None and defined[k])
                for k, (o, lim) in enumerate(zip(outs, limit))]


def _balls(model: TensorModel, leaves: dict, limit: Sequence, start: int, cap: int,
           program: tuple | None = None, defined: Sequence[bool] | None = None
           ) -> tuple[np.ndarray | None, list, int]:
    """One row's outputs (value, gradient) as balls, the precision doubling from ``start``
    until every finite ball is tight (radius <= limit or <= 2^-80 of its value) or ``cap``;
    an output ``defined`` (known finite) whose ball is not finite is loose too (a log of a
    ball around 0: cancellation that more bits resolve). Returns (balls or None where the
    program raises, loose per output, bits used)."""
    outputs, extra = program if program is not None else (model.gradient.outputs, {})
    p = start
    while True:
        try:
            outs = flat_balls(model, evaluate(outputs, ARB_OPS.at(p), {**leaves, **extra}))
        except (ValueError, ZeroDivisionError, OverflowError):
            return None, [False] * len(limit), p
        loose = _loose(outs, limit, defined, p)
        if not any(loose) or p >= cap:
            return outs, loose, p
        p = min(2 * p, cap)


def _rows_balls(model: TensorModel, values: Mapping, limit: list, start: int, cap: int,
                defined: list) -> list:
    """``_balls`` of every row (``limit[r]``, ``defined[r]``: row r's), the rows still loose
    at a precision walked together at the next, in chunks: one walk per precision instead of
    one per row, the same balls (ARB acts on each sample apart, as ``rigorous.tensor``'s
    ``_rows_balls``). A chunk whose walk raises goes back to ``_balls`` one row at a time."""
    step = max(1, (1 << 14) // max(1, sum(n.size for n in model.gradient.nodes)))
    out: list = [None] * len(limit)
    for first in range(0, len(limit), step):
        pending, p = list(range(first, min(first + step, len(limit)))), start
        while pending:
            try:
                leaves = ball_leaves(model, {b.name: np.asarray(values[b.name])[pending]
                                             for b in model.blocks}, lambda x: arb(float(x)))
                outs = [np.asarray(o, dtype=object) for o in
                        evaluate(model.gradient.outputs, ARB_OPS.at(p), leaves)]
            except (ValueError, ZeroDivisionError, OverflowError):
                for r in pending:  # from the start, as alone: its own raise, or its balls
                    out[r] = _balls(model, _leaves_at(model, values, r, None), limit[r], start,
                                    cap, defined=defined[r])
                break
            later = []
            for i, r in enumerate(pending):
                balls = flat_balls(model, [o[i:i + 1] if o.shape[0] > 1 else o for o in outs])
                loose = _loose(balls, limit[r], defined[r], p)
                if not any(loose) or p >= cap:
                    out[r] = (balls, loose, p)
                else:
                    later.append(r)
            pending, p = later, min(2 * p, cap)
    return out


def _limit_row(model: TensorModel, values: Mapping, r: int, bad: list, limit: np.ndarray,
               start: int, cap: int, program) -> tuple[dict, dict]:
    """The one-sided limits of the ``bad`` entries of row ``r``: (left, right), each entry ->
    its settled ball (``symgrad.precise.ladder``, the rule the scalar oracle uses too)."""
    rel = arb(2) ** -TIGHT_RELATIVE_BITS
    extra = None if program is None else (program[0], {k: np.asarray(v)[r:r + 1]
                                                       for k, v in program[1].items()})

    def at(t: arb) -> np.ndarray | None:
        return _balls(model, _leaves_at(model, values, r, t), limit, start, cap, extra)[0]
    return one_sided_limits(at, bad, rel)


def oracle_limits(model: TensorModel, values: Mapping[str, np.ndarray], hi: np.ndarray,
                  lo: np.ndarray, *, allowed: np.ndarray | None = None, skip: Sequence = (),
                  program: tuple | None = None, start: int = 128, cap: int = 4096,
                  open_: Mapping[int, Sequence[int]] | None = None) -> Limits:
    """The oracle's undefined gradient entries that are limits, filled in place.

    Arguments:
        model: the tensor model whose gradient program the oracle evaluated.
        values: the compared samples, block name -> (N, *shape) (rows of ``hi``).
        hi, lo: the oracle's (N, 1 + parameters) double-double rows; undefined (NaN, inf)
            entries of a row with float inputs exactly 0 become their limit where it exists:
            the loss's too (v/sqrt(v**2) at v = 0 is 0/0; its sides are -1 and +1: a kink).
        allowed: (N, K) the verdict's allowance per entry (its 1/64 is tight), or None.
        skip: rows that reach a kink (its sides decide them): their entries the sided
            program leaves undefined are limits of the plain program (off the kink at t).
        program: as ``views.oracle_view``'s (the sided program and its selectors), or None.
        start, cap: the balls' precision ladder (bits).
        open_: row -> entries the underflow watch's balls left open (``views.oracle_view``'s
            ``undecided``): NaN because no ball certified them, not because the formula is
            undefined there; left alone (inconclusive, ``tensor.doubt``), never a pole.
    Returns:
        ``Limits``: the rows changed, the entries decided (limits and poles), and the sides
        where the one-sided limits differ.
    """
    out = Limits()
    if model.n_parameters > LIMITS_UP_TO:
        return out  # a whole row in balls would not fit (GPT-2): the entries stay domain
    with np.errstate(invalid="ignore"):
        rows = np.flatnonzero((~np.isfinite(hi)).any(axis=1))
    vertices, labels = {}, {}
    skip = set(skip)
    for r in (int(r) for r in rows):
        if not _float_zeros(model, values, r):
            continue
        bad = [int(k) for k in np.flatnonzero(~np.isfinite(hi[r]))
               if int(k) not in set(map(int, (open_ or {}).get(r, ())))]
        if not bad:
            continue
        limit = np.zeros(hi.shape[1]) if allowed is None else np.nan_to_num(
            allowed[r] / TIGHT_FRACTION, nan=0.0, posinf=0.0)
        limit = [arb(float(a)) for a in limit]
        # a row at a kink: its sided program is still 0/0 there (v/sqrt(v**2) at 0 is v/|v|,
        # either side of |v| gives v/v); off 0 (t != 0) the plain program is off the kink
        left, right = _limit_row(model, values, r, bad, limit, start, cap,
                                 None if r in skip else program)
        split = [k for k in bad if k in left and k in right
                 and double_double(left[k]) != double_double(right[k])]
        for k in bad:
            if k in right or k in left:
                hi[r, k], lo[r, k] = double_double(right.get(k, left.get(k)))
            else:  # no side settles (log 0, 1/0: a pole): undefined there, not an overflow
                hi[r, k], lo[r, k] = np.nan, 0.0
        out.decided[r] = bad
        if any(k in right or k in left for k in bad):
            out.rows.append(r)
        if split:
            V = np.array([np.asarray(hi[r], np.float64) + np.asarray(lo[r], np.float64)] * 2)
            for i, side in enumerate((left, right)):
                for k in split:
                    V[i, k] = double_double(side[k])[0]
            vertices[r] = V
            names = ", ".join(b.name for b in model.blocks if not b.domain.integer
                              and (np.asarray(values[b.name])[r] == 0).any())
            labels[r] = [f"{names} → 0− (limit)", f"{names} → 0+ (limit)"]
    if vertices:
        out.sides = KinkSides(vertices, labels)
    return out


def with_limit_sides(kinks: tuple | None, limits: Limits, shape: tuple) -> tuple | None:
    """The kinks the comparer rejudges, the limits' included.

    Arguments:
        kinks: ``tensor.sides.kink_sides``' (sides, uncertain, why), or None.
        limits: ``oracle_limits``' result (its rows with two different one-sided limits).
        shape: the oracle's (N, K), for an empty uncertain mask.
    Returns:
        (sides, uncertain, why) with the limits' sides added; None when there are neither.
    """
    if limits.sides is None:
        return kinks
    if kinks is None:
        return KinkSides(dict(limits.sides.vertices), dict(limits.sides.labels)), \
            np.zeros(shape, bool), {}
    sides, uncertain, why = kinks
    # a kink whose sides are undefined (0/0 on every side) takes the limits' sides instead
    mine = {r for r, V in limits.sides.vertices.items()
            if r not in sides.vertices or not np.isfinite(sides.vertices[r]).all()}
    keep = {r: V for r, V in sides.vertices.items() if r not in mine}
    merged = KinkSides({**keep, **{r: limits.sides.vertices[r] for r in mine}},
                       {**{r: l for r, l in (sides.labels or {}).items() if r not in mine},
                        **{r: limits.sides.labels[r] for r in mine}},
                       structure={r: s for r, s in (sides.structure or {}).items()
                                  if r not in mine} or None)
    return merged, uncertain, why


def limit_bounds(bound: Callable[[Mapping], np.ndarray], model: TensorModel,
                 values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The rounding bound E with its limits at inputs exactly 0.

    Arguments:
        bound: samples (block name -> (n, *shape)) -> E, (n, K).
        model: the tensor model (which blocks are float).
        values: the samples.
    Returns:
        ``bound(values)``; where it is NaN at a sample with float inputs exactly 0 (0 * log 0
        in the bound of d/dy x**y at x = 0), the larger E of the two sides at 0 +- 2^-600, the
        same limit the oracle takes there, so such an entry is checked, not waved through with
        an infinite allowance.
    """
    E = bound(values)
    rows = [r for r in np.flatnonzero(np.isnan(E).any(axis=1))
            if _float_zeros(model, values, int(r))]
    if rows:
        sides = []
        for sign in (1.0, -1.0):
            shifted = {}
            for b in model.blocks:
                v = np.asarray(values[b.name])[rows]
                if not b.domain.integer:  # in float64: 2^-600 is 0 in float32
                    v = np.where(v == 0, sign * LIMIT_OFFSET, v.astype(np.float64))
                shifted[b.name] = v
            sides.append(bound(shifted))
        near = np.fmax(*sides)
        E[rows] = np.where(np.isnan(E[rows]), near, E[rows])
    return E


@dataclass
class RewriteCheck:
    """What ``check_rewrite`` found over the compared entries."""

    agreed: int  # entries where the stable program's value is the formula as written
    replaced: int  # entries where they differ: the formula as written decided
    unchecked: int  # entries the formula as written leaves undefined there (0/0: limits)
    open: np.ndarray  # (N, K) bool: the ball of the formula as written too wide at the cap
    bits: np.ndarray  # (N,) the bits each sample's balls needed
    why: str  # why the open entries are inconclusive ("" if none)

    def summary(self) -> dict:
        """``{"max", "distribution": {bits: samples}, "uncertain_entries"}``, as the scalar
        oracle's ``Exact.summary`` (``Result.oracle_bits``)."""
        counts = Counter(int(b) for b in self.bits)
        return {"max": int(self.bits.max()) if self.bits.size else 0,
                "distribution": {str(k): counts[k] for k in sorted(counts)},
                "uncertain_entries": int(self.open.sum())}


def check_rewrite(model: TensorModel, values: Mapping[str, np.ndarray], hi: np.ndarray,
                  lo: np.ndarray, allowed: np.ndarray, *, limits: Sequence = (),
                  start: int = 128, cap: int = 4096) -> RewriteCheck | None:
    """The oracle's rows (the stable rewrite, in double-double) checked against the formula as
    written (``model.written_program``) in ``arb`` balls, sample by sample, in place.

    Arguments:
        model: the tensor model (None is returned when it has no ``written_program``).
        values: the compared samples (rows of ``hi``).
        hi, lo: the oracle's (N, K) rows; where the formula as written differs from them by
            more than max(allowance / 64, 2^-70 of the value), its value replaces them.
        allowed: (N, K) the smallest allowance per entry over the compared dtypes.
        limits: rows whose entries ``oracle_limits`` took as limits: where the formula as
            written is undefined there, the entry is not checked (not open).
        start, cap: the balls' precision ladder (bits), as the scalar oracle's.
    Returns:
        A ``RewriteCheck`` (an entry whose ball is still too wide at ``cap`` is open:
        inconclusive, as the scalar oracle's uncertain entries), or None without a rewrite.
    """
    written = model.written_program
    if written is None:
        return None
    allowed = np.nan_to_num(np.asarray(allowed, np.float64), nan=0.0, posinf=0.0)
    opened = np.zeros(hi.shape, bool)
    bits = np.zeros(hi.shape[0], np.int64)
    agreed = replaced = unchecked = 0
    limit = [[arb(float(a) / TIGHT_FRACTION) for a in allowed[r]] for r in range(hi.shape[0])]
    defined = [np.isfinite(np.asarray(hi[r], np.float64)) & (r not in limits)
               for r in range(hi.shape[0])]
    rows = _rows_balls(written, values, limit, start, cap, defined)
    for r in range(hi.shape[0]):
        balls, loose, bits[r] = rows[r]
        limit_r = limit[r]
        for k in range(hi.shape[1]):
            b = None if balls is None else balls[k]
            if (b is None or not b.is_finite()) and not loose[k]:
                unchecked += 1
                continue
            if loose[k]:
                opened[r, k] = True
                continue
            h = float(hi[r, k])
            with ctx.workprec(2300):  # hi + lo exactly
                if np.isfinite(h):
                    gap = (arb(h) + arb(float(lo[r, k])) - b).abs_lower()
                    if not bool(gap > max(limit_r[k], abs(arb(h)) * arb(2) ** -70)):
                        agreed += 1
                        continue
            hi[r, k], lo[r, k] = double_double(b)
            replaced += 1
    why = ""
    if opened.any():
        r, k = (int(i) for i in np.argwhere(opened)[0])
        why = (f"the formula as written (which the stable rewrite symgrad.stable runs) is not "
               f"certified at entry {k} of sample row {r}: its ball is still too wide at {cap} "
               "bits (raise oracle_max_bits)")
    return RewriteCheck(agreed, replaced, unchecked, opened, bits, why)


def mark_open(comp: Comparison, check: RewriteCheck | None) -> Comparison:
    """``comp`` with the rewrite check's open entries inconclusive, each row saying why."""
    if check is None or not check.open.any():
        return comp
    open_ = check.open & np.isin(comp.status, (OK, LOSS, MISMATCH, KINK, DOMAIN))
    status = comp.status.copy()
    status[open_] = INCONCLUSIVE
    undecided = dict(comp.undecided or {})
    for row in np.flatnonzero(open_.any(axis=1)):
        undecided.setdefault(int(row), check.why)
    return replace(comp, status=status, undecided=undecided)


def smallest_allowance(E: np.ndarray, dtypes: Sequence[str], tol) -> np.ndarray:
    """The smallest allowance of each entry over the compared dtypes (NaN: none)."""
    return np.min([allowance(E, dt, tol) for dt in sorted(set(dtypes))], axis=0)


@dataclass(frozen=True)
class RowAllowance:
    """``smallest_allowance`` of one row at a time, for ``oracle_limits``, which reads only the
    rows that need a limit: no whole (N, K) array beside E (GPT-2 at 8 tokens: 1.3 GB, held
    into every compare; 2-layer GPT-2: 4.78 -> 5.54 GiB peak before this)."""

    E: np.ndarray  # (N, K) the rounding bound
    dtypes: tuple  # the compared dtypes
    tol: object  # the Tolerance

    def __getitem__(self, r: int) -> np.ndarray:
        return smallest_allowance(self.E[r], self.dtypes, self.tol)
