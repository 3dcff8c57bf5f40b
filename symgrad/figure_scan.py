"""The per-entry figures of a Result from the arrays of one column chunk (``entry_measures``:
absolute, relative, error / allowance, ULPs that mean something at exact zeros), their fold into
a row group's statistics (``fold``), and the one pass over a large comparison's columns that
makes every figure the summary keeps (``scan``: each group's and the whole's stats, each group's
median ULPs, the ULP histogram and, for a deferred comparison, the worst entries), chunk by
chunk through a reader: for a comparison whose ULPs and allowances are recomputed where read
(``tensor.streaming_figures``) one evaluation of each entry (``deferred_reader``; before it,
each figure had its own pass re-deriving every entry, ~5 per entry at GPT-2's 163M), for one
kept whole its arrays (``measures.ResultMeasures``).

>>> import numpy as np
>>> from symgrad.compare import Tolerance, compare
>>> from symgrad.tensor.streaming_figures import EntryFigures
>>> hi = np.array([[1.0, 2.0, 4.0]])
>>> got = hi + np.array([[0.0, 2**-51, 2**-49]])
>>> c = compare(hi, 0 * hi, got, np.ones_like(hi), backend="b", dtype="float64",
...             tol=Tolerance())
>>> from dataclasses import replace
>>> c = replace(c, error=None, figures=EntryFigures(hi, 0 * hi, got, np.ones_like(hi),
...             "float64", Tolerance(), np.float64))
>>> out = scan(c.status.shape, [(0, 1), (1, 3)], lambda a, b: [slice(a, b)],
...            deferred_reader(c, Tolerance()), medians=True)
>>> out[("stats", 1, 3)]["worst_ulps"], out[("median", 1, 3)], out["worst"].tolist()
(2.0, 1.5, [2, 1, 0])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .compare import (STATUS_NAMES, ULP_BINS, Comparison, Tolerance, measured_ulps, ulp_counts)
from .order_stats import ChunkMedian, medians as joint_medians
from .tensor import spill


@dataclass(frozen=True)
class Measures:
    """Per-entry figures of one backend for reports, arrays of shape (N, K)."""

    error: np.ndarray  # |got - exact|, absolute
    allowed: np.ndarray  # the allowance, absolute
    ratio: np.ndarray  # error / allowance (> 1 fails)
    relative: np.ndarray  # error / |exact|; at an exact (near-)zero, error / E (terms' scale)
    ulps: np.ndarray  # error in ULPs of |exact|; at an exact zero, in ULPs of E
    comparable: np.ndarray  # exact value finite, not a kink, inconclusive or suspect: ratio
    #                         means something
    exact: np.ndarray | None = None  # |exact|


# kinks (any subgradient is exact), inconclusive and suspect entries (neither ok nor failing:
# not decided) have no meaningful ratio
EXCUSED = [k for k, name in STATUS_NAMES.items() if name in ("kink", "inconclusive", "suspect")]
WORST = 3  # the worst entries of any status a backend lists (``streaming.findings_of``)


def entry_measures(exact: np.ndarray, got: np.ndarray, error: np.ndarray, allowed: np.ndarray,
                   comp_ulps: np.ndarray, status: np.ndarray, dtype: str,
                   tol: Tolerance, *, excused: np.ndarray | None = None) -> Measures:
    """The figures of some entries from their compare's numbers.

    Arguments:
        exact, got: the oracle's value (float64) and the backend's.
        error, allowed: the absolute error and allowance (``compare.entry_errors``).
        comp_ulps: the error in ULPs of |exact| (``compare.error_ulps``: inf where ``got`` is
            not finite).
        status: the entries' statuses.
        dtype, tol: the backend's dtype and the tolerance.
        excused: ``excused_of(status)`` where the caller has it (a compare's chunk also feeds
            it to ``Scan.add``), else formed here.
    Returns:
        Their ``Measures``: at an exact value below the rounding scale of its own terms (zero,
        or nearly zero by cancellation) the error is measured against the terms
        (``compare.measured_ulps``, the precision-loss flag's formula)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ulps, scale = measured_ulps(error, exact, allowed, comp_ulps, dtype, tol)
        infinite = ~np.isfinite(got)
        ulps = _where_not(ulps, infinite, np.inf)  # (each figure in place on its own array)
        relative = (np.divide(error, scale, out=scale) if _owned(scale, error)
                    else error / scale)
        ratio = np.divide(error, allowed)  # where(allowed > 0, e / a, where(e == 0, 0, inf))
        if np.shape(ratio) == np.shape(allowed):
            undefined = ~(allowed > 0)
            if undefined.any():
                ratio[undefined] = np.where(np.asarray(error)[undefined] == 0, 0.0, np.inf)
        else:
            ratio = np.where(allowed > 0, ratio, np.where(error == 0, 0.0, np.inf))
        comparable = np.isfinite(exact)
        comparable &= ~(excused_of(status) if excused is None else excused)
        ratio = _where_not(ratio, infinite, np.inf)
    return Measures(error, allowed, ratio, relative, ulps, comparable, np.abs(exact))


EXCUSED_TABLE = np.zeros(256, bool)  # the excused statuses by their uint8 code
EXCUSED_TABLE[[k % 256 for k in EXCUSED]] = True


def excused_of(status: np.ndarray) -> np.ndarray:
    """``np.isin(status, EXCUSED)``: int8 codes by a lookup table (one pass).

    >>> excused_of(np.array([0, 6, 7, 9, 1], np.int8)).tolist()
    [False, True, True, True, False]
    """
    status = np.asarray(status)
    if status.dtype == np.int8:
        return EXCUSED_TABLE[status.view(np.uint8)]
    return np.isin(status, EXCUSED)


def _owned(a, other) -> bool:
    """Whether ``a`` is an array of ``other``'s shape that may be written in place."""
    return (isinstance(a, np.ndarray) and a.flags.writeable and a.base is None
            and a.shape == np.shape(other) and a.dtype == np.float64)


def _where_not(a: np.ndarray, mask: np.ndarray, value: float) -> np.ndarray:
    """``np.where(mask, value, a)``, in place where ``a`` is its own array of that shape."""
    if _owned(a, mask):
        np.copyto(a, value, where=mask)
        return a
    return np.where(mask, value, a)


def masked_max(values: np.ndarray, mask: np.ndarray) -> float:
    """The max over ``mask`` (NaN entries ignored; inf is a non-finite result and counts; 0.0
    when none is left: the figures are >= 0), in one reduction (no masked copies)."""
    top = float(np.fmax.reduce(values, axis=None, where=mask, initial=-np.inf))
    return 0.0 if top == -np.inf else top


def fold(parts: Iterable[Measures], into: dict | None = None) -> dict:
    """Fold chunk measures into (worst ULPs, worst error/allowance, worst relative error, the
    entry test's resolution: the smallest allowance / |exact| over comparable entries with a
    nonzero exact value); maxima and a minimum: the same numbers in any grouping."""
    st = dict(into or {"worst_ulps": 0.0, "worst_ratio": 0.0, "worst_rel": 0.0,
                       "resolution": float("inf"), "worst_ratio_all": 0.0})
    for m in parts:
        u = m.ulps
        st["worst_ulps"] = (float("inf") if not np.isfinite(u).all() else
                            max(st["worst_ulps"], float(u.max()) if u.size else 0.0))
        st["worst_ratio"] = max(st["worst_ratio"], masked_max(m.ratio, m.comparable))
        st["worst_ratio_all"] = max(st.get("worst_ratio_all", 0.0),
                                    masked_max(m.ratio, np.isfinite(m.exact)))
        st["worst_rel"] = max(st["worst_rel"], masked_max(m.relative, m.comparable))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            res = np.fmin.reduce(m.allowed / m.exact, axis=None, initial=np.inf, where=(
                m.comparable & (m.exact > 0) & np.isfinite(m.allowed)))
        st["resolution"] = min(st["resolution"], float(res))
    return st


def merged(whole: dict | None, part: dict | None) -> dict | None:
    """Two folds' figures as one fold of both (``fold``: the same numbers in any grouping)."""
    if whole is None or part is None:
        return part if whole is None else whole
    return {k: min(whole[k], part[k]) if k == "resolution" else max(whole[k], part[k])
            for k in whole}


def deferred(comp: Comparison) -> bool:
    """Whether ``comp``'s ULPs and allowances are recomputed where read from its figures alone
    (``compare_compact(deferred=True)``): then ``scan`` may make its figures in one pass."""
    return (comp.figures is not None and comp.error is None and not comp.reduced
            and not isinstance(comp.ulps, np.ndarray)
            and not isinstance(comp.allowed_ulps, np.ndarray))


@dataclass(frozen=True)
class ChunkFigures:
    """What ``scan`` reads of one column chunk, from one evaluation of its entries."""

    measures: Measures  # the chunk's figures (``entry_measures``)
    ulps: np.ndarray  # the comparison's ULPs as kept (the histogram: ``compare.ulp_counts``)
    allowed: np.ndarray | None = None  # its allowances in ULPs as kept: the worst entries by
    #                                    badness are found only where given


def scan(shape: tuple[int, int], groups: list[tuple[int, int]],
         chunks: Callable[[int, int], Iterable[slice]], read: Callable[[slice], ChunkFigures],
         *, medians: bool) -> dict:
    """Every figure the summary keeps of a large comparison, in one pass over its columns,
    chunk by chunk within each row group (``Scan`` fed by ``read``): each group's stats
    (``fold``) and median ULPs (``medians``), and, where the groups tile every column, the
    whole's stats, its median, the ULP histogram and, where ``read`` gives the allowances,
    the flat indices of the ``WORST`` entries by badness.

    Arguments:
        shape: the comparison's (rows, columns).
        groups: (first, end) columns of each row group (the value, each parameter block).
        chunks: (first, end) -> the column slices to read them in.
        read: a chunk's figures (``deferred_reader`` for a deferred comparison: one
            evaluation of each entry; ``ResultMeasures`` reads a comparison kept whole).
        medians: whether the medians are made.
    Returns:
        ``Scan.finish``'s figures."""
    s = Scan(shape, groups, chunks, medians=medians)
    for i, (_, part) in enumerate(s.parts):
        s.add(i, read(part))
    return s.finish()


class Scan:
    """``scan``'s pass, fed chunk by chunk in any order, from any thread (``add``), finished
    once every chunk is in (``finish``). The compare of a large deferred comparison feeds it
    the figures of the entries it has just evaluated (``tensor.comparing.compare_compact``:
    hi, lo, got and E read once for the compare and every figure of the summary, on the
    compare's threads), with the compare's statuses; ``finish`` reads again only the chunks
    whose excused entries (kink, inconclusive, suspect) the later tests changed.

    Each group's float32 ULPs are kept side by side in one array (tiled groups: GPT-2's
    0.65 GB, spilled, ``tensor.spill``), so the whole median's second pass (an exact
    selection, ``order_stats.ChunkMedian``) reads them back instead of evaluating every entry
    again; the histogram is ``compare.ulp_counts`` of the compare's ULPs; the worst entries by
    badness (error / allowance as kept, ``tensor.comparing.badness``; ties in index order:
    ``streaming.worst_entries``' entries) are each chunk's candidates at or above the running
    floor (the ``WORST``-th largest found so far: a lower, stale floor only adds candidates).

    Arguments:
        shape: the comparison's (rows, columns).
        groups: (first, end) columns of each row group.
        chunks: (first, end) -> the column slices of that group.
        medians: whether the medians are made.
    """

    def __init__(self, shape: tuple[int, int], groups: list[tuple[int, int]],
                 chunks: Callable[[int, int], Iterable[slice]], *, medians: bool) -> None:
        n, width = shape
        self.shape, self.groups, self.medians = shape, list(groups), medians
        self.tiled = groups[-1][1] == width and all(
            x[1] == y[0] for x, y in zip(groups, groups[1:]))
        self.parts = [(g, part) for g, (a, b) in enumerate(groups) for part in chunks(a, b)]
        self._at = np.cumsum([0] + [n * (b - a) for a, b in groups])  # each group's ULPs
        self.kept = (spill.empty((int(self._at[-1]),), np.float32) if medians else None)
        self.stats: list = [None] * len(self.parts)
        self.excused: list = [None] * len(self.parts)  # the statuses' excused entries, fed
        self.counts = np.zeros(len(ULP_BINS) - 1, np.int64)
        self.middle = ChunkMedian()  # the whole's median; each group's:
        self.group_medians = [ChunkMedian() for _ in groups]
        self.found, self.bads = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        self.ranked = False  # whether the chunks gave allowances (the worst entries found)
        self.floor = -np.inf
        self._lock = threading.Lock()

    def add(self, i: int, c: ChunkFigures, status: np.ndarray | None = None, *,
            excused: np.ndarray | None = None) -> None:
        """Chunk ``i``'s (of ``parts``) figures; ``status``: the statuses ``c`` was measured
        with, where they may change before ``finish`` (its excused entries are kept;
        ``excused``: ``excused_of(status)`` where the caller formed it already)."""
        part, width = self.parts[i][1], self.shape[1]
        where = None if status is None else np.flatnonzero(
            excused_of(status) if excused is None else excused)
        high = counts = found = None
        if self.medians:
            u = c.measures.ulps.astype(np.float32).reshape(-1)
            self.kept[self.kept_at(i):self.kept_at(i) + u.size] = u
            high = ChunkMedian.counted(u)  # (the group's and the whole's: one histogram)
        if self.tiled:
            counts = ulp_counts(c.ulps)
            if c.allowed is not None:
                bad, floor = _badness(c.ulps, c.allowed), self.floor
                if bad.size and bad.max() >= floor:  # (else none of it can be kept)
                    # only entries at or above the floor can be kept: the partition reads
                    # those (in position order: ties as in the whole chunk)
                    near = np.flatnonzero(bad >= floor) if floor > -np.inf else None
                    top = _top(bad, WORST) if near is None else near[_top(bad[near], WORST)]
                    k = top % (part.stop - part.start) + part.start
                    found = (top // (part.stop - part.start) * width + k, bad[top])
        self.take(i, fold([c.measures]), where, high, counts, found,
                  ranked=c.allowed is not None)

    def kept_at(self, i: int) -> int:
        """Where chunk ``i``'s float32 ULPs start in ``kept`` (row-major in the chunk)."""
        g, part = self.parts[i]
        return int(self._at[g]) + self.shape[0] * (part.start - self.groups[g][0])

    def take(self, i: int, stats: dict, excused: np.ndarray | None, high: tuple | None,
             counts: np.ndarray | None, found: tuple | None, *, ranked: bool) -> None:
        """Chunk ``i``'s pieces, however made (``add``; the compare's fused loop,
        ``compare.fused``): its ``fold``, its excused entries' positions (None: its statuses
        are final), ``ChunkMedian.counted`` of its kept ULPs (medians), the ULP histogram's
        counts and its worst candidates (flat indices, badness) where tiled."""
        g = self.parts[i][0]
        self.stats[i] = stats
        self.excused[i] = excused if excused is not None else self.excused[i]
        with self._lock:
            if high is not None:
                self.group_medians[g].take(high)
            if not self.tiled:
                return
            self.counts += counts
            if high is not None:
                self.middle.take(high)
            if ranked:
                self.ranked = True
                if found is not None:
                    self.found.append(found[0])
                    self.bads.append(found[1])
                    self.floor = _kth_largest(self.bads, WORST)

    def finish(self, status: np.ndarray | None = None,
               read: Callable[[slice], ChunkFigures] | None = None) -> dict:
        """The figures, once every chunk was added: {("stats", a, b): stats, ("median", a,
        b): float, ...; where tiled also "ulp_counts": counts and, where the chunks gave
        allowances, "worst": flat indices, worst first}. ``status``: the comparison's final
        statuses, where the chunks were fed with earlier ones: a chunk whose excused entries
        differ has its stats made again from ``read``."""
        n, width = self.shape
        stats = list(self.stats)
        for i, (_, part) in enumerate(self.parts):
            if status is not None and not np.array_equal(
                    self.excused[i], np.flatnonzero(excused_of(status[:, part]))):
                stats[i] = fold([read(part).measures])
        out: dict = {}
        whole, by_group = None, [None] * len(self.groups)  # (one walk over the parts)
        for i, (g, _) in enumerate(self.parts):
            by_group[g] = merged(by_group[g], stats[i])
        for (a, b), st in zip(self.groups, by_group):
            out[("stats", a, b)] = st or fold([])
            whole = merged(whole, st)
        if self.medians:  # every group's and the whole's in one second pass
            found = joint_medians(self.group_medians, lambda g: _read_back(
                self.kept[int(self._at[g]):int(self._at[g + 1])]),
                self.middle if self.tiled else None)
            for (a, b), m in zip(self.groups, found):
                out[("median", a, b)] = m
            if self.tiled:
                out[("median", 0, width)] = found[-1]
        if self.tiled:
            out[("stats", 0, width)] = whole or fold([])
            out["ulp_counts"] = self.counts.copy()
            if self.ranked:
                where, bad = np.concatenate(self.found), np.concatenate(self.bads)
                out["worst"] = where[np.lexsort((where, -bad))[:WORST]]
        return out


READ_BACK = 1 << 22  # entries of the kept ULPs read back at once (16 MiB)


def _read_back(kept: np.ndarray) -> Iterable[np.ndarray]:
    """``kept`` chunk by chunk, its spilled pages released after each (``tensor.spill``)."""
    for a in range(0, kept.size, READ_BACK):
        yield kept[a:a + READ_BACK]
        spill.release()


def deferred_reader(comp: Comparison, tol: Tolerance) -> Callable[[slice], ChunkFigures]:
    """``scan``'s reader of a deferred comparison (``deferred``): a chunk's figures from one
    evaluation of each entry (``EntryFigures.errors``).

    Arguments:
        comp: the comparison (statuses final).
        tol: the tolerance.
    Returns:
        read, as ``scan`` takes it."""
    fig = comp.figures
    hi, _, got, _ = fig.arrays

    def read(part: slice) -> ChunkFigures:
        err, _, entry_ulps, allowed_abs, allowed = fig.errors(part)
        m = entry_measures(np.asarray(hi[:, part], np.float64), got[:, part], err, allowed_abs,
                           entry_ulps, comp.status[:, part], comp.dtype, tol)
        return ChunkFigures(m, fig.kept(entry_ulps), fig.kept(allowed))

    return read


def _badness(ulps: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """error / allowance in float32 as ``tensor.comparing.badness`` makes it from the kept
    ULPs and allowances: inf where the error is not finite, -1 where undefined."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        bad = (ulps / allowed).astype(np.float32, copy=False).reshape(-1)
    bad[~np.isfinite(ulps.reshape(-1))] = np.inf
    bad[np.isnan(bad)] = -1.0
    return bad


def _kth_largest(parts: list[np.ndarray], k: int) -> float:
    """The ``k``-th largest of the values in ``parts`` (-inf when there are fewer): a chunk
    whose badness stays below it holds none of the ``k`` worst entries (ties with it are
    still read: the index decides them)."""
    values = np.concatenate(parts)
    return float(np.partition(values, values.size - k)[values.size - k]) if (
        values.size >= k) else -np.inf


def _top(bad: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` largest of ``bad``, ties in position order (any order: the
    caller orders the candidates): the largest by a partition, then those above the
    ``limit``-th and the first ones equal to it."""
    if bad.size <= limit:
        return np.arange(bad.size)
    kth = bad.size - limit
    threshold = np.partition(bad, kth)[kth]
    above = np.flatnonzero(bad > threshold)
    ties = np.flatnonzero(bad == threshold)[:limit - above.size]
    return np.concatenate([above, ties])
