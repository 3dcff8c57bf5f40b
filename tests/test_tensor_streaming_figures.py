"""A large comparison's ULPs and allowances recomputed where read
(``symgrad.tensor.streaming_figures``, ``compare_compact(deferred=True)``): the same numbers
as the whole arrays, bit for bit, however they are read; and a verify that reads them so gives
the very same result, planted bugs caught and named."""

import json
import pickle
import time

import numpy as np
import pytest

import symgrad as sg
import symgrad.parallel as parallel
import symgrad.tensor.comparing as comparing
import symgrad.tensor.verify as tensor_verify
from symgrad.compare import FAILING, INCONCLUSIVE, KINK, LOSS, MISMATCH, OK, Tolerance, ulp_counts
from symgrad.report.plots import ulp_histogram
from symgrad.report.tables import stats_rows
from symgrad.tensor.comparing import compare_compact, kept_whole
from symgrad.tensor.streaming import worst_entries
from symgrad.tensor.streaming_figures import EntryFigures
from symgrad.testing import scale_block_backward
from symgrad.zoo import gpt2


SMALL = {"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
         "drop_rate": 0.1, "qkv_bias": False}


def _arrays(rng, n=3, k=257):
    """Oracle, bound and a backend with the awkward entries: exact zeros, a subnormal, inf and
    NaN results, a NaN bound (allowance inf), huge ULPs at 0 (float32: capped), lo in float32."""
    hi = rng.standard_normal((n, k)) * 10.0 ** rng.integers(-30, 30, (n, k))
    hi[:, :5] = [0.0, 5e-324, 1.0, -2.0, 3.0]
    lo = (hi * 1e-17 * rng.standard_normal((n, k))).astype(np.float32)
    got = hi * (1 + 1e-15 * rng.standard_normal((n, k)))
    got[:, 0] = 1e-300
    got[0, 3], got[1, 4] = np.inf, np.nan
    E = np.abs(rng.standard_normal((n, k))) * 100
    E[2, 7] = np.nan
    return hi, lo, got, E


@pytest.mark.parametrize("kind, dtype", [(np.float64, "float64"), (np.float32, "float32")])
def test_deferred_figures_are_the_whole_arrays_bit_for_bit(kind, dtype, monkeypatch):
    monkeypatch.setattr(comparing, "COMPACT_FROM", 0 if kind is np.float32 else 10**9)
    monkeypatch.setattr(comparing, "CHUNK", 100)  # many column chunks in the whole compare
    rng = np.random.default_rng(3)
    hi, lo, got, E = _arrays(rng)
    tol = Tolerance()
    whole = compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=tol)
    lazy = compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=tol, deferred=True)
    assert type(lazy.ulps).__name__ == "Figure" and lazy.ulps.dtype == whole.ulps.dtype
    assert np.array_equal(lazy.status, whole.status)
    for w, d in ((whole.ulps, lazy.ulps), (whole.allowed_ulps, lazy.allowed_ulps)):
        assert np.array_equal(np.asarray(d), w, equal_nan=True)  # whole, chunk by chunk
        assert np.array_equal(d[:, 3:40], w[:, 3:40], equal_nan=True)
        assert np.array_equal(d[1:, ::7], w[1:, ::7], equal_nan=True)
        idx = rng.integers(0, w.size, 50)
        assert np.array_equal(d.reshape(-1)[idx], w.reshape(-1)[idx], equal_nan=True)
        assert np.array_equal(d.reshape(-1)[200:700], w.reshape(-1)[200:700], equal_nan=True)
        for i, k in [(0, 0), (0, 3), (1, 4), (2, 7), (2, 256)]:
            assert np.array_equal(d[i, k], w[i, k], equal_nan=True)
    assert ulp_counts(lazy.ulps).tolist() == ulp_counts(whole.ulps).tolist()
    assert np.array_equal(kept_whole(lazy).ulps, whole.ulps, equal_nan=True)
    reduced_lazy, reduced_whole = lazy.reduce(), whole.reduce()
    for f in ("ulps", "allowed_ulps", "ulp_counts", "status", "got"):
        assert np.array_equal(getattr(reduced_lazy, f), getattr(reduced_whole, f),
                              equal_nan=True)
    for codes, limit in [(None, 3), (FAILING, 5), ((MISMATCH,), 2), ((LOSS,), 5),
                         ((INCONCLUSIVE,), 3), ((KINK, OK), 4)]:
        assert worst_entries(lazy, codes, limit).tolist() == worst_entries(
            whole, codes, limit).tolist()


def test_deferred_figures_refuse_a_mismatched_shape_and_an_enclosure():
    a = np.ones((2, 3))
    with pytest.raises(ValueError, match="share one"):
        EntryFigures(a, a, a[:1], a, "float64", Tolerance(), np.float64)
    with pytest.raises(ValueError, match="rigorous=None"):
        compare_compact(a, a, a, a, backend="b", dtype="float64", tol=Tolerance(),
                        rigorous=object(), deferred=True)


