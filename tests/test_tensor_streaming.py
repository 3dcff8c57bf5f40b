"""Streaming compare (issue 19, item 1): the backends of a tensor model run one at a time after
the oracle and the bound, each compared, summarised and - from ``STREAM_FROM`` entries -
reduced to its figures before the next runs. Forced here on small GPTs (``STREAM_FROM = 0``):
the same verdicts, JSON, text and report figures as the whole comparison, planted bugs still
caught and named, and no backend's gradient alive while the next one runs."""

import dataclasses
import json
import sys
import weakref

import numpy as np
import pytest

import symgrad as sg
import symgrad.tensor.streaming as streaming
import symgrad.tensor.verify as tensor_verify
from symgrad.backends import flat
from symgrad.compare import FAILING, SUSPECT
from symgrad.errors import SymgradError
from symgrad.compare import ULP_BINS, ulp_counts
from symgrad.config import VerifyConfig
from symgrad.report.plots import ulp_histogram
from symgrad.report.tables import stats_rows
from symgrad.testing import scale_backward, scale_block_backward
from symgrad.zoo import gpt2


SMALL = {"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
         "drop_rate": 0.1, "qkv_bias": False}


on_block = scale_block_backward


def _both(monkeypatch, run):
    """``run()`` with the whole comparisons, then streamed (every comparison reduced)."""
    whole = run()
    monkeypatch.setattr(tensor_verify, "STREAM_FROM", 0)
    streamed = run()
    return whole, streamed


def _figures(r):
    lists = r.worst + r.failures + r.precision_losses + r.kinks + r.undecided
    return (json.dumps(r.as_dict(), sort_keys=True), str(r), stats_rows(r),
            [r.measure(f) for f in lists], r._repr_markdown_(), ulp_histogram(r))


@pytest.fixture(scope="module")
def tensor_tiny_gpt():
    return gpt2.tiny_gpt()


def test_a_streamed_result_reads_exactly_as_the_whole_one(tensor_tiny_gpt, monkeypatch):
    m = tensor_tiny_gpt
    whole, streamed = _both(monkeypatch, lambda: sg.verify(m, torch_fn=m.reference, samples=3,
                                                           seed=2))
    assert set(streamed.comparisons) == {"numpy", "torch", "torch_fn"}
    assert all(c.reduced and not w.reduced for c, w in zip(streamed.comparisons.values(),
                                                          whole.comparisons.values()))
    width = len(whole.outputs)
    for c, w in zip(streamed.comparisons.values(), whole.comparisons.values()):
        # the value column, the whole status and the ULPs' histogram only
        assert c.got.shape == c.expected.shape == c.ulps.shape == (3, 1)
        assert c.status.shape == (3, width) and c.ulp_counts.sum() > 0
        assert c.ulp_counts.tolist() == np.histogram(
            np.log10(np.maximum(w.ulps[np.isfinite(w.ulps)], 1e-3)), ULP_BINS)[0].tolist()
    assert streamed.worst and streamed.precision_losses  # figures of listed findings kept
    assert _figures(streamed) == _figures(whole)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_planted_block_bug_is_caught_and_named_when_streamed(monkeypatch, dtype):
    # x1.5 on one block: the block test's suspicion, then its confirmation on fresh samples,
    # which reads the backend's whole comparison: that backend is reduced only after it
    m = gpt2.tiny_gpt(SMALL)
    fn = on_block(m.reference, "h0_Wq", 1.5)
    whole, streamed = _both(monkeypatch, lambda: sg.verify(m, torch_fn=fn, samples=8, seed=0,
                                                           dtype=dtype))
    assert streamed.verdict == "fail" and streamed.failures
    assert any("h0_Wq" in f.output for f in streamed.failures)
    name, a, b = next(x for x in streamed.blocks if x[0] == "h0_Wq")
    st = streamed.comparisons["torch_fn"].status
    assert np.isin(st[:, a:b], FAILING).any() and not (st == SUSPECT).any()
    assert streamed.comparisons["torch"].ok and streamed.comparisons["numpy"].ok
    assert _figures(streamed) == _figures(whole)


