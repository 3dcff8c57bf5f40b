"""``symgrad.figure_scan.scan``: a deferred comparison's figures from one evaluation of each
entry are, bit for bit, those of the separate passes over the same comparison held whole
(every group's and the whole's stats, the medians, the ULP histogram, the worst entries with
their ties), whatever the statuses excuse; and the figures do follow the statuses."""

from dataclasses import replace

import numpy as np
import pytest

import symgrad.measures as measures
import symgrad.tensor.comparing as comparing
from symgrad.compare import INCONCLUSIVE, KINK, LOSS, SUSPECT, Tolerance
from symgrad.config import VerifyConfig
from symgrad.figure_scan import deferred
from symgrad.result import Result
from symgrad.tensor.comparing import compare_compact, kept_whole
from symgrad.tensor.streaming import worst_entries

K = 1800
BLOCKS = [("a", 1, 600), ("b", 600, 1333), ("c", 1333, K)]


def _comparison(dtype: str):
    """Three rows of awkward entries: exact zeros (ULPs of the terms), a subnormal, inf and NaN
    results, a NaN bound, entries of equal badness (ties), mixed statuses."""
    rng = np.random.default_rng(7)
    n = 3
    hi = rng.standard_normal((n, K)) * 10.0 ** rng.integers(-20, 20, (n, K))
    hi[:, 1:6] = [0.0, 5e-324, 1.0, -2.0, 3.0]
    lo = hi * 1e-17 * rng.standard_normal((n, K))
    got = hi * (1 + 1e-15 * rng.standard_normal((n, K)))
    got[:, 1] = 1e-300
    got[0, 900], got[1, 1400] = np.inf, np.nan
    E = np.abs(rng.standard_normal((n, K))) * 100
    E[2, 7] = np.nan
    hi[:, 100:120], lo[:, 100:120], E[:, 100:120] = 1.0, 0.0, 1.0  # ties: equal badness
    got[:, 100:120] = 1.0 + 2.0**-50
    got[:, 1700:1710] = 1.0 + 2.0**-50
    hi[:, 1700:1710], lo[:, 1700:1710], E[:, 1700:1710] = 1.0, 0.0, 1.0
    comp = compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=Tolerance(),
                           deferred=True)
    status = comp.status.copy()
    status[0, 10:20], status[1, 700:710], status[2, 1500:1505] = INCONCLUSIVE, KINK, SUSPECT
    status[:, 30:40] = LOSS
    return replace(comp, status=status)


def _result(comp) -> Result:
    return Result("m", VerifyConfig(), ["value"] + [f"d/dw[{k}]" for k in range(1, K)], BLOCKS,
                  {}, {"b": comp}, np.arange(3), [], [])


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@pytest.fixture
def small_scan(monkeypatch):
    """The scan's thresholds at this size: scanned, with medians, in several chunks a group."""
    monkeypatch.setattr(measures, "SCAN_FROM", 1)
    monkeypatch.setattr(measures, "MEASURE_WHOLE", 10)
    monkeypatch.setattr(measures, "MEASURE_CHUNK", 700)


@pytest.mark.parametrize("dtype, compact", [("float64", False), ("float32", False),
                                            ("float64", True)])
def test_one_pass_makes_the_separate_passes_figures(small_scan, monkeypatch, dtype, compact):
    if compact:  # ULPs and allowances kept in float32 (as beyond 50M entries)
        monkeypatch.setattr(comparing, "COMPACT_FROM", 0)
    comp = _comparison(dtype)
    assert deferred(comp) and not deferred(kept_whole(comp))
    fused, plain = _result(comp), _result(kept_whole(comp))
    worst = fused.worst_entries("b")
    assert plain.worst_entries("b") is None  # (held whole: the separate passes)
    got, want = fused.keep_figures("b", []), plain.keep_figures("b", [])
    assert len(want) == 2 * (len(BLOCKS) + 2) + 2  # stats, medians, the histogram, the
    # failing blocks' values (failpattern.kept_blocks: none here)
    assert _same(got, want)
    assert worst.tolist() == worst_entries(comp, None, 3).tolist()
    assert fused.summary("b") == plain.summary("b")


