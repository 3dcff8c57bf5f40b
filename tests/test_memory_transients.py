"""Memory transients of the streaming compare and the oracle's walk (issue 19): the block test
over a large block holds one column chunk's arrays at a time (not the last chunk's beside the
next one's), holds no whole-size kink mask when there is no kink, and the oracle's walk hands
freed heap back after each large emitted block.

Measured with ``tracemalloc`` (numpy reports its allocations to it: the same numbers on every
run, no timing), on a block of 8 chunks with ``BLOCK_CHUNK`` lowered so that a chunk's
float64 array is 512 KiB, and on 64 small blocks."""

import tracemalloc

import numpy as np
import pytest

import symgrad.tensor as st
from symgrad import heap
from symgrad.compare import Tolerance, blocks as blocks_mod, systematic_blocks
from symgrad.tensor import views
from symgrad.tensor.comparing import block_tests, compare_compact
from symgrad.tensor.model import TensorModel
from symgrad.tensor.tables import oracle_ops

CHUNK = 1 << 16  # entries per column chunk in these tests: 512 KiB of float64


def _traced(call):
    """``call()``'s result and its traced peak over its start, in bytes."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = call()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _peak_chunks(columns, status, blocks) -> float:
    """The traced peak of ``systematic_blocks`` over its start, in chunk-sized float64 arrays."""
    _, peak = _traced(lambda: systematic_blocks(columns, status, blocks, "float64", Tolerance()))
    return peak / (8 * CHUNK)


def _fresh_columns(exact, lo, got, E):
    """As ``tensor.comparing.block_tests`` forms them: a new error per call, and a new
    allowance formed only when a pass reads it."""
    def columns(a, b):
        err = got[:, a:b] - exact[:, a:b]
        err -= lo[:, a:b]
        return exact[:, a:b], err, lambda: 1e-13 * np.abs(E[:, a:b])
    return columns


@pytest.mark.parametrize("planted", [False, True])
def test_a_chunked_block_test_holds_one_chunks_arrays_at_a_time(monkeypatch, planted):
    """A block of 8 chunks: the peak over the start is about 5 chunk-sized float64 arrays
    (5.3; 5.4 with a planted x(1 + 1e-10), whose block is then marked chunk by chunk: the
    error and allowance of a chunk, the block test's three reused buffers (scaled e, g and a
    product: ``blocks._Workspace``) and the masks);
    with the previous chunk's arrays still held while the next chunk's are formed (before
    mem23) it was 10.3 (at GPT-2's 4M-entry chunks: 0.33 GiB instead of 0.17)."""
    monkeypatch.setattr(blocks_mod, "BLOCK_CHUNK", CHUNK)
    rng = np.random.default_rng(0)
    width = 1 + 8 * CHUNK + 2 * 1000  # W (8 chunks), then two small correct blocks
    exact = rng.standard_normal((1, width))
    lo = np.zeros((1, width), np.float32)
    got = exact * (1 + 2e-16 * rng.standard_normal((1, width)))
    if planted:
        got[:, 1:1 + 8 * CHUNK] = exact[:, 1:1 + 8 * CHUNK] * (1 + 1e-10)
    status = np.zeros((1, width), np.int8)
    w = 1 + 8 * CHUNK
    blocks = [("W", 1, w), ("a", w, w + 1000), ("b", w + 1000, width)]
    columns = _fresh_columns(exact, lo, got, np.abs(exact))
    found = systematic_blocks(columns, status, blocks, "float64", Tolerance())[1]
    assert [f.block for f in found] == (["W"] if planted else [])
    assert _peak_chunks(columns, status, blocks) < 7.0


def test_the_oracle_walk_gives_heap_back_after_each_large_block(monkeypatch):
    """``_oracle_rows`` calls ``give_back`` once per emitted block of at least
    ``GIVE_BACK_FROM`` entries, and not for smaller ones (a small program pays no trim)."""
    calls = []
    monkeypatch.setattr(views, "give_back", lambda: calls.append(1) or True)
    monkeypatch.setattr(views, "GIVE_BACK_FROM", 6)
    W, b, x = st.param("W", (2, 3)), st.param("b", (2,)), st.input("x", (3,))
    m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x) + b)))
    values = m.draw(1, np.random.default_rng(0), "float64")
    hi, lo = views.oracle_view(m, values, oracle_ops(50))
    assert len(calls) == 1  # W (6 entries); not b (2) nor the loss value (1)
    assert np.isfinite(hi).all()


