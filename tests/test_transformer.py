import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad import SymgradError, ops
from symgrad.graph import Graph


def _values(M, subs):
    return np.array([[float(Graph.from_expr(e).expand().xreplace(subs)) if not e.is_Number
                      else float(e) for e in M.row(i)] for i in range(M.shape[0])])


def test_dense_matches_nn_linear():
    X, W, b = sg.matrix("X", 2, 3), sg.matrix("W", 4, 3), sg.matrix("b", 4)
    rng = np.random.default_rng(0)
    xv, wv, bv = rng.normal(size=(2, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    subs = {**dict(zip(X, xv.ravel())), **dict(zip(W, wv.ravel())), **dict(zip(b, bv))}
    lin = torch.nn.functional.linear(torch.tensor(xv), torch.tensor(wv), torch.tensor(bv))
    np.testing.assert_allclose(_values(ops.dense(X, W, b), subs), lin.numpy(), rtol=1e-13,
                               atol=1e-14)


def test_causal_mask_position_zero_sees_only_itself():
    X = sg.matrix("X", 3, 2)
    W = [sg.matrix(n, 2, 2) for n in ("Wq", "Wk", "Wv", "Wo")]
    Y = ops.causal_self_attention(X, *W, n_heads=1)
    first_row = Graph.from_expr(Y[0, 0]).expand().free_symbols
    assert not any(str(s).startswith("X_{1") or str(s).startswith("X_{2") for s in first_row)


def test_errors_name_the_shapes():
    X = sg.matrix("X", 2, 3)
    with pytest.raises(SymgradError, match=r"dense: input has 3 features but the weight has shape"):
        ops.dense(X, sg.matrix("W", 4, 2))
    with pytest.raises(SymgradError, match="not divisible by n_heads"):
        ops.causal_self_attention(X, *[sg.matrix(n, 3, 3) for n in "qkvo"], n_heads=2)
    with pytest.raises(SymgradError, match="approximate='fast'"):
        ops.gelu(X, approximate="fast")
    with pytest.raises(SymgradError, match="mask shape"):
        ops.dropout(X, sg.matrix("k", 3, 2), 0.1)
    with pytest.raises(SymgradError, match="3 targets for 2 rows"):
        ops.cross_entropy(X, sg.matrix("t", 3))


def test_layer_norm_eps_is_exact_rational():
    X, g, b = sg.matrix("X", 1, 2), sg.matrix("g", 2), sg.matrix("b", 2)
    flat = Graph.from_expr(ops.layer_norm(X, g, b)[0, 0]).expand()
    assert flat.has(sp.Rational(1, 10**5))


def test_out_of_vocabulary_id_is_a_domain_failure():
    ids, tok = sg.matrix("ids", 2), sg.matrix("tok", 3, 2)
    m = sg.Model("oov", ops.total(ops.embedding(ids, tok)), params=[tok],
                 inputs={ids: sg.Integers(0, 5)})  # ids 3..5 have no row
    with pytest.raises(sg.SymgradError, match=r"a lookup by ids_\{1\} with no row for the "
                       r"index drawn \(rows for ids_\{1\} = 0, 1, 2 only\)"):
        sg.verify(m, samples=30, seed=0)  # drawn ids past the table: refused before running
    r = sg.verify(m, at={"ids": np.array([1, 4]), "tok": np.arange(6.0).reshape(3, 2)})
    assert r.verdict == "fail" and {f.kind for f in r.failures} == {"domain"}
