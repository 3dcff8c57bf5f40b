"""``symgrad.compare.fused``: a large compare's chunk in one compiled loop gives, bit for bit,
what numpy's path gives (``compare`` + ``entry_measures`` + ``Scan.add``): every status, each
chunk's fold, the kept float32 ULPs and their median counts, the ULP histogram, the worst
candidates and the summary's figures; on awkward entries (NaN, inf, -0.0, subnormals, exact
zeros, values beyond float32, a NaN bound, float32 lo and E, ULPs beyond float32) in every
dtype; and a chunk numpy's ``ulp`` takes its log2 path on is left to numpy."""

import numpy as np
import pytest

import symgrad.measures as measures
import symgrad.tensor.comparing as comparing
from symgrad import parallel
from symgrad.compare import Tolerance
from symgrad.compare.fused import compare_chunk
from symgrad.figure_scan import EXCUSED_TABLE
from symgrad.tensor.comparing import compare_compact

K = 4000
BLOCKS = [("a", 1, 1500), ("b", 1500, 2600), ("c", 2600, K)]


def _arrays(seed: int, wide: bool, sliver: bool):
    rng = np.random.default_rng(seed)
    n = 3
    hi = rng.standard_normal((n, K)) * 10.0 ** rng.integers(-40, 40, (n, K))
    hi[:, 1:9] = [0.0, -0.0, 5e-324, -2.2e-310, 1.0, -2.0, 1e39, -1e300]  # (float32: overflow)
    hi[:, 3000:3300] *= 1e-30  # exact (near-)zeros against their terms: ULPs of the terms
    lo = hi * 1e-17 * rng.standard_normal((n, K))
    lo[0, 20], lo[1, 21], lo[2, 22] = -0.0, 1e-320, np.nan
    got = hi * (1 + 1e-15 * rng.standard_normal((n, K)))
    got[:, 100:140] = hi[:, 100:140] * (1 + 1e-9)  # precision losses, mismatches
    got[:, 9] = 1e-300
    got[0, 900], got[1, 1400], got[2, 2000] = np.inf, np.nan, -np.inf
    got[0, 30], got[1, 31] = -0.0, 5e-324
    got[:, 0] = hi[:, 0] * 3  # the loss value wrong by more than itself
    E = np.abs(rng.standard_normal((n, K))) * 10.0 ** rng.integers(0, 40, (n, K))
    E[2, 7], E[1, 40], E[0, 41] = np.nan, np.inf, 0.0
    E[:, 3000:3300] = 1e20
    hi[:, 400:420], lo[:, 400:420], E[:, 400:420] = 1.0, 0.0, 1.0  # ties of badness
    got[:, 400:420] = 1.0 + 2.0**-50
    if sliver:  # numpy's ulp takes its log2 path here: that chunk is numpy's
        hi[1, 2500] = np.nextafter(2.0, 0)
    if wide:
        with np.errstate(over="ignore"):  # (beyond float32: inf)
            lo, E = lo.astype(np.float32), E.astype(np.float32)
    return hi, lo, got, E


def _run(arrays, dtype, *, fused: bool, monkeypatch, threads: int):
    calls = []

    def counted(*args, **kw):
        out = compare_chunk(*args, **kw) if fused else None
        calls.append(out is not None)
        return out
    monkeypatch.setattr(comparing, "compare_chunk", counted)
    hi, lo, got, E = arrays
    scan = measures.summary_scan(hi.shape, BLOCKS)
    with parallel.using(threads):
        comp = compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=Tolerance(),
                               deferred=True, scan=scan)
    return comp, scan, calls


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(measures, "SCAN_FROM", 1)
    monkeypatch.setattr(measures, "MEASURE_WHOLE", 10)
    monkeypatch.setattr(measures, "MEASURE_CHUNK", 900)


@pytest.mark.parametrize("dtype, wide, kind32, sliver, threads", [
    ("float64", False, False, False, 1), ("float64", True, True, True, 2),
    ("float32", True, True, False, 1), ("float32", False, False, True, 2),
    ("bfloat16", True, True, False, 1), ("float64", True, False, False, 1)])
def test_the_loop_is_numpys_path_bit_for_bit(small, monkeypatch, dtype, wide, kind32, sliver,
                                             threads):
    if kind32:  # ULPs and allowances kept in float32 (as beyond 50M entries)
        monkeypatch.setattr(comparing, "COMPACT_FROM", 0)
    arrays = _arrays(3, wide, sliver)
    (a, sa, calls_a), (b, sb, calls_b) = (
        _run(arrays, dtype, fused=f, monkeypatch=monkeypatch, threads=threads)
        for f in (True, False))
    assert not any(calls_b)  # (the numpy path throughout)
    assert sum(calls_a) >= len(calls_a) - 1 and (all(calls_a) != sliver)  # (sliver: numpy's)
    assert np.array_equal(a.status, b.status)
    seen = set(np.unique(a.status).tolist())  # ok, mismatch, non-finite, inconclusive;
    assert {0, 2, 3, 7} <= seen and (dtype == "float64") == (5 not in seen)  # overflow
    assert _same(sa.stats, sb.stats) and _same(sa.excused, sb.excused)
    assert _same(sa.kept, sb.kept) and _same(sa.counts, sb.counts)
    for ma, mb in zip([sa.middle, *sa.group_medians], [sb.middle, *sb.group_medians]):
        assert (ma.count, ma.nans, ma.plain) == (mb.count, mb.nans, mb.plain)
        assert np.array_equal(ma.high, mb.high)
    found = lambda s: sorted(zip(np.concatenate(s.found).tolist(),  # noqa: E731
                                 np.concatenate(s.bads).tolist()))
    assert sa.ranked == sb.ranked  # (the candidates: on 2 threads the running floor each
    assert threads > 1 or found(sa) == found(sb)  # chunk reads depends on the threads' order)
    assert _same(sa.finish(), sb.finish())


def test_a_chunk_on_numpys_log2_path_is_left_to_numpy():
    hi = np.array([[1.0, np.nextafter(4.0, 0)]])
    status = np.empty(hi.shape, np.int8)
    args = dict(dtype="float64", tol=Tolerance(), value_column=True, kind=np.float64,
                excused=EXCUSED_TABLE, floor=-np.inf, width=2, first=0)
    assert compare_chunk(hi, 0 * hi, hi, np.ones_like(hi), status, **args) is None
    assert compare_chunk(hi[:, :1], 0 * hi[:, :1], hi[:, :1], np.ones((1, 1)), status[:, :1],
                         **args) is not None
    nan = np.array([[np.nan]])  # (a NaN exact value: a domain error, numpy's path)
    assert compare_chunk(nan, nan, nan, nan, status[:, :1], **args) is None