def test_a_planted_attention_backward_bug_is_caught_when_streamed(monkeypatch):
    from symgrad.zoo import native_gpt
    from symgrad.zoo.gpt import GPTConfig
    m = gpt2.tiny_gpt(SMALL)
    bug = native_gpt.reference(GPTConfig.from_dict(SMALL),
                               weights_hook=lambda t: scale_backward(t, 1 + 1e-9))
    whole, streamed = _both(monkeypatch, lambda: sg.verify(m, torch_fn=bug, samples=3, seed=0))
    assert streamed.verdict == "fail"
    assert any(f.backend == "torch_fn" and "W" in f.output for f in streamed.failures)
    assert _figures(streamed) == _figures(whole)


def test_a_reduced_comparison_refuses_per_entry_figures(tensor_tiny_gpt, monkeypatch):
    monkeypatch.setattr(tensor_verify, "STREAM_FROM", 0)
    r = sg.verify(tensor_tiny_gpt, samples=2, seed=0)
    _, a, b = r.blocks[3]
    r.worst_ulps("torch", slice(a, b))  # a row group: kept
    with pytest.raises(SymgradError, match="'torch'.*not kept"):
        r.measures("torch", slice(a, a + 2))


def test_no_backend_gradient_is_held_while_the_next_backend_runs(tensor_tiny_gpt,
                                                                   monkeypatch):
    m = tensor_tiny_gpt
    alive = []
    right = streaming.torch_view

    def torch_view(*args, **kw):  # the torch backend's gradient, watched
        got = right(*args, **kw)
        alive.append(weakref.ref(got))
        return got

    def torch_fn(**blocks):  # runs after torch: its gradient must be gone by then, or its
        got = alive[0]()  # array be the one torch_fn writes into (``backends.flat``), no more
        alive.append(got is None or (flat._OPEN.kept[-1][0] is got and sys.getrefcount(got)
                                     <= 4))  # (the pool, torch_fn's own output, got, the call)
        del got
        return m.reference(**blocks)
    monkeypatch.setattr(streaming, "torch_view", torch_view)
    monkeypatch.setattr(tensor_verify, "STREAM_FROM", 0)
    r = sg.verify(m, torch_fn=torch_fn, samples=2, seed=0)
    assert r.verdict == "pass" and len(alive) > 1 and all(alive[1:]), alive


def test_the_worst_entries_are_found_without_an_index_of_every_entry(monkeypatch):
    # GPT-2's 3 worst entries of 163M were found by an argpartition of every entry: an int64
    # index array of 1.3 GB. Now a partition of the values; ties in index order, whatever the
    # chunking, as a stable sort orders them
    from symgrad.tensor import comparing
    rng = np.random.default_rng(0)
    monkeypatch.setattr(comparing, "CHUNK", 7)  # many chunks of ties
    for _ in range(200):
        bad = rng.integers(-1, 4, size=int(rng.integers(1, 80))).astype(np.float32)
        bad[rng.integers(0, bad.size)] = np.inf
        limit = int(rng.integers(1, 9))
        assert (comparing.top(bad, None, limit).tolist()
                == np.argsort(-bad, kind="stable")[:limit].tolist())
    seen = []
    monkeypatch.setattr(comparing.np, "argpartition",
                        lambda a, *k, **kw: seen.append(a.size) or np.argsort(a, kind="stable"))
    comparing.top(np.zeros(10_000, np.float32), None, 3)
    assert not seen  # all entries are never indexed


