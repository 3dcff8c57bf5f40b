"""The oracle's and the bound's large passes on several threads (``symgrad.parallel``, issue 19):
the same bits on one thread as on two (a verify's JSON byte-identical), the pool really used,
one clear line for a bad ``threads``, and the test suite's default of one thread."""

from __future__ import annotations

import contextvars
import inspect
import json
import threading

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad import parallel
from symgrad.config import VerifyConfig
from symgrad.errors import SymgradError
from symgrad.precise import DD_OPS
from symgrad.precise import blas_threads, ddsum
from symgrad.precise import walk as precise_walk
from symgrad.precise.dd import DD
from symgrad.precise.ozaki import OzakiConfig, dd_matmul
from symgrad.tensor import einpieces, mapbound, operands
from symgrad.tensor.model import TensorModel
from symgrad.zoo.gpt2 import gpt2
from symgrad.testing import scale_block_backward


def _model() -> TensorModel:
    """A model whose every threaded pass has several pieces once the pieces are made small
    (``counted``): DD maps of several chunks, Ozaki products of several sub-tiles, map bounds
    and product bounds of several blocks."""
    W, V, x = st.param("W", (60, 100)), st.param("V", (100, 60)), st.input("x", (60, 60))
    h = st.tanh(st.einsum("ij,jk->ik", W, V) * x)
    return TensorModel("wide", st.sum_(st.tanh(st.einsum("ij,jk->ik", h, x))))


PASSES = {"evaluate", "_products", "by_blocks", "_in_blocks", "dd_sum", "Operands.rows_pair",
          "with_value", "_at_most"}


@pytest.fixture
def counted(monkeypatch):
    """The pieces ``parallel.ordered`` is given: [(threads, pieces, whose)];
    every pass's pieces made small, so that each has several."""
    monkeypatch.setattr(precise_walk.Kernels, "chunk", 1 << 10)  # a DD map's chunks
    monkeypatch.setattr(DD_OPS, "matmul_config", OzakiConfig(chunk_elems=1 << 9))  # sub-tiles
    monkeypatch.setattr(mapbound, "MAP_BLOCK", 1 << 10)
    monkeypatch.setattr(mapbound, "PAIR_BLOCK", 1 << 9)
    monkeypatch.setattr(mapbound, "STACK_UP_TO", 1 << 10)  # a map's E and sigma in blocks
    monkeypatch.setattr(ddsum, "SUM_BLOCK", 1 << 10)
    monkeypatch.setattr(operands, "ROWS_FROM", 1 << 10)  # the products' E and sigma in rows
    monkeypatch.setattr(operands, "ROW_BLOCK", 1 << 8)
    monkeypatch.setattr(einpieces, "PIECES_FROM", 1 << 9)  # the other products in pieces
    monkeypatch.setattr(einpieces, "PIECE", 1 << 7)
    monkeypatch.setattr(einpieces, "GEMM_FROM", 1 << 12)  # plain GEMMs in columns
    monkeypatch.setattr(einpieces, "WIDTH", 96)
    monkeypatch.setattr(parallel, "PIECE", 1 << 8)  # the bound's flat elementwise passes
    seen: list[tuple[int, int, str]] = []
    right = parallel.ordered

    def spy(fn, items):
        items = list(items)
        seen.append((parallel.threads_now(), len(items), fn.__qualname__.split(".<locals>")[0]))
        return right(fn, items)
    monkeypatch.setattr(parallel, "ordered", spy)
    monkeypatch.setattr(precise_walk, "ordered", spy)
    return seen


@pytest.mark.parametrize("blas", ["one thread", "its own threads"])
def test_one_and_two_threads_give_byte_identical_json(counted, monkeypatch, blas):
    if blas == "its own threads":  # the products keep the BLAS's threads: one GEMM at a time
        monkeypatch.setattr(operands, "THREADS_FROM", 1 << 8)
        monkeypatch.setattr(operands, "THREAD_K", 16)
    m, runs = _model(), {}
    for threads in (1, 2):
        counted.clear()
        r = sg.verify(m, config=VerifyConfig(samples=2, seed=3, threads=threads))
        runs[threads] = json.dumps(r.as_dict(), sort_keys=True)
        assert {t for t, _, _ in counted} == {threads}  # each pass ran on the pool asked for
        assert {w for _, n, w in counted if n > 1} == PASSES  # every pass had pieces to spread
    assert r.verdict == "pass"
    assert runs[1] == runs[2]
    assert "threads" not in json.loads(runs[2])["config"]  # how it ran is not in the result


