"""The tensor IR and its builder: shapes, validation errors, the interpreter on numpy."""

import numpy as np
import pytest
import sympy as sp

import symgrad.tensor as st
from symgrad.errors import SymgradError
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import NumpyOps, TorchOps


def run(node, **values):
    return evaluate([node], NumpyOps("float64"), values)[0]


def test_einsum_matmul_matches_numpy():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 5, 2))
    y = st.param("A", (4, 5)) @ st.param("B", (5, 2))
    assert y.shape == (4, 2)
    np.testing.assert_allclose(run(y, A=A, B=B), A @ B)


def test_map_broadcasts_lower_rank_operand():
    x, b = st.param("x", (2, 3)), st.param("b", (3,))
    y = st.map_(st.X[0] * st.X[1] + 1, x, b)
    xv, bv = np.ones((2, 2, 3)), np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(run(y, x=xv, b=bv), xv * bv[:, None, :] + 1)


def test_softmax_rows_sum_to_one_and_mask_zeroes_future():
    x = st.param("x", (4, 4))
    p = st.softmax(x, -1, mask=st.causal_mask(4))
    v = run(p, x=np.random.default_rng(1).normal(size=(2, 4, 4)) * 30)
    np.testing.assert_allclose(v.sum(-1), 1.0)
    assert np.all(v[:, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0)


def test_take_per_sample_ids_and_onehot():
    table, ids = st.param("E", (5, 2)), st.input("ids", (3,), integer=True)
    E = np.arange(20.0).reshape(2, 5, 2)
    i = np.array([[0, 4, 4], [1, 2, 3]])
    out = run(st.embedding(ids, table), E=E, ids=i)
    np.testing.assert_array_equal(out, np.stack([E[0][i[0]], E[1][i[1]]]))
    oh = run(st.onehot(ids, 5), ids=i)
    assert oh.shape == (2, 3, 5) and oh.sum() == 6


def test_out_of_range_id_is_a_clear_error():
    table, ids = st.param("E", (5, 2)), st.input("ids", (3,), integer=True)
    with pytest.raises(SymgradError, match="id 7 is outside 0..4"):
        run(st.embedding(ids, table), E=np.zeros((1, 5, 2)), ids=np.array([[0, 7, 1]]))


@pytest.mark.parametrize("bad, message", [
    (lambda: st.einsum("ij,jk->ik", st.param("A", (2, 3)), st.param("B", (4, 2))),
     "axis 'j' has sizes 3 and 4"),
    (lambda: st.einsum("ii->i", st.param("A", (2, 2))), "one distinct letter per axis"),
    (lambda: st.map_(st.X[0] + sp.Symbol("q"), st.param("a", (2,))), "are not operands"),
    (lambda: st.map_(st.X[0] + st.X[1], st.param("a", (2,)), st.param("b", (3,))),
     "do not broadcast"),
    (lambda: st.dense(st.param("x", (2, 3)), st.param("W", (4, 5))), "weight 'W' has shape"),
    (lambda: st.param("1x", (2,)), "Python identifier"),
    (lambda: st.take(st.param("E", (3, 2)), st.input("i", (2,))), "must be an integer input"),
    (lambda: st.reshape(st.param("a", (2, 3)), (4,)), "cannot reshape"),
])
def test_bad_programs_get_clear_errors(bad, message):
    with pytest.raises(SymgradError, match=message):
        bad()


def test_numpy_and_torch_tables_agree_on_gpt_block():
    from symgrad.zoo.gpt2 import gpt
    m = gpt({"vocab_size": 7, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1})
    vals = m.draw(3, np.random.default_rng(0), "float64")
    a = evaluate([m.loss], NumpyOps("float64"), vals)[0]
    b = evaluate([m.loss], TorchOps("float64"), vals)[0].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_program_size_follows_operations_not_entries():
    from symgrad.zoo.gpt2 import gpt
    small = gpt({"vocab_size": 7, "context_length": 4, "emb_dim": 8, "n_heads": 2,
                 "n_layers": 2})
    big = gpt({"vocab_size": 700, "context_length": 64, "emb_dim": 128, "n_heads": 2,
               "n_layers": 2})
    assert small.n_nodes == big.n_nodes
    assert big.n_parameters > 100 * small.n_parameters