def test_the_oracle_walk_keeps_the_heap_where_the_process_keeps_it(monkeypatch):
    """Where the process keeps freed memory for reuse (``heap.keep_freed``: the symgrad
    program), the oracle's walk does not trim the heap between blocks (each trim faulted the
    next block's arrays in again), as the bound's walk; the phase's end still trims."""
    calls = []
    monkeypatch.setattr(views, "give_back", lambda: calls.append(1) or True)
    monkeypatch.setattr(views, "GIVE_BACK_FROM", 6)
    monkeypatch.setattr(heap, "_KEPT", [True])
    W, b, x = st.param("W", (2, 3)), st.param("b", (2,)), st.input("x", (3,))
    m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x) + b)))
    hi, lo = views.oracle_view(m, m.draw(1, np.random.default_rng(0), "float64"),
                               oracle_ops(50))
    assert calls == [] and np.isfinite(hi).all()


def test_block_tests_hold_no_whole_size_kink_mask():
    """``tensor.comparing.block_tests`` on a comparison with no kink: its traced peak is the
    largest block's temporaries or the status copy, not those plus a whole-size boolean mask
    of the kink positions held through every block (GPT-2: 0.15 GiB; 2.1 x the width in bytes
    here before mem23, 1.1 x now)."""
    rng = np.random.default_rng(0)
    width = 1 + (1 << 19)
    hi = rng.standard_normal((1, width))
    lo = np.zeros((1, width))
    got = hi * (1 + 2e-16 * rng.standard_normal((1, width)))
    E = 10 * np.abs(hi)
    step = (width - 1) // 64
    blocks = [(f"b{k}", 1 + k * step, 1 + (k + 1) * step) for k in range(64)]
    comp = compare_compact(hi, lo, got, E, backend="b", dtype="float64", tol=Tolerance(),
                           deferred=True)
    block_tests(comp, hi, lo, E, blocks, Tolerance())  # numba's kernels loaded (or compiled,
    out, peak = _traced(lambda: block_tests(comp, hi, lo, E, blocks, Tolerance()))  # in a
    peak /= width  # fresh clone) before the trace: their Python objects are not the test's
    assert out.systematic == ()
    assert peak < 1.6


def _layout(planted: bool):
    """256 blocks of 8192 columns (a block's temporaries and each block's kept statistics:
    ~0.2 and ~0.1 byte a column of the whole),
    E = 1e6 |exact| (allowance 4.4e-10 relative); ``planted``: block b0 x(1 + 1e-10), within
    each entry's allowance, marked by the block test (9e5 u > its floor of 2^14 u)."""
    rng = np.random.default_rng(0)
    width = 1 + (1 << 21)
    hi = rng.standard_normal((1, width))
    lo = np.zeros((1, width))
    got = hi * (1 + 2e-16 * rng.standard_normal((1, width)))
    step = (width - 1) // 256
    if planted:
        got[:, 1:1 + step] = hi[:, 1:1 + step] * (1 + 1e-10)
    blocks = [(f"b{k}", 1 + k * step, 1 + (k + 1) * step) for k in range(256)]
    return hi, lo, got, 1e6 * np.abs(hi), blocks, width


@pytest.mark.parametrize("planted", [False, True])
def test_block_tests_copy_the_statuses_only_to_mark_them(planted):
    """``compare.systematic_blocks`` copies the whole status array only when a block marks
    entries (GPT-2: 0.15 GiB fewer at the compare's peak): unflagged, the traced peak over the
    start is under 0.5 bytes a column (a whole-size status copy or kink mask is 1 byte a
    column each: both were formed before mem19c) and the statuses are the comparison's own
    array; flagged, a copy is marked and the input is left as it was."""
    hi, lo, got, E, blocks, width = _layout(planted)
    comp = compare_compact(hi, lo, got, E, backend="b", dtype="float64", tol=Tolerance(),
                           deferred=True)
    given = comp.status.copy()
    block_tests(comp, hi, lo, E, blocks, Tolerance())  # numba's kernels loaded first
    out, peak = _traced(lambda: block_tests(comp, hi, lo, E, blocks, Tolerance()))
    peak /= width
    assert [f.block for f in out.systematic] == (["b0"] if planted else [])
    assert np.array_equal(comp.status, given)  # never written in place
    if planted:
        assert out.status is not comp.status and (out.status != given).any()
    else:
        assert out.status is comp.status and peak < 0.5, peak
