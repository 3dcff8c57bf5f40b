"""Streaming compare (issue 19, item 1): a block larger than ``BLOCK_CHUNK`` entries is tested
over column chunks, with the same findings as the whole block at once; backends of one dtype
share one allowance array; a planted attention bug is still caught and named."""

import dataclasses

import numpy as np
import pytest

import symgrad as sg
from symgrad.compare import Tolerance, blocks as blocks_mod, systematic_blocks
from symgrad.zoo import gpt2



@pytest.fixture(scope="module")
def tensor_tiny_gpt():
    return gpt2.tiny_gpt()


def _columns_of(exact, err, allowed):
    def columns(a, b):
        return exact[:, a:b], err[:, a:b], allowed[:, a:b]
    return columns


def _case(seed=0, n=3, width=301, scale=1.5):
    rng = np.random.default_rng(seed)
    exact = rng.normal(size=(n, width))
    err = rng.normal(size=(n, width)) * 1e-16 * np.abs(exact)
    err[:, 101:201] += (scale - 1) * exact[:, 101:201]  # block B: x scale
    allowed = np.full((n, width), 1e-13)
    status = np.zeros((n, width), np.int8)
    blocks = [("A", 1, 101), ("B", 101, 201), ("C", 201, 301)]
    return _columns_of(exact, err, allowed), status, blocks


@pytest.mark.parametrize("scale", [1.5, 1 + 1e-10, 1.0])
def test_chunked_block_test_equals_the_whole_block(monkeypatch, scale):
    columns, status, blocks = _case(scale=scale)
    whole_status, whole = systematic_blocks(columns, status, blocks, "float64", Tolerance())
    monkeypatch.setattr(blocks_mod, "BLOCK_CHUNK", 7)  # 3 rows: chunks of 2 columns
    chunk_status, chunked = systematic_blocks(columns, status, blocks, "float64", Tolerance())
    assert [(f.block, f.sample) for f in chunked] == [(f.block, f.sample) for f in whole]
    for f, g in zip(chunked, whole):
        assert f.projection == pytest.approx(g.projection, rel=1e-9)
        # sigma of an exact scale is the rounding of r = e - p g itself: equal to ~1e-16 of p
        assert f.sigma == pytest.approx(g.sigma, rel=1e-6, abs=1e-15 * abs(g.projection))
        assert np.array_equal(f.prior, g.prior)
    assert np.array_equal(chunk_status, whole_status)
    if scale != 1.0:
        assert {f.block for f in whole} == {"B"}


@pytest.mark.parametrize("scale, chunk", [(1.0, 7), (1.0, 1 << 22), (1 + 1e-10, 7),
                                          (1.5, 1 << 22)])