@pytest.mark.slow  # ~40 s at load 10 (two verifies of a 1-layer GPT at 128 tokens)
def test_a_gpt_gives_the_same_json_on_one_and_two_threads(counted, monkeypatch):
    """GPT-2's program (attention, GELU, layer norm, the head) at width 64, 128 tokens, with
    its native module as torch_fn: every threaded pass has pieces, the JSON is byte-identical."""
    m = gpt2({"n_layers": 1, "vocab_size": 256, "emb_dim": 64, "n_heads": 4}, tokens=128)
    runs, cut = {}, []
    real = operands.in_pieces

    def spy(spec, ops, einsum):  # the attention's products in pieces of its heads
        got = real(spec, ops, einsum)
        cut.extend([spec] if got is not None else [])
        return got
    monkeypatch.setattr(operands, "in_pieces", spy)
    for threads in (1, 2):
        counted.clear()
        r = sg.verify(m, torch_fn=m.reference,
                      config=VerifyConfig(samples=1, seed=0, threads=threads))
        runs[threads] = json.dumps(r.as_dict(), sort_keys=True)
        assert {w for _, n, w in counted if n > 1} == PASSES | {"_columns"}
    assert r.verdict == "pass" and {s.split("->")[0] for s in cut} >= {"htd,hsd", "hts,hsd"}
    assert any(len(s.split(",")[0]) == 2 for s in cut)  # and plain GEMMs (the MLP's) in columns
    assert runs[1] == runs[2]


def test_a_planted_wrong_gradient_is_caught_on_two_threads(counted):
    m = _model()

    def right(W, V, x):
        return torch.tanh(torch.tanh((W @ V) * x) @ x).sum()
    wrong = scale_block_backward(right, "W", 1 + 1e-9)  # far above rounding, far below gradcheck
    r = sg.verify(m, torch_fn=wrong, config=VerifyConfig(samples=1, seed=0, threads=2))
    assert r.verdict == "fail"
    assert not r.comparisons["torch_fn"].ok and r.comparisons["torch"].ok


def test_dd_product_has_the_same_bits_on_two_threads():
    rng = np.random.default_rng(7)
    a = DD(rng.standard_normal((2, 300, 90)), rng.standard_normal((2, 300, 90)) * 2.0**-60)
    b = DD(rng.standard_normal((2, 90, 700)))
    cfg = OzakiConfig(k_block=32, chunk_elems=4096)  # several K blocks and many sub-tiles
    one = dd_matmul(a, b, cfg)
    with parallel.using(2):
        two = dd_matmul(a, b, cfg)
    np.testing.assert_array_equal(one.hi, two.hi)
    np.testing.assert_array_equal(one.lo, two.lo)


def test_dd_sum_in_blocks_has_the_same_bits_on_two_threads(monkeypatch):
    monkeypatch.setattr(ddsum, "SUM_BLOCK", 1 << 12)  # 30 blocks of the kept axis
    rng = np.random.default_rng(5)
    x = DD(rng.standard_normal((90, 300)) * 2.0 ** rng.integers(-40, 40, (90, 300)),
           rng.standard_normal((90, 300)) * 2.0**-70)
    one = ddsum.dd_sum(x, (1,), False)
    with parallel.using(2):
        two = ddsum.dd_sum(x, (1,), False)
    np.testing.assert_array_equal(one.hi, two.hi)
    np.testing.assert_array_equal(one.lo, two.lo)
    whole = ddsum._whole(x, (1,), [0], False)  # and the blocks' bits are the whole sum's
    np.testing.assert_array_equal(two.hi, whole.hi)
    np.testing.assert_array_equal(two.lo, whole.lo)


