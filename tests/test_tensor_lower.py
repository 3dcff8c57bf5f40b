"""One description, two lowerings: the tensor gradient equals the gradient of the same model
lowered to the scalar program, equals plain sympy.diff, to 40+ digits."""

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
import symgrad.tensor as st
from symgrad.domains import Bernoulli, Integers, Normal
from symgrad.errors import SymgradError
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.lower import to_scalar_model
from symgrad.tensor.model import TensorModel
from symgrad.tensor.tables import MpmathOps

DPS = 60


def tensor_exact(model: TensorModel, values: dict) -> dict:
    """name -> mpf of the tensor program's exact gradient (one sample)."""
    outs = evaluate(model.gradient.outputs, MpmathOps(DPS), values)
    got = {"value": outs[0].reshape(-1)[0]}
    for b, g in zip(model.param_blocks, outs[1:]):
        flat = np.broadcast_to(g, (1,) + b.shape).reshape(-1)
        for k in range(b.size):
            got[f"d/d{b.entry(k)}"] = flat[k]
    return got


def assert_same(a: dict, b: dict, digits: int = 40):
    assert set(a) == set(b)
    with mpmath.workdps(DPS):
        for k in a:
            scale = max(abs(a[k]), mpmath.mpf(1))
            assert abs(a[k] - b[k]) <= scale * mpmath.mpf(10) ** -digits, (k, a[k], b[k])


def point_of(values):
    return {k: v[0].tolist() for k, v in values.items()}


def blocks():
    T, C, V, H = 3, 4, 5, 2
    X = st.param("X", (T, C))
    R = st.input("R", (T, C))
    g, b = st.param("g", (C,), Normal(1, 0.1)), st.param("b", (C,))
    Wq, Wk, Wv, Wo = (st.param(n, (C, C)) for n in ("Wq", "Wk", "Wv", "Wo"))
    bq, bk, bv, bo = (st.param(n, (C,)) for n in ("bq", "bk", "bv", "bo"))
    keeps = [st.input(f"attn_keep{h}", (T, T), Bernoulli(0.9)) for h in range(H)]
    ids = st.input("ids", (T,), Integers(0, V - 1))
    E = st.param("tok_emb", (V, C))
    logits = st.param("logits", (T, V))

    def readout(y):
        return st.sum_(y * R)
    return {
        "layer_norm": readout(st.layer_norm(X, g, b)),
        "gelu_tanh": readout(st.gelu(X, "tanh")),
        "gelu_erf": readout(st.gelu(X, "erf")),
        "softmax": readout(st.softmax(X) + st.log_softmax(X) / 3),
        "attention": st.sum_(st.causal_self_attention(
            X, Wq, Wk, Wv, Wo, bo, n_heads=H, bq=bq, bk=bk, bv=bv,
            attn_keep=st.stack(keeps), p=0.1) ** 2),
        "embedding": readout(st.embedding(ids, E)),
        "cross_entropy": st.cross_entropy(logits, st.input("targets", (T,), Integers(0, V - 1))),
    }


@pytest.mark.parametrize("name", list(blocks()))
def test_block_tensor_gradient_equals_scalar_program(name):
    m = TensorModel(name, blocks()[name])
    values = m.draw(1, np.random.default_rng(7), "float64")
    scalar = to_scalar_model(m)
    assert_same(tensor_exact(m, values), sg.exact_at(scalar, point_of(values), dps=DPS))


def test_layer_norm_equals_plain_sympy_diff():
    x, g = st.param("x", (3,)), st.param("g", (3,))
    m = TensorModel("ln", st.sum_(st.layer_norm(x, g, None) * st.const([1.0, -2.0, 0.5])))
    values = {"x": np.array([[0.3, -1.1, 2.0]]), "g": np.array([[1.1, 0.9, 1.3]])}
    xs, gs = sp.symbols("x0:3", real=True), sp.symbols("g0:3", real=True)
    mu = sum(xs) / 3
    var = sum((v - mu) ** 2 for v in xs) / 3
    L = sum((v - mu) / sp.sqrt(var + sp.Rational(1, 10**5)) * gi * c
            for v, gi, c in zip(xs, gs, [1, -2, sp.Rational(1, 2)]))
    subs = {s: sp.Float(v, DPS) for s, v in zip(xs + gs, [0.3, -1.1, 2.0, 1.1, 0.9, 1.3])}
    # sympy.Float(0.3) is the float64 0.3 exactly, as the samples are
    want = {"value": L}
    for i in range(3):
        want[f"d/dx[{i}]"] = sp.diff(L, xs[i])
        want[f"d/dg[{i}]"] = sp.diff(L, gs[i])
    with mpmath.workdps(DPS):
        want = {k: mpmath.mpf(str(sp.N(v.xreplace(subs), DPS))) for k, v in want.items()}
    assert_same(tensor_exact(m, values), want)


def test_one_layer_gpt_equals_the_independent_scalar_tiny_gpt():
    """The tensor builder and the scalar builder (zoo/gpt.py) are separate code: they agree."""
    from symgrad.zoo import gpt as scalar_gpt
    from symgrad.zoo.gpt2 import gpt
    cfg = {"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
           "qkv_bias": True, "drop_rate": 0.1}
    m = gpt(cfg, dropout=True)
    values = m.draw(1, np.random.default_rng(11), "float64")
    scalar = scalar_gpt.tiny_gpt(cfg)
    assert sorted(b.name for b in scalar.blocks) == sorted(b.name for b in m.blocks)
    got = tensor_exact(m, values)
    want = sg.exact_at(scalar, point_of(values), dps=DPS)
    assert_same(got, want)
    lowered = sg.exact_at(to_scalar_model(m), point_of(values), dps=DPS)
    assert_same(got, lowered)


def test_lowering_refuses_large_programs():
    from symgrad.zoo.gpt2 import gpt
    with pytest.raises(SymgradError, match="too many to lower"):
        to_scalar_model(gpt({"vocab_size": 500, "context_length": 64, "emb_dim": 64,
                             "n_heads": 2, "n_layers": 2}))
