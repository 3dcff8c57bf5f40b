"""The array-ops tables agree: numpy and torch to rounding, the double-double oracle
(symgrad.precise.DD_OPS) with the 50-digit mpmath-object table to ~1e-28."""

import numpy as np
import sympy as sp

import symgrad.tensor as st
from symgrad.precise import DD_OPS
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import MpmathOps, NumpyOps, TorchOps, check_table, oracle_ops
from symgrad.tensor.views import oracle_view
from symgrad.zoo.gpt2 import gpt


def test_every_table_has_the_contract():
    for t in (NumpyOps(), TorchOps(), MpmathOps(), DD_OPS, oracle_ops()):
        check_table(t)


def test_irrational_map_constants_reach_full_precision():
    """sqrt(2/pi) in the tanh GELU: the oracle must carry it to ~1e-32, not to a double."""
    x = st.param("x", (4,))
    y = st.gelu(x)
    v = {"x": np.array([[0.3, -0.01, 0.02, 1.5]])}
    hi, lo = DD_OPS.to_float64(evaluate([y], DD_OPS, v)[0])
    m = MpmathOps(50)
    hi2, lo2 = m.to_float64(evaluate([y], m, v)[0])
    assert np.all(np.abs((hi - hi2) + (lo - lo2)) <= 1e-30 * np.abs(hi2))


def test_dd_oracle_matches_mpmath_on_a_two_layer_gpt():
    m = gpt({"vocab_size": 11, "context_length": 6, "emb_dim": 8, "n_heads": 2, "n_layers": 2,
             "drop_rate": 0.1, "qkv_bias": True}, dropout=True)
    values = m.draw(2, np.random.default_rng(0), "float64")
    hi, lo = oracle_view(m, values, DD_OPS)
    hi2, lo2 = oracle_view(m, values, MpmathOps(50))
    err = np.abs((hi - hi2) + (lo - lo2))
    nonzero = np.abs(hi2) > 1e-25  # the key biases' gradients are exactly 0 (shift invariance)
    assert np.all(err[nonzero] <= 1e-26 * np.abs(hi2[nonzero]))
    assert np.all(err[~nonzero] <= 1e-30)


def test_numpy_float32_table_rounds_like_float32():
    t = NumpyOps("float32")
    out = t.map(st.X[0] / 3, {st.X[0]: t.asarray(np.array([1.0]))})
    assert out.dtype == np.float32 and out[0] == np.float32(1) / np.float32(3)
    assert sp.Rational(1, 3) != float(out[0])
