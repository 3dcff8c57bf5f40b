"""symgrad.tensor.operands: a large GEMM's E and sigma formed in row blocks (``rows_pair``) keep
every bit of the whole-array rules, in the worst case and the probabilistic mode, and are still
a bound that a planted error exceeds."""

from contextlib import contextmanager

import numpy as np
import pytest
import sympy as sp

import symgrad.tensor as st
from symgrad.precise.blas_threads import _found
from symgrad.tensor import operands
from symgrad.tensor.bound import evaluate_bound
from symgrad.tensor.operands import OneSampleOps
from symgrad.tensor.tables import NumpyOps
from symgrad.tensor.program import X


def _program():
    """A head-like GEMM of two operands that both carry E and sigma (maps of leaves), as an
    output, beside a read one (its sum)."""
    A, B = st.param("A", (40, 70)), st.param("B", (40, 50))
    a = st.map_(sp.tanh(X[0]) * 3, A)
    b = st.map_(sp.exp(X[0] / 4) - X[0], B)
    out = st.einsum("ao,ai->oi", a, b)  # 70 x 50 rows of 40 terms (dW = dY^T X)
    logits = st.einsum("ai,oi->ao", b, st.param("W", (70, 50)))  # 40 x 70, read below
    return [out, st.sum_(logits * logits)]


def _leaves(seed):
    rng = np.random.default_rng(seed)
    return {"A": rng.standard_normal((1, 40, 70)), "B": rng.standard_normal((1, 40, 50)),
            "W": rng.standard_normal((1, 70, 50))}


@pytest.mark.parametrize("mode", ["worst", "probabilistic"])
def test_row_blocks_keep_every_bit(monkeypatch, mode):
    outs, leaves = _program(), _leaves(3)
    whole = evaluate_bound(outs, leaves, mode=mode)
    blocked = []
    spy = operands.Operands.rows_pair

    def counted(self, *a):
        blocked.append(self.node.shape)
        return spy(self, *a)
    monkeypatch.setattr(operands.Operands, "rows_pair", counted)
    monkeypatch.setattr(operands, "ROWS_FROM", 1000)
    monkeypatch.setattr(operands, "ROW_BLOCK", 300)  # 6 rows of 50, the last block short
    got = evaluate_bound(outs, leaves, mode=mode)
    assert (70, 50) in blocked and (40, 70) in blocked  # both GEMMs went through the blocks
    for w, g in zip(whole, got):
        assert np.asarray(g).tobytes() == np.ascontiguousarray(w).tobytes()


def test_row_blocks_bound_the_real_error(monkeypatch):
    """E of the blocked GEMM covers float32's actual rounding of it (and is not vacuous: a
    planted 1e-4 relative error of one entry is beyond it)."""
    monkeypatch.setattr(operands, "ROWS_FROM", 1000)
    monkeypatch.setattr(operands, "ROW_BLOCK", 300)
    outs, leaves = _program(), _leaves(4)
    E = evaluate_bound(outs[:1], leaves)[0][0]
    a = np.tanh(leaves["A"][0]) * 3
    b = np.exp(leaves["B"][0] / 4) - leaves["B"][0]
    exact = a.T @ b
    a32 = (np.tanh(leaves["A"][0].astype(np.float32)) * np.float32(3)).astype(np.float32)
    b32 = (np.exp(leaves["B"][0].astype(np.float32) / np.float32(4))
           - leaves["B"][0].astype(np.float32))
    got = (a32.T @ b32).astype(np.float64)
    u = 2.0 ** -24
    assert np.all(np.abs(got - exact) <= u * E)
    got[3, 7] = exact[3, 7] * (1 + 1e-4) + np.sign(exact[3, 7]) * 1e-4 * np.abs(a).T[3] @ np.abs(b)[:, 7]
    assert np.abs(got - exact)[3, 7] > u * E[3, 7]


def test_small_gemms_run_on_one_blas_thread_and_the_count_is_restored(monkeypatch):
    """The walk's GEMMs below THREADS_FROM entries run inside ``one_thread`` (numpy's OpenBLAS
    spinning on 2 threads was most of their CPU time); larger ones keep every thread."""
    entered = []
    real = operands.one_thread

    @contextmanager
    def spy():
        entered.append(1)
        with real():
            yield
    monkeypatch.setattr(operands, "one_thread", spy)
    before = [g() for g, _ in _found()]
    outs, leaves = _program(), _leaves(5)
    evaluate_bound(outs, leaves, mode="probabilistic")
    assert len(entered) == 2  # the two einsums, not the maps or the sum
    assert [g() for g, _ in _found()] == before
    monkeypatch.setattr(operands, "THREADS_FROM", 3000)  # 70 x 50 operands: more than
    monkeypatch.setattr(operands, "THREAD_K", 30)  # 30 terms (40, 50): these keep them
    entered.clear()
    evaluate_bound(outs, leaves, mode="probabilistic")
    assert entered == []


@pytest.mark.parametrize("spec,shapes", [
    ("zai,zoi->zao", [(1, 7, 33), (1, 41, 33)]),  # the logits' form
    ("zao,zoi->zai", [(1, 7, 41), (1, 41, 33)]),  # their gradient against the table
    ("zao,zai->zoi", [(1, 7, 41), (1, 7, 33)]),  # a weight gradient
    ("zij,zjk,zk->zi", [(1, 5, 6), (1, 6, 4), (1, 4)]),
])
def test_one_sample_einsum_gives_numpys_bits(spec, shapes):
    """``OneSampleOps.einsum`` without the size-1 batch axis (no operand copies): the same
    bits as numpy's einsum with it; several samples go numpy's way unchanged."""
    rng = np.random.default_rng(11)
    ops = [rng.standard_normal(s) for s in shapes]
    plain, ours = NumpyOps("float64"), OneSampleOps()
    got, ref = ours.einsum(spec, *ops), plain.einsum(spec, *ops)
    assert got.shape == ref.shape and got.tobytes() == np.ascontiguousarray(ref).tobytes()
    two = [np.concatenate([o, 2 * o]) for o in ops]
    assert np.array_equal(ours.einsum(spec, *two), plain.einsum(spec, *two))