def test_the_ulp_histogram_is_binned_in_chunks_as_in_one_pass(monkeypatch):
    # the counts a reduced comparison keeps for the reports' plot: chunking changes nothing,
    # 0 ULPs count at -3 (float32 ULPs too: binned in float64), inf and NaN are left out
    import symgrad.compare.entries as entries
    rng = np.random.default_rng(1)
    u = np.exp(rng.normal(0, 12, size=(3, 997))).astype(np.float32)
    u[0, :5], u[1, :3], u[2, :2] = 0.0, np.inf, np.nan
    u64 = u[np.isfinite(u)].astype(np.float64)
    whole = np.histogram(np.log10(np.maximum(u64, 1e-3)), ULP_BINS)[0]
    monkeypatch.setattr(entries, "HISTOGRAM_CHUNK", 101)
    assert ulp_counts(u).tolist() == whole.tolist()
    shown = np.log10(np.maximum(u64, 1e-3)) <= ULP_BINS[-1]  # 1e20 ULPs at most
    assert shown.size == u.size - 5 and ulp_counts(u).sum() == shown.sum()
    assert ulp_counts(u)[0] >= 5  # the zeros


def test_the_ulp_histogram_counts_entries_at_the_bin_edges_as_the_edges_array_does():
    # ulp_counts bins by equal widths (numpy's index-then-check path): at and beside every
    # edge, and past both ends, the same counts as np.histogram given ULP_BINS as an array
    edges = 10.0 ** ULP_BINS
    u = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf),
                        [0.0, 1e-4, 1e-3, 1e20, 1e21, 1e300, np.inf, np.nan]])
    logs = np.log10(np.maximum(u[np.isfinite(u)], 1e-3))
    assert (np.isin(logs, ULP_BINS)).sum() >= 20  # some sit exactly on an edge
    assert ulp_counts(u).tolist() == np.histogram(logs, ULP_BINS)[0].tolist()
    assert ulp_counts(u.astype(np.float32)).tolist() == np.histogram(
        np.log10(np.maximum(u.astype(np.float32)[np.isfinite(u.astype(np.float32))]
                            .astype(np.float64), 1e-3)), ULP_BINS)[0].tolist()


def test_every_sample_compared_is_not_copied_for_the_oracle(tensor_tiny_gpt, monkeypatch):
    # GPT-2's one sample, compared whole: the oracle, the bound and the backends (torch_fn's
    # parameters too) read the same arrays (a copy of every parameter: 1.3 GB at GPT-2's size)
    seen = {}
    oracle, view = tensor_verify.oracle_view, streaming.torch_view
    m = tensor_tiny_gpt

    def torch_fn(**blocks):  # its parameters: views of the samples, no copy of them
        seen.setdefault("torch_fn", []).append(blocks["tok_emb"].data_ptr())
        return m.reference(**blocks)

    def oracle_view(model, sub, *a, **kw):
        seen["oracle"] = sub
        return oracle(model, sub, *a, **kw)

    def torch_view(model, values, **kw):
        seen["torch"] = values
        return view(model, values, **kw)
    monkeypatch.setattr(tensor_verify, "oracle_view", oracle_view)
    monkeypatch.setattr(streaming, "torch_view", torch_view)
    sg.verify(m, torch_fn=torch_fn, samples=2, seed=0)
    assert seen["oracle"].keys() == seen["torch"].keys()
    assert all(seen["oracle"][k] is seen["torch"][k] for k in seen["torch"])
    tok = seen["torch"]["tok_emb"]
    assert seen["torch_fn"] == [tok[0].ctypes.data, tok[1].ctypes.data]
    seen.clear()  # a subset is compared: its rows only
    sg.verify(tensor_tiny_gpt, config=VerifyConfig(samples=3, seed=0, oracle_samples=2))
    assert all(len(seen["oracle"][k]) == 2 for k in seen["oracle"])