def _figures(r):
    lists = r.worst + r.failures + r.precision_losses + r.kinks + r.undecided
    return (json.dumps(r.as_dict(), sort_keys=True), str(r), stats_rows(r),
            [r.measure(f) for f in lists], ulp_histogram(r))


def _whole_and_deferred(monkeypatch, run):
    """``run()`` spot-certified (as above 200k parameters) with whole comparisons, then with
    every comparison deferred and reduced; the second run must have deferred each backend's
    (numpy, torch, torch_fn; a confirmation's fresh samples are compared whole)."""
    monkeypatch.setattr(tensor_verify, "CERTIFY_UP_TO", 0)
    whole = run()
    monkeypatch.setattr(tensor_verify, "STREAM_FROM", 0)
    made = []
    real = tensor_verify.compare_compact

    def spy(*args, **kw):
        made.append(kw.get("deferred"))
        return real(*args, **kw)
    monkeypatch.setattr(tensor_verify, "compare_compact", spy)
    deferred = run()
    assert made[:3] == [True] * 3
    return whole, deferred


def test_a_deferred_result_reads_exactly_as_the_whole_one(monkeypatch):
    m = gpt2.tiny_gpt(SMALL)
    whole, deferred = _whole_and_deferred(
        monkeypatch, lambda: sg.verify(m, torch_fn=m.reference, samples=4, seed=1))
    assert deferred.ok and deferred.worst
    assert all(c.reduced for c in deferred.comparisons.values())
    assert _figures(deferred) == _figures(whole)


@pytest.mark.parametrize("factor", [
    pytest.param(1.5, marks=pytest.mark.slow),  # its confirmation on fresh samples: 4-11 s
    1 + 1e-7])
def test_a_planted_bug_is_caught_and_named_with_deferred_figures(monkeypatch, factor):
    # x1.5: the block test's suspicion, confirmed (its comparison kept whole for it);
    # x(1 + 1e-7): entries beyond their allowance, failing one by one
    m = gpt2.tiny_gpt(SMALL)
    fn = scale_block_backward(m.reference, "h0_Wq", factor)
    whole, deferred = _whole_and_deferred(
        monkeypatch, lambda: sg.verify(m, torch_fn=fn, samples=8, seed=0))
    assert deferred.verdict == "fail"
    assert any(f.backend == "torch_fn" and "h0_Wq" in f.output for f in deferred.failures)
    name, a, b = next(x for x in deferred.blocks if x[0] == "h0_Wq")
    assert np.isin(deferred.comparisons["torch_fn"].status[:, a:b], FAILING).any()
    assert deferred.comparisons["torch"].ok
    assert _figures(deferred) == _figures(whole)


def test_a_reduced_deferred_comparison_lets_its_arrays_go_at_once():
    # no reference cycle: the backend's gradient, hi, lo and E are freed by reference
    # counting when the reduced comparison replaces the deferred one (GPT-2: 1.3 GB each)
    import gc
    import weakref
    hi, lo, got, E = _arrays(np.random.default_rng(0))
    c = compare_compact(hi, lo, got.copy(), E, backend="b", dtype="float64", tol=Tolerance(),
                        deferred=True)
    alive = weakref.ref(c.got.base if c.got.base is not None else c.got)
    gc.disable()
    try:
        c = c.reduce()
        assert alive() is None
    finally:
        gc.enable()


class _Yielding(EntryFigures):
    """Every look at a private attribute (the read cache) lets the other threads run."""

    def __getattribute__(self, name):
        if name.startswith("_") and not name.startswith("__"):
            time.sleep(0.0005)
        return super().__getattribute__(name)


def test_reads_on_the_pools_threads_each_get_their_own_entries():
    """``EntryFigures.at`` keeps its last read (measures read ULPs then allowances of one key):
    a cache shared by the pool's threads (``symgrad.parallel``) could be replaced by another
    thread between its check and its use, returning another key's figures (23 of 480 reads
    wrong before honest34, with each look at it yielding the thread). Per thread: none; and
    the figures still pickle (the cache stays behind)."""
    hi, lo, got, E = _arrays(np.random.default_rng(3), n=16, k=8)
    f = _Yielding(hi, lo, got, E, "float64", Tolerance(), np.float64)
    ulps, allowed = np.asarray(f.ulps), np.asarray(f.allowed)

    def piece(i):
        rows = [(i + rep) % 16 for rep in range(30)]
        return [(r, f.ulps[r], f.allowed[r], f.ulps[r]) for r in rows]
    with parallel.using(4):
        reads = [x for part in parallel.each(piece, range(16)) for x in part]
    wrong = [r for r, u, a, u2 in reads if not (np.array_equal(u, ulps[r], equal_nan=True)
                                                 and np.array_equal(a, allowed[r], equal_nan=True)
                                                 and np.array_equal(u2, ulps[r], equal_nan=True))]
    assert len(reads) == 480 and not wrong, f"{len(wrong)} reads got another row's figures"
    again = pickle.loads(pickle.dumps(EntryFigures(hi, lo, got, E, "float64", Tolerance(),
                                                   np.float64)))
    assert np.array_equal(np.asarray(again.ulps), ulps, equal_nan=True)
