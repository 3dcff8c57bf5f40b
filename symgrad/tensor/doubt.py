"""What the oracle's ARB certificate leaves open, judged against the comparer's allowances.

``views.certify_view`` checks sample 0's double-double gradient against ARB balls (their
precision raised while a missed entry's ball is too wide, up to 4096 bits) with a fixed
claim (``rel * |v| + abs``). An entry whose terms cancel to an exact zero (d/dbk of attention:
softmax is shift invariant) comes out of DD as ~1e-30 of cancellation while the ball sits at
~4e-37 +/- 1e-34: the claim's absolute floor is missed, yet the entry's exact value is known to
within far less than anything the comparer resolves. The comparer only needs each exact value
within a tiny fraction of its allowance, so an entry the claim misses is still certified when
its rigorous DD error is at most ``Tolerance.zero_below`` of its smallest allowance (over the
run's dtypes); where the ball is too wide to tell (or not finite) the entry's column is *in
doubt*: its entries are inconclusive with that reason. A ball that is tight enough but far
from the DD value shows a wrong oracle: that stays an error. Below 2^-969 (the DD's underflow
zone, ``symgrad.precise.underflow``), where the allowance is as large as the value, the comparer
decides ok or inconclusive by whether the error is exactly 0: there the DD value must be within
half a ULP of the ball, whatever the claim's absolute floor (1e-30) says.

The doubt is per column only where the certificate's miss says something about the column's
double-double program. An entry decided in balls elsewhere is no such miss: a limit or a pole
at an input exactly 0 (``tensor.limits.oracle_limits``: the DD's inf of log w at w = 0 is not
the value compared), or an entry the underflow watch's balls left open
(``views.rounded_zone``: NaN now). Such an open entry is in doubt alone (inconclusive, its row
saying why); a pole stays domain; every other sample of the column is judged.

>>> import numpy as np
>>> from symgrad.compare import Tolerance
>>> from symgrad.precise.certify import Certificate
>>> cert = Certificate(np.array([1e-40, 1.1e-30, 1.0]), np.array([True, False, False]), 3, 1,
...                    0.0, (1,), radius=np.array([0.0, 1e-34, 1.0]))
>>> d = judge_certificate(cert, np.array([1.0, 1.0, 1e-20]), ["float32"], Tolerance())
>>> d.resolved, d.columns.tolist()
(1, [False, False, True])
>>> d = judge_certificate(cert, np.ones(3), ["float32"], Tolerance(), settled={0: [2]},
...                       unrounded={0: np.array([2]), 5: np.array([1])})
>>> d.columns.tolist(), {r: c.tolist() for r, c in d.entries.items()}
([False, False, False], {5: [1]})
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from ..compare import DOMAIN, INCONCLUSIVE, KINK, LOSS, MISMATCH, OK, Comparison, Tolerance
from ..compare import allowance, ulp
from ..errors import SymgradError
from ..precise.certify import Certificate
from ..precise.underflow import in_zone
from . import views


def _flags(a, n: int) -> np.ndarray:
    """A certificate's per-entry flags, flat (None: True everywhere)."""
    return np.ones(n, bool) if a is None else np.asarray(a, bool).reshape(-1)


@dataclass(frozen=True)
class OracleDoubt:
    """Sample 0's certificate judged per entry: what the claim missed and what stays open."""

    columns: np.ndarray  # (K,) bool: entries whose DD value is not known to within
    #                      zero_below of their allowance (their column is inconclusive)
    n: int  # entries of sample 0
    n_certified: int  # certified by the DD claim itself
    resolved: int  # missed by the claim, certified within zero_below of the allowance
    why: str  # the reason the doubtful entries are inconclusive, in words ("" if none)
    zero_below: float  # Tolerance.zero_below: the part of an allowance the DD error must be
    entries: dict = field(default_factory=dict)  # row -> columns in doubt alone (open balls)
    entries_why: str = ""  # why those are inconclusive ("" if none)
    settled: int = 0  # entries of sample 0 the limits decided in balls (not the DD's)

    def summary(self) -> str:
        """The certificate in one line, for ``Result.size['oracle_certified']``."""
        out = f"{self.n_certified}/{self.n} entries of sample 0 (ARB balls)"
        if self.settled:
            out += (f"; {self.settled} decided in balls at an input exactly 0 (a limit, or a "
                    "pole: domain)")
        if self.resolved:
            out += (f"; {self.resolved} more known to within {self.zero_below:.3g} of their "
                    "allowance (DD cancellation around an exact value the ball encloses)")
        if self.columns.any():
            out += f"; {int(self.columns.sum())} in doubt, inconclusive: {self.why}"
        if self.entries:
            out += (f"; {sum(len(c) for c in self.entries.values())} entries of "
                    f"{len(self.entries)} samples open, inconclusive: {self.entries_why}")
        return out


