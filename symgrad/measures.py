"""Per-entry error figures of a Result (absolute, relative, error / allowance, ULPs that mean
something at exact zeros) and the statistics built on them, memoised whole for ordinary
results and, from ``SCAN_FROM`` entries, computed column chunk by column chunk in one pass
(a finding's from its own column), so that str(result) costs one pass, not whole-size arrays
(``ResultMeasures``, a part of ``symgrad.result.Result``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .compare import Comparison, dtype_info, error_ulps, ulp
from .config import VerifyConfig
from .errors import SymgradError
from .failpattern import kept_blocks
from .figure_scan import (ChunkFigures, Measures, Scan, deferred, deferred_reader,
                          entry_measures, fold, scan)
from .verdict import PASS

if TYPE_CHECKING:  # annotations only
    from .result import Failure


MEASURE_WHOLE = 20_000_000  # entries: up to here a Result memoises its measures whole
MEASURE_CHUNK = 1 << 18  # entries measured at once above that (~15 float64 temporaries each,
#   2 MiB: a large compare's chunks, 8 MiB before, faulted ~120 MiB in again per chunk and
#   thread past glibc's trim threshold (GPT-2 at 1 layer: compare 13.1 -> 8.9 CPU s))
SCAN_FROM = 1 << 22  # entries: from here the table's figures (stats, a finding's measure) are
#   read column chunk by column chunk in one pass, never held whole (a 14M-entry 1-layer GPT-2:
#   str(result) took 8 CPU s and +1.3 GiB building seven whole float64 arrays per backend);
#   ``Result.measures(backend)`` asked for whole still memoises them up to MEASURE_WHOLE
STREAM_FROM = MEASURE_WHOLE  # entries (samples x columns) of one backend from which the tensor
#   pipeline keeps only its figures (``keep_figures``) and reduces its comparison


def summary_scan(shape: tuple[int, int], blocks) -> Scan | None:
    """The summary's pass (``figure_scan.Scan``) over a comparison of ``shape`` whose row
    groups are the value and ``blocks``, ready for its compare to feed
    (``tensor.comparing.compare_compact(scan=...)``): the groups and chunks
    ``ResultMeasures`` reads it in; None below ``SCAN_FROM`` entries (no pass).

    Arguments:
        shape: (samples, columns); blocks: (name, first, end) of each parameter block.
    Returns:
        The ``Scan``, or None.

    >>> [p for _, p in summary_scan((1, 1 << 22), [("w", 1, 1 << 22)]).parts][:2]
    [slice(0, 1, None), slice(1, 262145, None)]
    """
    n, width = shape
    if n * width < SCAN_FROM:
        return None
    return Scan(shape, _groups(blocks), lambda a, b: _column_chunks(n, a, b),
                medians=n * width > MEASURE_WHOLE)


def _groups(blocks) -> list[tuple[int, int]]:
    """The summary's row groups: the value (column 0), then each parameter block."""
    return [(0, 1)] + [(a, b) for _, a, b in blocks]


