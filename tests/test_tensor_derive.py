"""Reverse accumulation over tensor nodes: each VJP rule against sympy.diff and torch."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
import symgrad.tensor.derive as derive
from symgrad.errors import SymgradError
from symgrad.tensor.model import TensorModel
from symgrad.tensor.program import ADD_WIDTH
from symgrad.testing import scale_backward
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import MpmathOps, NumpyOps


def grads(loss, params, values):
    n = max(len(v) for v in values.values())
    outs = evaluate(st.gradient(loss, params), NumpyOps("float64"), values)
    return [np.broadcast_to(g, (n,) + p.shape) for g, p in zip(outs, params)]


def test_map_rule_uses_exact_sympy_derivative():
    x = st.param("x", (3,))
    L = st.sum_(st.map_(sp.erf(st.X[0]) * sp.exp(st.X[0] / 3), x))
    xv = np.array([[-0.5, 0.1, 2.0]])
    (g,) = grads(L, [x], {"x": xv})
    s = sp.Symbol("s")
    d = sp.lambdify(s, sp.diff(sp.erf(s) * sp.exp(s / 3), s))
    np.testing.assert_allclose(g[0], [d(v) for v in xv[0]], rtol=1e-14)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("ij,kj->ik", [(3, 4), (2, 4)]),
    ("htd,hsd->hts", [(2, 3, 4), (2, 3, 4)]),
    ("ij->", [(3, 4)]),            # a sum: the adjoint broadcasts back
    ("ij,j->i", [(3, 4), (4,)]),
    ("i,j->ij", [(3,), (4,)]),      # an outer product
    ("ijk->kji", [(2, 3, 4)]),
])
def test_einsum_adjoint_matches_torch(spec, shapes):
    rng = np.random.default_rng(0)
    nodes = [st.param(f"a{i}", s) for i, s in enumerate(shapes)]
    y = st.einsum(spec, *nodes)
    R = rng.normal(size=y.shape)
    L = st.sum_(st.map_(st.X[0] * st.X[1], y, st.const(np.round(R * 8) / 8)))
    vals = {f"a{i}": rng.normal(size=(2,) + s) for i, s in enumerate(shapes)}
    got = grads(L, nodes, vals)
    ts = [torch.tensor(v, requires_grad=True) for v in vals.values()]
    out = torch.einsum("Z" + spec.replace(",", ",Z").replace("->", "->Z"), *ts)
    (out * torch.tensor(np.round(R * 8) / 8)).sum().backward()
    for g, t in zip(got, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_gpt_gradient_matches_torch_autograd_of_same_program():
    from symgrad.tensor.views import numpy_view, torch_view
    from symgrad.zoo.gpt2 import gpt
    m = gpt({"vocab_size": 9, "context_length": 5, "emb_dim": 8, "n_heads": 2, "n_layers": 2,
             "qkv_bias": True}, dropout=True)
    vals = m.draw(4, np.random.default_rng(3), "float64")
    a = numpy_view(m, vals, "float64")
    b = torch_view(m, vals, dtype="float64", device="cpu")
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


def test_softmax_shift_has_exactly_zero_derivative():
    x = st.param("x", (4,))
    p = st.softmax(x)
    L = st.sum_(p * st.const([1.0, 2.0, 3.0, 4.0]))
    vals = {"x": np.array([[0.3, -1.0, 2.0, 0.5]])}
    (g,) = evaluate(st.gradient(L, [x]), MpmathOps(50), vals)
    # d/dx_i sum_j p_j c_j = p_i (c_i - sum p c): exact at 50 digits, no shift term
    import mpmath
    with mpmath.workdps(50):
        xs = [mpmath.mpf(v) for v in vals["x"][0]]
        e = [mpmath.exp(v) for v in xs]
        pv = [v / sum(e) for v in e]
        mean = sum(pi * c for pi, c in zip(pv, [1, 2, 3, 4]))
        want = [pi * (c - mean) for pi, c in zip(pv, [1, 2, 3, 4])]
        assert max(abs(a - b) for a, b in zip(g[0], want)) < mpmath.mpf(10) ** -45


def test_max_reduction_gradient_goes_to_the_maximum_a_tie_shared_evenly():
    """Max over an axis is differentiable (the exact derivative off ties; at a tie the oracle's
    kink sides decide, ``symgrad.tensor.kinks``): the cotangent goes to the maximal entry, a
    tie shared evenly as torch.amax does."""
    x = st.param("x", (2, 3))
    g = grads(st.sum_(st.max_(x, 1)), [x], {"x": np.array([[[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]]])})
    assert np.allclose(g[0], [[[0, 1, 0], [1 / 3, 1 / 3, 1 / 3]]])


def test_unused_parameter_gets_zero_gradient():
    x, y = st.param("x", (2,)), st.param("y", (2,))
    g = grads(st.sum_(x * x), [x, y], {"x": np.ones((1, 2)), "y": np.ones((1, 2))})
    np.testing.assert_array_equal(g[1], np.zeros((1, 2)))


def test_loss_must_be_scalar():
    with pytest.raises(SymgradError, match="must be a scalar"):
        st.gradient(st.param("x", (2,)), [])


def _fan(users: int):
    """A model whose node h = tanh(w * x) is read by ``users`` maps (more than ``st.X`` has
    symbols), added up by a chain of binary maps; and its torch twin."""
    w, x = st.param("w", (3,)), st.input("x", (3,))
    h = st.map_(sp.tanh(st.X[0] * st.X[1]), w, x)
    acc = None
    for k in range(users):
        u = st.map_(sp.tanh(st.X[0] * sp.Rational(k + 1, 16)), h)
        acc = u if acc is None else acc + u
    model = TensorModel(f"fan{users}", st.sum_(acc))

    def fn(w, x, factor=1.0):
        w = scale_backward(w, factor) if factor != 1.0 else w
        h = torch.tanh(w * x)
        return sum(torch.tanh(h * ((k + 1) / 16)) for k in range(users)).sum()
    return w, model, fn


@pytest.mark.parametrize("users", [20, 40])
def test_a_node_with_more_users_than_map_operands_keeps_its_whole_gradient(users):
    """Its gradient adds ``users`` contributions (once: IndexError past 16): maps of at most
    ``ADD_WIDTH`` operands, each addition still a rounded step the bound counts."""
    w, model, fn = _fan(users)
    (g,) = st.gradient(model.loss, [w])
    adds = [n for n in st.topological([g]) if n.op == "map" and len(n.args) > 2]
    assert adds and all(len(n.args) <= ADD_WIDTH for n in adds)
    vals = {"w": np.array([[0.3, -0.7, 1.1]]), "x": np.array([[0.5, 2.0, -1.5]])}
    (got,) = evaluate([g], NumpyOps("float64"), vals)
    wt = torch.tensor(vals["w"][0], requires_grad=True)
    fn(wt, torch.tensor(vals["x"][0])).backward()
    np.testing.assert_allclose(got[0], wt.grad.numpy(), rtol=1e-13)
    assert sg.verify(model, torch_fn=fn, samples=10, seed=0).verdict == "pass"
    bad = sg.verify(model, torch_fn=lambda w, x: fn(w, x, 1 + 1e-9), samples=10, seed=0)
    assert bad.verdict == "fail"


def test_a_map_of_more_operands_than_symbols_is_refused_early():
    xs = [st.param(f"p{i}", (2,)) for i in range(17)]
    with pytest.raises(SymgradError, match="17 operands.*add_all"):
        st.map_(sp.Add(*st.X), *xs)
    assert st.add_all(xs).shape == (2,)


def test_the_local_derivative_cache_is_bounded_and_a_dropped_body_is_derived_the_same(
        monkeypatch):
    """``derive._local`` keeps at most ``LOCAL_ENTRIES`` bodies; one dropped and derived again
    gives the same body and operands (the program's maps are equal)."""
    x, y = st.param("x", (3,)), st.param("y", (3,))
    bodies = [sp.tanh(st.X[0]) * st.X[1], sp.exp(st.X[0] * st.X[1]), st.X[0] ** st.X[1],
              sp.sin(st.X[0] + 2 * st.X[1])]
    L = st.sum_(st.add_all([st.map_(b, x, y) for b in bodies]))

    def bodies_of_gradient():
        g = st.Gradient(L, (x, y), tuple(st.gradient(L, [x, y])))
        return [(n.op, n.attrs.get("expr")) for n in g.nodes]
    monkeypatch.setattr(derive, "_LOCAL", {})
    wide = bodies_of_gradient()
    monkeypatch.setattr(derive, "_LOCAL", {})
    monkeypatch.setattr(derive, "LOCAL_ENTRIES", 2)
    first = bodies_of_gradient()
    assert len(derive._LOCAL) == 2
    again = bodies_of_gradient()
    assert len(derive._LOCAL) == 2
    assert first == wide and again == wide


def test_a_map_is_differentiated_only_by_operands_on_a_path_to_a_parameter(monkeypatch):
    """An input's and a kink selector's operand slot is never differentiated (its cotangent is
    thrown away): ``_local`` and torch's form are asked only about the parameter's slot, and
    the gradient is the same as when every slot is differentiated."""
    w, x = st.param("w", (3,)), st.input("x", (3,))
    body = sp.tanh(st.X[0] * st.X[1]) + sp.sin(st.X[1])
    L = st.sum_(st.map_(body, w, x))
    asked = []
    local = derive._local
    monkeypatch.setattr(derive, "_local", lambda e, i, k: asked.append(i) or local(e, i, k))
    g = st.gradient(L, [w])
    assert asked == [0]
    every = derive._vjp_map  # the rule without the wanted slots: both slots differentiated
    monkeypatch.setattr(derive, "_local", local)
    node = L.args[0]
    assert len([d for d in every(node, st.const(1.0, "g")) if d is not None]) == 2
    values = {"w": np.array([[0.3, -1.2, 2.0]]), "x": np.array([[1.5, 0.7, -0.4]])}
    got = evaluate(g, NumpyOps("float64"), values)[0]
    t = 1 - np.tanh(values["w"] * values["x"]) ** 2
    np.testing.assert_allclose(got, values["x"] * t, rtol=1e-15)