def judge_certificate(cert: Certificate | None, E0: np.ndarray, dtypes: Sequence[str],
                      tol: Tolerance, model: str = "model", *,
                      settled: Mapping[int, Sequence[int]] | None = None,
                      unrounded: Mapping[int, np.ndarray] | None = None,
                      zone_cap: int | None = None) -> OracleDoubt:
    """Judge sample 0's certificate against the comparer's allowances.

    Arguments:
        cert: ``certify_view``'s certificate of sample 0 (error bounds and ball radii), or
            None (a model too large for it: spot-certified instead; only ``unrounded`` counts).
        E0: the rounding-error bound E of sample 0's entries (same size as the certificate).
        dtypes: the dtypes of the backends compared (the smallest allowance decides).
        tol: the tolerance (``zero_below``, and the allowance's terms).
        model: the model's name, for the error.
        settled: row -> entries decided in balls by ``tensor.limits`` (a limit, or a pole's
            NaN): not the DD's value, so sample 0's certificate does not doubt them.
        unrounded: row -> entries the underflow watch's balls left open (``views.oracle_view``'s
            ``undecided``): in doubt alone unless ``settled``; not doubted by the certificate.
        zone_cap: the bits those balls stopped at (``views.zone_bits(cfg)[1]``; None: the
            default config's, ``views.ZONE_BITS``), for the reason given.
    Returns:
        An ``OracleDoubt``: entries certified by the allowance and those left in doubt (their
        ball wider than ``zero_below`` of the allowance, or than half a ULP of a value in the
        underflow zone whose allowance is as large as the value: it cannot decide them), and
        the open entries of ``unrounded`` (``OracleDoubt.entries``).
    Raises:
        SymgradError: an entry whose ball is that tight but lies farther than that from the
        DD value: the oracle is wrong, not undecided.
    """
    settled, unrounded = settled or {}, unrounded or {}
    entries = {r: c for r, c in ((r, np.setdiff1d(c, settled.get(r, ())).astype(int))
                                 for r, c in unrounded.items()) if c.size}
    entries_why = ""
    if entries:
        r, cap = min(entries), zone_cap or views.ZONE_BITS[1]
        entries_why = (f"the oracle's value of entry {int(entries[r][0])} of sample row {r} is "
                       f"not certified by ARB balls at {cap} bits, nor a NaN ball at "
                       f"{cap << views.ZONE_CAP_SHIFT} (a row re-evaluated in balls by the "
                       "double-double's underflow/overflow watch, views.rounded_zone; raise "
                       "oracle_max_bits: views.zone_bits)")
    if cert is None:
        return OracleDoubt(np.zeros(np.size(E0), bool), 0, 0, 0, "", tol.zero_below,
                           entries, entries_why)
    missed = ~np.asarray(cert.certified, bool).reshape(-1)
    n_settled = int(missed[np.asarray(settled.get(0, ()), int)].sum())
    for k in (*settled.get(0, ()), *unrounded.get(0, ())):  # decided elsewhere, not the DD's
        missed[int(k)] = False
    e = np.asarray(cert.error_bound, float).reshape(-1)
    radius = e if cert.radius is None else np.asarray(cert.radius, float).reshape(-1)
    E0 = np.asarray(E0, float).reshape(-1)
    allowed = np.min([allowance(E0, dt, tol) for dt in dtypes], axis=0)
    allowed = np.where(np.isnan(allowed), np.inf, allowed)  # as the comparer reads it
    with np.errstate(invalid="ignore", over="ignore"):
        needed = tol.zero_below * allowed
        # in the DD's underflow zone, where the allowance is as large as the value, the
        # comparer's "an error of exactly 0 is the exact value itself" decides ok against
        # inconclusive: the DD value must be the exact value rounded to nearest there
        # (``Certificate.nearest``; float64's subnormal spacing is the finest any dtype has).
        # The claim's absolute floor (1e-30) and zero_below of the allowance (2^-1060) both hid
        # a DD value a spacing above it.
        v = np.abs(np.asarray(cert.value, float).reshape(-1)) if cert.value is not None else \
            np.zeros_like(e)  # (a certificate without its values: the rule cannot be checked)
        exact_rule = in_zone(v) & (v > needed) & (allowed >= v)
        near = _flags(cert.nearest, e.size)  # (float64 bounds resolve a whole spacing only)
        spacing = np.min([ulp(v, dt) for dt in dtypes], axis=0)  # its half: no float64
        known = np.isfinite(e) & (e <= needed)
        tight = np.isfinite(radius) & (radius <= needed)
        missed |= exact_rule & ~near
        known = np.where(exact_rule, near, known)
        tight = np.where(exact_rule, _flags(cert.narrow, e.size), tight)
    wrong = missed & ~known & tight
    if (wrong & exact_rule).any():
        k = int(np.flatnonzero(wrong & exact_rule)[0])
        raise SymgradError(f"model {model!r}: the oracle's double-double value of entry {k} "
                           f"({v[k]:.12g}, below 2^-969) is off its ARB ball by up to "
                           f"{e[k]:.3g}, not the nearest float64 (ULP {spacing[k]:.3g}): the "
                           "comparer cannot read an error of 0 as exact (a row in the DD's "
                           "underflow zone not re-evaluated in balls: views.rounded_zone)")
    if wrong.any():
        raise SymgradError(f"model {model!r}: the oracle's double-double values are not "
                           f"certified by ball arithmetic: {cert.summary()}")
    doubt = missed & ~known
    why = ""
    if doubt.any():
        k = int(np.flatnonzero(doubt)[0])
        share = (f"half a ULP ({spacing[k]:.3g} / 2) of its value below 2^-969 (an allowance as "
                 "large as the value)" if exact_rule[k] else
                 f"{tol.zero_below:.3g} of its allowance {allowed[k]:.3g}")
        why = (f"the oracle's double-double value of entry {k} is certified by ARB balls only "
               f"to {e[k]:.3g}, more than {share} (the ball is too wide to decide it, up to "
               "the retry cap of views.certify_view: 4096 bits)")
    return OracleDoubt(doubt, int(e.size), int(cert.n_certified),
                       int((missed & known).sum()), why, tol.zero_below, entries, entries_why,
                       n_settled)