def test_an_allowance_formed_when_read_gives_the_same_block_tests(monkeypatch, scale, chunk):
    """``columns`` may hand the allowance as a callable (``tensor.comparing.block_tests``): the
    same statuses and findings, bit for bit, as the array (the test's reused buffers and in-place
    masking change no number), and on a chunked block it is formed by the sums' pass alone
    (one call a chunk, not three: the scale and residual passes do not read it)."""
    columns, status, blocks = _case(scale=scale)
    monkeypatch.setattr(blocks_mod, "BLOCK_CHUNK", chunk)
    calls = []

    def lazy(a, b):
        exact, err, allowed = columns(a, b)
        return exact, err.copy(), lambda: calls.append((a, b)) or allowed.copy()
    want_status, want = systematic_blocks(columns, status, blocks, "float64", Tolerance())
    got_status, got = systematic_blocks(lazy, status, blocks, "float64", Tolerance())
    assert np.array_equal(got_status, want_status)
    assert [(f.block, f.sample, f.projection, f.sigma, f.threshold) for f in got] == [
        (f.block, f.sample, f.projection, f.sigma, f.threshold) for f in want]
    assert all(np.array_equal(f.prior, g.prior) for f, g in zip(got, want))
    if chunk == 7 and scale == 1.0:  # 3 rows: chunks of 2 columns, each read once
        assert len(calls) == sum((b - a + 1) // 2 for _, a, b in blocks)
    if scale != 1.0:
        assert {f.block for f in got} == {"B"}


def test_chunked_block_test_on_a_gpt_names_the_planted_attention_bug(monkeypatch,
                                                                     tensor_tiny_gpt):
    """x (1 + 1e-10) in every attention-weights backward, every block tested in chunks of a
    few columns: the same failures, the same statuses as whole blocks, named by parameter."""
    from symgrad.testing import scale_backward
    from symgrad.zoo import gpt, native_gpt
    cfg = gpt.GPTConfig.from_dict({})
    mutant = native_gpt.reference(cfg, weights_hook=lambda t: scale_backward(t, 1 + 1e-10))

    def run():
        return sg.verify(tensor_tiny_gpt, torch_fn=mutant, samples=2, seed=0,
                         backends=("torch_fn",))
    whole = run()
    monkeypatch.setattr(blocks_mod, "BLOCK_CHUNK", 64)
    chunked = run()
    assert chunked.verdict == whole.verdict == "fail"
    assert any(n in f.output for f in chunked.failures for n in ("Wq", "Wk"))
    assert np.array_equal(chunked.comparisons["torch_fn"].status,
                          whole.comparisons["torch_fn"].status)
    assert [f.output for f in chunked.failures] == [f.output for f in whole.failures]


def test_backends_of_one_dtype_share_one_allowance_array():
    """torch and torch_fn in one dtype: one allowance array held, not two (same values)."""
    m = gpt2.tiny_gpt()
    r = sg.verify(m, torch_fn=m.reference, samples=2, seed=0)
    torch_c, fn_c = r.comparisons["torch"], r.comparisons["torch_fn"]
    assert fn_c.allowed_ulps is torch_c.allowed_ulps
    assert r.verdict == "pass"


def test_a_column_chunk_is_no_loss_value(monkeypatch):
    # compare_compact compares column chunks; the value rule (wrong by more than itself: a
    # mismatch whatever E says) is the loss value's, column 0 of the whole, not of each chunk:
    # a gradient entry at a chunk's start, wrong by more than its tiny exact value but far
    # within its allowance, is inconclusive as in one compare, not a mismatch (a false alarm
    # GPT-2 could meet every 4,194,304 columns, where no enclosure re-judges it)
    from symgrad.compare import INCONCLUSIVE, MISMATCH, compare
    from symgrad.tensor import comparing
    hi = np.array([[2.0, 1.0, 1e-20, 1.0, 1e-20], [3.0, 1.0, 1e-20, 1.0, 1.0]])
    got = hi.copy()
    got[:, 2], got[0, 4] = 3e-20, -1e-20
    got[1, 0] = 7.0  # the loss value wrong by more than itself: still a mismatch
    E = np.full_like(hi, 1e6)
    whole = compare(hi, 0 * hi, got, E, backend="b", dtype="float64", tol=Tolerance())
    monkeypatch.setattr(comparing, "CHUNK", 4)  # chunks of 2 columns at 2 samples
    chunked = comparing.compare_compact(hi, 0 * hi, got, E, backend="b", dtype="float64",
                                        tol=Tolerance())
    assert chunked.status.tolist() == whole.status.tolist()
    assert whole.status[0, 2] == whole.status[0, 4] == INCONCLUSIVE
    assert whole.status[1, 0] == MISMATCH


@pytest.mark.parametrize("seed", range(6))
def test_chunk_median_is_numpys_median_on_float32(seed):
    """The exact selection over chunks (no copy of every value) gives np.median's number on
    float32: ties, zeros, infinities, values beyond float32's range, odd and even counts, NaN."""
    from symgrad.order_stats import ChunkMedian
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 7, 64, 1001):
        v = np.concatenate([np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-45, 38, n),
                            rng.choice([0.0, 0.5, 1.0, np.inf], n)]).astype(np.float32)
        if seed == 5 and v.size:
            v[-1] = np.nan
        parts = np.array_split(v, 1 + int(rng.integers(0, 5)))
        m = ChunkMedian()
        for p in parts:
            m.add(p)
        got = m.value(lambda: reversed(parts))
        want = float(np.median(v)) if v.size else 0.0
        assert got == want or (np.isnan(got) and np.isnan(want)), (n, got, want)



@pytest.mark.parametrize("seed", range(4))
def test_joint_medians_are_numpys_medians_on_float32(seed):
    """Several groups' medians and the whole's from one second pass (``order_stats.medians``,
    the summary's per-block medians) give np.median's numbers: empty groups, a group with a
    NaN (its median and the whole's NaN), ties, zeros, infinities."""
    from symgrad.order_stats import ChunkMedian, medians
    rng = np.random.default_rng(seed)
    groups = [np.concatenate([np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-45, 38, n),
                              rng.choice([0.0, 0.5, 1.0, np.inf], n)]).astype(np.float32)
              for n in (0, 1, 2, 7, 64, 1001)]
    if seed == 3:
        groups[4][5] = np.nan
    parts = [ChunkMedian() for _ in groups]
    whole = ChunkMedian()
    for g, m in zip(groups, parts):
        for piece in np.array_split(g, 3):
            m.add(piece)
            whole.add(piece)
    got = medians(parts, lambda i: np.array_split(groups[i], 2), whole)
    want = [float(np.median(g)) if g.size else 0.0 for g in groups]
    want.append(float(np.median(np.concatenate(groups))))
    assert np.array_equal(got, want, equal_nan=True), (got, want)

def test_streamed_medians_equal_the_whole_arrays(monkeypatch, tensor_tiny_gpt):
    """A result measured chunk by chunk (``MEASURE_WHOLE`` below its size: the scan's
    selection, no whole ULP copy) has the same median ULPs - whole and per block - as one
    np.median over the whole float32 ULPs (what the scan's 0.65 GB float32 copy gave at GPT-2's
    size; a result measured whole takes its medians in float64)."""
    from symgrad import measures as measures_mod
    r = sg.verify(tensor_tiny_gpt, torch_fn=tensor_tiny_gpt.reference, samples=2, seed=0)
    monkeypatch.setattr(measures_mod, "MEASURE_WHOLE", 0)
    monkeypatch.setattr(measures_mod, "MEASURE_CHUNK", 97)
    fresh = dataclasses.replace(r)  # the same result, nothing memoised
    for name in r.comparisons:
        every = np.concatenate([fresh.measures(name, slice(a, b)).ulps.astype(np.float32)
                                .reshape(-1) for a, b in [(0, 1)] + [(a, b) for _, a, b
                                                                     in r.blocks]])
        assert fresh.median_ulps(name) == float(np.median(every))
        for _, a, b in r.blocks:
            u = fresh.measures(name, slice(a, b)).ulps.astype(np.float32)
            assert fresh.median_ulps(name, slice(a, b)) == float(np.median(u))
