"""Streaming compare (issue 19, item 1): the backends of a tensor model run one at a time after
the oracle and the bound, each compared, summarised and - from ``STREAM_FROM`` entries -
reduced to its figures before the next runs. Forced here on small GPTs (``STREAM_FROM = 0``):
the same verdicts, JSON, text and report figures as the whole comparison, planted bugs still
caught and named, and no backend's gradient alive while the next one runs."""

import json
import weakref

import numpy as np
import pytest

import symgrad as sg
import symgrad.tensor.streaming as streaming
import symgrad.tensor.verify as tensor_verify
from symgrad.compare import FAILING, SUSPECT
from symgrad.errors import SymgradError
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
            [r.measure(f) for f in lists], r._repr_markdown_())


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
    for c in streamed.comparisons.values():  # the value column and the whole status only
        assert c.got.shape == c.expected.shape == (3, 1) and c.status.shape == (3, width)
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

    def torch_fn(**blocks):  # runs after torch: its gradient must be gone by then
        alive.append(alive[0]() is None)
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