def test_the_scan_follows_the_statuses(small_scan):
    # the worst decided ratio leaves out what the statuses excuse: a scan that ignored them
    # (or read stale ones) would not move
    comp = _comparison("float64")
    before = _result(comp).keep_figures("b", [])[("stats", "b", 0, K)]
    m = measures.measures(kept_whole(comp), VerifyConfig())
    ratio = np.where(m.comparable, m.ratio, -np.inf)
    assert ratio.max() == before["worst_ratio"] > 0
    status = comp.status.copy()
    status[ratio == ratio.max()] = SUSPECT  # the worst decided entries: now undecided
    after = _result(replace(comp, status=status)).keep_figures("b", [])[("stats", "b", 0, K)]
    assert after["worst_ratio"] < before["worst_ratio"]
    assert after["worst_ulps"] == before["worst_ulps"]  # (any status)


@pytest.mark.parametrize("spill_from", [None, 1])
def test_the_medians_are_numpy_medians_of_the_shown_ulps(small_scan, monkeypatch, spill_from):
    # each group's median and the whole's, over float32 ULPs as shown (measures.ulps), equal
    # numpy's median of those entries, with the kept ULPs on the heap or spilled to a file
    # (tensor.spill: the whole median's second pass reads them back, pages released between)
    import symgrad.tensor.spill as spill
    if spill_from is not None:
        monkeypatch.setattr(spill, "SPILL_FROM", spill_from)
    comp = _comparison("float64")
    got = _result(comp).keep_figures("b", [])
    shown = measures.measures(kept_whole(comp), VerifyConfig()).ulps.astype(np.float32)
    for a, b in [(0, 1)] + [(a, b) for _, a, b in BLOCKS] + [(0, K)]:
        assert got[("median", "b", a, b)] == float(np.median(shown[:, a:b]))
    assert got[("median", "b", 0, K)] != got[("median", "b", 1, 600)]  # (not one group's)


def _compared(dtype: str, **keywords):
    """``_comparison``'s arrays compared again (``compare_compact``), with ``keywords``."""
    comp = _comparison(dtype)
    hi, lo, got, E = comp.figures.arrays
    return comp, compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=Tolerance(),
                                 deferred=True, **keywords)


@pytest.mark.parametrize("dtype, threads, later", [("float64", 1, False), ("float64", 2, True),
                                                   ("float32", 2, False), ("float32", 1, True)])
def test_the_compare_feeds_the_summary_the_same_figures(small_scan, dtype, threads, later):
    # the compare feeds the summary's pass (measures.summary_scan) from the errors it made,
    # on its threads; the summary finishes it with no read of the entries but of the chunks
    # whose excused statuses changed later (``later``: _comparison's inconclusive, kink,
    # suspect and loss marks): bit for bit the figures of the pass over the final statuses
    from symgrad import parallel
    with parallel.using(threads):
        comp, fed = _compared(dtype, scan=measures.summary_scan((3, K), BLOCKS))
    assert fed.figures.scan is not None and comp.figures.scan is None
    fed = replace(fed, status=comp.status) if later else fed
    plain = replace(comp, status=fed.status)
    reads = []
    real = fed.figures.errors
    fed.figures.errors = lambda cols: reads.append(cols) or real(cols)
    a, b = _result(fed), _result(plain)
    assert _same(a.keep_figures("b", []), b.keep_figures("b", []))
    assert a.worst_entries("b").tolist() == b.worst_entries("b").tolist()
    assert a.summary("b") == b.summary("b")
    # no status changed: no chunk read again; changed: only the chunks they are in
    changed = {*range(10, 20), *range(700, 710), *range(1500, 1505)}  # (LOSS excuses none)
    assert (len(reads) == 0) == (not later)
    assert all(set(range(c.start, c.stop)) & changed for c in reads)