def test_the_worst_entries_are_read_in_chunks_as_from_the_whole_badness(monkeypatch):
    # findings_of's lists without a whole-size badness array, mask or partition copy: the same
    # entries in the same order as top() over the whole badness, whatever the chunking
    from symgrad.compare import Comparison, FAILING, INCONCLUSIVE, KINK, LOSS
    from symgrad.tensor import comparing
    rng = np.random.default_rng(3)
    for trial in range(150):
        n, width = int(rng.integers(1, 4)), int(rng.integers(1, 60))
        kind = np.float32 if trial % 2 else np.float64
        ulps = rng.integers(0, 5, size=(n, width)).astype(kind)  # many ties
        allowed = rng.choice([0.0, 1.0, 2.0, np.inf], size=(n, width)).astype(kind)
        ulps[rng.random((n, width)) < 0.05] = np.inf
        status = rng.choice([0, LOSS, KINK, INCONCLUSIVE, *FAILING], size=(n, width))
        comp = Comparison("b", "float64", ulps, allowed, status.astype(np.int8),
                          np.zeros((n, width)), np.zeros((n, width)), np.zeros((n, width)))
        monkeypatch.setattr(streaming, "CHUNK", int(rng.integers(1, 20)))
        bad = comparing.badness(comp)
        for codes in (None, (KINK,), FAILING, (LOSS,), (INCONCLUSIVE,)):
            limit = int(rng.integers(1, 8))
            mask = None if codes is None else np.isin(comp.status, codes)
            assert (streaming.worst_entries(comp, codes, limit).tolist()
                    == comparing.top(bad, mask, limit).tolist()), (trial, codes, limit)


def test_the_oracle_and_the_bound_written_block_by_block_equal_their_whole_outputs():
    """hi, lo (oracle) and E (bound), each block written into the run's arrays as soon as its
    walk has it (``evaluate``'s and ``evaluate_bound``'s ``emit``), equal the same walks'
    whole outputs flattened afterwards, bit for bit, and the walk holds no finished block."""
    from symgrad.tensor import views
    from symgrad.tensor.bound import evaluate_bound
    from symgrad.tensor.interpret import evaluate
    from symgrad.tensor.tables import oracle_ops
    m = gpt2.tiny_gpt(SMALL, tokens=3)
    values = m.draw(2, np.random.default_rng(0), "float64")
    table = oracle_ops(50)
    one = {k: v[:1] for k, v in values.items()}
    outs = evaluate(m.gradient.outputs, table, one)
    hi_whole = views._flatten(m, [table.to_float64(o)[0] for o in outs], np.asarray, 1)
    lo_whole = views._flatten(m, [table.to_float64(o)[1] for o in outs], np.asarray, 1)
    hi, lo = views.oracle_view(m, one, table)
    assert np.array_equal(hi, hi_whole) and np.array_equal(lo, lo_whole)
    seen = []
    assert evaluate(m.gradient.outputs, table, one,
                    emit=lambda k, v: seen.append(k)) == [None] * len(outs)
    assert sorted(seen) == list(range(len(outs)))
    base = VerifyConfig().tolerance
    for mode in ("worst", "probabilistic"):
        tol = dataclasses.replace(base, entry_bound=mode)
        E_whole = views._flatten(m, evaluate_bound(
            m.gradient.outputs, values, mode=mode, sigmas=tol.entry_sigmas,
            sqrt_terms=tol.entry_sqrt_terms), np.asarray, 2)
        assert np.array_equal(tensor_verify.entry_bounds(m, values, tol, 2), E_whole)


def test_an_output_read_later_is_emitted_only_when_nothing_reads_it():
    """An output that a later node still reads (here the loss, read by the gradient) is handed
    over after its last reader, with its value intact."""
    import symgrad.tensor as st
    from symgrad.tensor.interpret import evaluate
    from symgrad.tensor.tables import NumpyOps
    W = st.param("W", (3,))
    loss = st.sum_(W * W)
    again = loss * W  # reads the loss after it is computed
    got = {}
    evaluate([loss, again], NumpyOps("float64"), {"W": np.array([[1.0, 2.0, 3.0]])},
             emit=lambda k, v: got.setdefault(k, np.array(v)))
    assert got[0].tolist() == [14.0] and got[1].tolist() == [[14.0, 28.0, 42.0]]