def _column_chunks(n: int, a: int, b: int):
    """Column slices of a..b of at most ``MEASURE_CHUNK`` entries each (n rows)."""
    step = max(1, MEASURE_CHUNK // max(n, 1))
    return [slice(c, min(b, c + step)) for c in range(a, b, step)]


def measures(comp: Comparison, config: VerifyConfig, cols: slice = slice(None)) -> Measures:
    """Error figures that mean something at every entry, including exact zeros (where ULPs of
    zero would count subnormal steps): there the error is measured against the scale E of the
    terms that produced the zero, the bound's own scale. ``cols``: only those columns."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        exact, got, error, allowed, comp_ulps = _errors(comp, config, cols)
    return entry_measures(exact, got, error, allowed, comp_ulps, _cols(comp.status, cols),
                          comp.dtype, config.tolerance)


def _cols(a, cols: slice):
    """a[:, cols]: a deferred figure (tensor/streaming_figures) reads only those columns."""
    return None if a is None else (a if hasattr(a, "ndim") else np.asarray(a))[:, cols]


def _errors(comp: Comparison, config: VerifyConfig, cols: slice) -> tuple:
    """(exact, got, absolute error, absolute allowance, error in ULPs of |exact|) of ``cols``
    (under the caller's errstate)."""
    exact = np.asarray(_cols(comp.expected, cols), dtype=np.float64)
    got = _cols(comp.got, cols)
    # the compare's own errors and allowances (``compare.entry_errors``): kept, or recomputed
    # from what they were made of (``Comparison.figures``); only a comparison made by hand has
    # neither (its error from the oracle's high part, its allowance from the ULPs)
    if comp.error is not None:
        error, allowed = _cols(comp.error, cols), _cols(comp.allowed_abs, cols)
    elif comp.figures is not None:
        error, allowed = comp.figures.absolute(cols)
    else:
        error = np.abs(got - exact)
        allowed = (_cols(comp.allowed_abs, cols) if comp.allowed_abs is not None
                   else _cols(comp.allowed_ulps, cols) * ulp(exact, comp.dtype))
    return exact, got, error, allowed, error_ulps(error, exact, got, comp.dtype)[1]


class ResultMeasures:
    """The measuring half of ``Result`` (it holds ``comparisons``, ``config``, ``blocks``,
    ``oracle_samples``, ``outputs`` and a ``_memo`` dict)."""

    def measures(self, backend: str, cols: slice | None = None) -> "Measures":
        """Absolute error, allowance, error/allowance, relative error and shown ULPs per entry
        (of the columns ``cols``; all by default). Memoised whole for results up to
        ``MEASURE_WHOLE`` entries; above (GPT-2: 163M entries, five float64 arrays would take
        6.5 GB per backend) computed for the columns asked, every time. A reduced comparison
        (``Comparison.reduced``: its per-entry arrays were dropped once ``keep_figures`` had
        memoised what the table, the JSON and the reports read) has none to give: an error."""
        comp = self.comparisons[backend]
        if comp.reduced:
            a, b, _ = (cols or slice(None)).indices(comp.status.shape[1])
            raise SymgradError(
                f"backend {backend!r}: the per-entry figures of columns {a}..{b - 1} were not "
                "kept (the streaming compare keeps only each backend's figures from "
                f"{STREAM_FROM:.0e} entries); ask for the value, a parameter block, a finding "
                "or the whole")
        if comp.status.size <= MEASURE_WHOLE:
            key = ("measures", backend)
            if key not in self._memo:
                self._memo[key] = measures(comp, self.config)
            m = self._memo[key]
            return m if cols is None else Measures(*(a[:, cols] for a in (
                m.error, m.allowed, m.ratio, m.relative, m.ulps, m.comparable, m.exact)))
        return measures(comp, self.config, cols if cols is not None else slice(None))

    def _part(self, backend: str, cols: slice) -> "Measures":
        """The figures of the columns ``cols``, for the table's statistics and a finding's
        measure: sliced from the whole where those are memoised, else (from ``SCAN_FROM``
        entries) measured for those columns alone, never memoised whole."""
        comp = self.comparisons[backend]
        if (comp.reduced or ("measures", backend) in self._memo
                or comp.status.size < SCAN_FROM):
            return self.measures(backend, cols)
        return measures(comp, self.config, cols)

    def _chunks(self, backend: str, cols: slice | None):
        """Column slices of ``cols`` of at most ``MEASURE_CHUNK`` entries each."""
        comp = self.comparisons[backend]
        n, width = comp.status.shape
        a, b, _ = (cols or slice(None)).indices(width)
        if comp.status.size < SCAN_FROM or ("measures", backend) in self._memo:
            yield slice(a, b)
            return
        yield from _column_chunks(n, a, b)

    def _stats(self, backend: str, cols: slice | None) -> dict:
        """worst ULPs, worst error/allowance, worst relative error over ``cols`` (memoised)."""
        width = self.comparisons[backend].status.shape[1]
        a, b, _ = (cols or slice(None)).indices(width)
        key = ("stats", backend, a, b)
        if key not in self._memo and self.comparisons[backend].status.size >= SCAN_FROM:
            self._scan(backend)  # one pass for every row group, the whole (and the medians)
        if key not in self._memo:
            self._memo[key] = fold([self._part(backend, part)
                                    for part in self._chunks(backend, slice(a, b))])
        return self._memo[key]

    def _scan(self, backend: str) -> None:
        """A large result's one pass over its columns, chunk by chunk within each row group
        (the value, each parameter block; ``figure_scan.scan``): the stats and the median ULPs
        of every group and of the whole, the ULP histogram and, for a deferred comparison, the
        worst entries, memoised."""
        if self._memo.get(("scanned", backend)):
            return  # columns that are no row group: measured by the caller
        self._memo[("scanned", backend)] = True
        comp = self.comparisons[backend]
        n, width = comp.status.shape
        medians = comp.status.size > MEASURE_WHOLE  # below: asked for alone (JSON), float64
        groups = _groups(self.blocks)
        read = (deferred_reader(comp, self.config.tolerance) if deferred(comp)
                else self._reader(backend))  # (deferred: one evaluation of each entry)
        fed = getattr(comp.figures, "scan", None) if deferred(comp) else None
        if fed is not None and (fed.groups, fed.medians) == (groups, medians) and [
                p for _, p in fed.parts] == [c for a, b in groups
                                             for c in self._chunks(backend, slice(a, b))]:
            figures = fed.finish(comp.status, read)  # its compare fed it: no second read
        else:
            figures = scan((n, width), groups, lambda a, b: self._chunks(backend, slice(a, b)),
                           read, medians=medians)
        self._memo.update({(k, backend) if isinstance(k, str) else (k[0], backend, *k[1:]):
                           v for k, v in figures.items()})

    def _reader(self, backend: str) -> Callable[[slice], ChunkFigures]:
        """``figure_scan.scan``'s reader of a comparison kept whole: a chunk's figures
        (``_part``) with the compare's own ULPs (the histogram; no worst entries: those the
        streaming compare finds itself)."""
        comp = self.comparisons[backend]
        return lambda part: ChunkFigures(self._part(backend, part), comp.ulps[:, part])

    def worst_entries(self, backend: str) -> np.ndarray | None:
        """Flat indices of ``backend``'s worst entries by badness where its figures' one pass
        finds them (a deferred comparison, ``figure_scan.scan``: the entries and order of
        ``tensor.streaming.worst_entries(comp, None, 3)``), else None."""
        comp = self.comparisons[backend]
        if deferred(comp) and comp.status.size >= SCAN_FROM:
            self._scan(backend)
        return self._memo.get(("worst", backend))

    def keep_figures(self, backend: str, findings) -> dict:
        """Every figure of ``backend`` that the table, the JSON and the reports read - the
        stats and median ULPs of the value, of each parameter block and of the whole, and the
        measure of each finding - memoised, so that its comparison can be reduced
        (``Comparison.reduce``) and the figures carried into the run's ``Result``.

        Arguments:
            backend: a backend of this result (its comparison still whole).
            findings: the ``Failure`` records of that backend the result will list.
        Returns:
            The memo entries of those figures (to ``update`` another result's ``_memo``)."""
        width = self.comparisons[backend].status.shape[1]
        groups = [(0, 1)] + [(a, b) for _, a, b in self.blocks] + [(0, width)]
        for a, b in groups:
            self._stats(backend, slice(a, b))
            self.median_ulps(backend, slice(a, b))
        for f in findings:
            self.measure(f)
        self._memo[("failing_blocks", backend)] = kept_blocks(  # the text's per-block lines,
            self.comparisons[backend], self.blocks)  # once its suspicions are decided
        return {k: v for k, v in self._memo.items() if k[0] in (
            "stats", "median", "measure", "ulp_counts", "failing_blocks") and k[1] == backend}

    def summary(self, backend: str) -> dict:
        """How close ``backend`` came to failing: the worst error relative to its allowance, the
        worst relative error in the dtype's digits, and the entries per status.

        ``worst_error_over_allowance`` is the worst over the decided entries (ok, precision
        loss, failing); where every decided entry is exact (error 0) while some entries are
        undecided (inconclusive or suspect), it is the worst over every entry instead (undecided
        ones included: a 0 would claim an agreement the run did not show).
        ``worst_error_over_allowance_decided`` and ``..._every_entry`` are the two figures."""
        comp = self.comparisons[backend]
        info = dtype_info(comp.dtype)
        st = self._stats(backend, None)
        counts = self.counts(backend)
        decided, rel = st["worst_ratio"], st["worst_rel"]
        every = st.get("worst_ratio_all", decided)  # (figures memoised before it: decided)
        undecided = counts.get("inconclusive", 0) + counts.get("suspect", 0)
        ratio = every if decided == 0 and undecided else decided
        dtype_digits = float(np.log10(2.0 / info.eps))
        digits = dtype_digits if rel == 0 else float(np.clip(-np.log10(rel), 0, dtype_digits))
        verdict = self.backend_verdict(backend)
        return {"backend": backend, "dtype": comp.dtype, "ok": verdict == PASS,
                "verdict": verdict, "decides": self.decides(backend),
                "worst_error_over_allowance": ratio,
                "worst_error_over_allowance_decided": decided,
                "worst_error_over_allowance_every_entry": every, "worst_relative_error": rel,
                "worst_correct_digits": round(digits, 2),
                "dtype_digits": round(dtype_digits, 2), "counts": counts,
                "resolution": self.resolution(backend)}

    def resolution(self, backend: str) -> dict:
        """The smallest backward scale error (got = (1 + s) * exact on every gradient entry)
        this run's tests could have caught on ``backend``.

        The entry test sees it where s * |exact| exceeds the allowance: s_entry is the smallest
        allowance / |exact| over the comparable gradient entries with a nonzero exact value.
        Where the run also had the user's code in float64 (``float64_seen``, set by the tensor
        pipeline), two more tests could see it: the float64 rule check
        (``symgrad.tensor.rulecheck``), which proves an entry where the float64 run's error
        exceeds float64's allowance and the rigorous enclosure's radius (s_rule: the least of
        those over |exact|, over the entries it may prove), and the block test's lower floor
        where a float64 re-run decides (``symgrad.compare.blockflags``: no block is flagged
        below rerun_floor u, so that much at the least; its noise term is not counted). The
        block test at its usual floor compares each block with the sample's other blocks
        (common mode), and the pooled test's threshold is not exposed by
        ``compare.systematic_blocks``: neither is counted.

        Arguments:
            backend: a backend of this result.
        Returns:
            {"entry": s_entry, "rule_check": s_rule, "rerun_floor": rerun_floor u (each None
            where that test did not run or resolves no scale), "smallest": the least of them,
            "tests": the tests counted, "dtype", "samples": samples compared, "text": one line
            in words}.
        """
        comp = self.comparisons[backend]
        s_entry = min((self._stats(backend, slice(a, b))["resolution"]
                       for _, a, b in self.blocks), default=float("inf"))
        seen = getattr(self, "float64_seen", {}).get(backend, {})
        u = dtype_info(comp.dtype).eps / 2
        found = {"entry": float(s_entry) if np.isfinite(s_entry) else None,
                 "rule_check": seen.get("rule_check"),
                 "rerun_floor": seen["rerun_floor"] * u if "rerun_floor" in seen else None}
        words = {"entry": "entry test", "rule_check": "float64 rule check",
                 "rerun_floor": "block test at the float64 re-run floor"}
        ran = [k for k in found if k == "entry" or k in seen]
        counted = {k: found[k] for k in ran if found[k] is not None}
        smallest = min(counted.values(), default=None)
        n = int(comp.status.shape[0])
        at = f"in {comp.dtype} at {n} sample{'s' * (n != 1)}"
        if smallest is not None:
            each = "; ".join(f"{words[k]} {'>= ' * (k == 'rerun_floor')}{v:.2g}"
                             for k, v in counted.items())
            text = (f"a backward scale error (got = (1 + s) x exact) below {smallest:.2g} "
                    f"relative would not be seen {at} ({each}; the pooled test is not "
                    "counted)")
        else:
            text = f"no gradient entry resolves a backward scale error {at}"
        return {**found, "smallest": smallest, "tests": ", ".join(words[k] for k in ran),
                "dtype": comp.dtype, "samples": n, "text": text}

    def worst_ulps(self, backend: str, cols: slice | None = None) -> float:
        """The largest error in ULPs (at an exact zero: ULPs of the scale of its terms)."""
        return self._stats(backend, cols)["worst_ulps"]

    def median_ulps(self, backend: str, cols: slice | None = None) -> float:
        comp = self.comparisons[backend]
        a, b, _ = (cols or slice(None)).indices(comp.status.shape[1])
        key = ("median", backend, a, b)
        if key not in self._memo and comp.status.size > MEASURE_WHOLE:
            self._scan(backend)  # every row group's median and the whole's, in one pass
        if key not in self._memo:  # (float64 up to MEASURE_WHOLE: one copy of these ULPs)
            big = comp.status.size > MEASURE_WHOLE
            parts = [self._part(backend, c).ulps for c in self._chunks(backend, slice(a, b))]
            parts = [p.astype(np.float32).reshape(-1) if big else p.reshape(-1) for p in parts]
            u = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._memo[key] = (float(np.median(u, overwrite_input=len(parts) > 1))
                               if u.size else 0.0)
        return self._memo[key]

    def worst_ratio(self, backend: str, cols: slice | None = None) -> float:
        """The largest error / allowance over comparable entries (> 1 fails)."""
        return self._stats(backend, cols)["worst_ratio"]

    def locate(self, finding: "Failure") -> tuple[int, int]:
        """(row, column) of a finding in the comparison arrays: O(log n) in the samples, O(1)
        in the entries for a finding that carries its column (every one the pipeline makes)."""
        row = int(np.searchsorted(self.oracle_samples, finding.sample))
        if finding.column >= 0:
            return row, finding.column
        if "column_of" not in self._memo:  # a hand-made finding: one index, built once
            self._memo["column_of"] = {name: k for k, name in enumerate(self.outputs)}
        return row, self._memo["column_of"][finding.output]

    def measure(self, finding: "Failure") -> dict:
        """A finding's absolute error, allowance, error/allowance and relative error."""
        i, k = self.locate(finding)
        key = ("measure", finding.backend, i, k)
        if key not in self._memo:
            m = self._part(finding.backend, slice(k, k + 1))
            self._memo[key] = {"error": float(m.error[i, 0]), "allowed": float(m.allowed[i, 0]),
                               "error_over_allowance": float(m.ratio[i, 0]),
                               "relative_error": float(m.relative[i, 0]),
                               "ulps": float(m.ulps[i, 0])}
        return dict(self._memo[key])