def mark_doubt(comp: Comparison, doubt: OracleDoubt | None) -> Comparison:
    """``comp`` with the entries of the doubtful columns, and the open entries, inconclusive,
    each row saying why.

    Arguments:
        comp: one backend's comparison, (N, K).
        doubt: ``judge_certificate``'s result (None: nothing in doubt).
    Returns:
        ``comp`` itself when nothing is in doubt, else a copy with those entries inconclusive.
    """
    if doubt is None or not (doubt.columns.any() or doubt.entries):
        return comp
    status = comp.status.copy()
    undecided = dict(comp.undecided or {})
    if doubt.columns.any():
        cols = np.zeros(status.shape, bool)
        cols[:, doubt.columns] = True
        open_ = cols & np.isin(status, _OPEN)
        status[open_] = INCONCLUSIVE
        for row in np.flatnonzero(open_.any(axis=1)):
            undecided.setdefault(int(row), doubt.why)
    for row, cols in doubt.entries.items():
        hit = cols[np.isin(status[row, cols], _OPEN)]
        if hit.size:
            status[row, hit] = INCONCLUSIVE
            undecided.setdefault(int(row), doubt.entries_why)
    return replace(comp, status=status, undecided=undecided)


_OPEN = (OK, LOSS, MISMATCH, KINK, DOMAIN)  # verdicts an entry in doubt cannot keep