def test_dd_map_has_the_same_bits_on_two_threads_and_its_underflow_watch_sees_every_chunk():
    x = sp.Symbol("x")
    v = np.linspace(-3.0, 3.0, 200_000)  # six chunks of ``Kernels.chunk``
    v[-1] = 1e-200  # only the last chunk's x*x falls in the underflow zone
    args = {x: DD_OPS.asarray(v)}
    one = DD_OPS.map(sp.exp(x) * sp.tanh(x) + x * x, args)
    table = DD_OPS.watching()
    with parallel.using(2):
        two = table.map(sp.exp(x) * sp.tanh(x) + x * x, args)
    np.testing.assert_array_equal(one.hi, two.hi)
    np.testing.assert_array_equal(one.lo, two.lo)
    assert table.touched


def test_pieces_keep_their_order_their_caller_s_context_and_its_errors():
    var = contextvars.ContextVar("v", default=0)
    token = var.set(5)
    try:
        with parallel.using(2):
            got = parallel.each(lambda i: (i, var.get(), threading.current_thread().name),
                                range(40))
            inner = parallel.each(lambda i: parallel.threads_now(), range(4))
            with pytest.raises(ZeroDivisionError):
                parallel.each(lambda i: 1 // (i - 7), range(20))
    finally:
        var.reset(token)
    assert [g[0] for g in got] == list(range(40)) and {g[1] for g in got} == {5}
    assert all(name.startswith("symgrad-worker") for _, _, name in got)
    assert inner == [1, 1, 1, 1]  # a piece's own pieces run in line
    assert parallel.threads_now() == 1  # the pool is closed after ``using``


def test_the_default_follows_torch_threads_so_the_suite_runs_one_each():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as tests/conftest.py's one_torch_thread (pytest-xdist)
        assert parallel.default_threads() == 1
        torch.set_num_threads(2)
        assert parallel.default_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_bad_thread_count_is_one_line(bad):
    with pytest.raises(SymgradError, match="threads must be a positive integer") as e:
        VerifyConfig(threads=bad)
    assert "\n" not in str(e.value)


def test_threads_is_keyword_only():
    kind = inspect.signature(VerifyConfig).parameters["threads"].kind
    assert kind is inspect.Parameter.KEYWORD_ONLY


def test_a_large_comparison_s_chunks_give_the_same_arrays_on_two_threads(monkeypatch):
    from symgrad.compare import Tolerance
    from symgrad.tensor import comparing
    monkeypatch.setattr(comparing, "CHUNK", 1 << 9)  # 20 column chunks
    rng = np.random.default_rng(11)
    hi = rng.standard_normal((2, 5000))
    lo, E = hi * 2.0**-60, np.abs(rng.standard_normal((2, 5000))) * 8
    got = hi * (1 + rng.standard_normal((2, 5000)) * 2.0**-50)
    seen = []
    right = parallel.ordered
    monkeypatch.setattr(parallel, "ordered",
                        lambda fn, items: seen.append(parallel.threads_now()) or right(fn, items))
    runs = []
    for threads in (1, 2):
        with parallel.using(threads):
            c = comparing.compare_compact(hi, lo, got, E, backend="numpy", dtype="float64",
                                          tol=Tolerance())
        runs.append(c)
    assert seen == [1, 2]  # the chunks went to the pool asked for
    monkeypatch.setattr(comparing, "CHUNK", 1 << 20)  # and they are the one whole chunk's
    runs.append(comparing.compare_compact(hi, lo, got, E, backend="numpy", dtype="float64",
                                          tol=Tolerance()))
    for name in ("ulps", "allowed_ulps", "status"):
        for other in runs[1:]:
            np.testing.assert_array_equal(getattr(runs[0], name), getattr(other, name))
    assert len(set(runs[0].status.ravel().tolist())) >= 2  # ok and beyond: a real comparison


@pytest.mark.parametrize("spec, a, b", [
    ("hqd,hkd->hqk", (6, 40, 8), (6, 40, 8)),  # attention scores: pieces of heads
    ("hqk,hkd->qhd", (6, 40, 40), (6, 40, 8)),  # a transposed output
    ("hts,hsd->thd", (6, 40, 40), (6, 40, 8)),
])
def test_a_product_in_pieces_has_the_whole_s_bits_and_layout(monkeypatch, spec, a, b):
    monkeypatch.setattr(einpieces, "PIECES_FROM", 1 << 9)
    monkeypatch.setattr(einpieces, "PIECE", 1 << 7)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(a), rng.standard_normal(b)
    with blas_threads.one_thread():
        want = np.einsum(spec, x, y, optimize=True)
        for threads in (1, 2):
            with parallel.using(threads):
                got = einpieces.in_pieces(spec, [x, y], lambda s, *o: np.einsum(
                    s, *o, optimize=True))
            assert got is not None and np.array_equal(got, want)
            assert got.strides == want.strides
        monkeypatch.setattr(einpieces, "PIECES_FROM", want.size)  # not above it: whole
        assert einpieces.in_pieces(spec, [x, y], np.einsum) is None
        # no batch letter (a GEMM's rows: small pieces of them may take other kernels and
        # round otherwise, seen at 4 rows of 30 x 50): whole
        monkeypatch.setattr(einpieces, "PIECES_FROM", 1 << 9)
        assert einpieces.in_pieces("tk,dk->td", [rng.standard_normal((90, 50)),
                                                 rng.standard_normal((30, 50))], np.einsum) is None


GPT2_GEMMS = [  # GPT-2's per-layer GEMMs at 1024 tokens (the bound's, one sample): products
    ("ti,io->to", (1024, 768), (768, 3072)),  # the MLP's up projection
    ("to,oi->ti", (1024, 3072), (3072, 768)),  # its gradient
    ("ti,to->io", (1024, 768), (1024, 3072)),  # a weight gradient (K = the tokens)
    ("ti,tj->ij", (1024, 2304), (1024, 768)),
    ("ti,ij->tj", (1024, 768), (768, 768)),  # the attention's output projection
    ("zto,oi->zti", (2, 1024, 3072), (3072, 768)),  # stacked terms (``operands._stacked``)
    ("zti,to->zio", (3, 1024, 768), (1024, 3072)),
]


@pytest.mark.parametrize("spec, a, b", GPT2_GEMMS)
def test_a_gemm_in_columns_has_the_whole_s_bits_at_gpt2_s_shapes(spec, a, b):
    """A plain GEMM on one BLAS thread, at GPT-2's real shapes, formed in columns on the pool:
    the whole's bits and layout on 1 and 2 threads (numpy's einsum as the bound calls it)."""
    rng = np.random.default_rng(11)
    x, y = np.abs(rng.standard_normal(a)), rng.standard_normal(b)

    def einsum(s, *o):
        return np.einsum(s, *o, optimize=True)
    with blas_threads.one_thread():
        want = einsum(spec, x, y)
        for threads in (1, 2):
            with parallel.using(threads):
                got = einpieces.in_pieces(spec, [x, y], einsum)
            assert got is not None and np.array_equal(got, want)
            assert got.strides == want.strides


def test_a_gemm_is_cut_only_in_aligned_columns():
    """Rows of a GEMM, and the columns of one with an extent off ``ALIGN``, stay whole: their
    pieces rounded otherwise than the whole (300-row pieces of 1024 rows; 1419 x 768 x 881)."""
    rng = np.random.default_rng(12)
    seen = []

    def einsum(s, *o):
        seen.append(o[1].shape)
        return np.einsum(s, *o, optimize=True)
    with blas_threads.one_thread():
        x, y = rng.standard_normal((1419, 768)), rng.standard_normal((881, 768))
        assert einpieces.in_pieces("ti,oi->to", [x, y], einsum) is None  # unaligned
        x, y = rng.standard_normal((1024, 768)), rng.standard_normal((768, 3072))
        got = einpieces.in_pieces("ti,io->to", [x, y], einsum)
        assert {s[1] for s in seen} == {einpieces.WIDTH}  # the columns cut, the rows whole
        assert np.array_equal(got, np.einsum("ti,io->to", x, y, optimize=True))
