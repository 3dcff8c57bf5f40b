"""The sides' passes stacked on the batch axis (``symgrad.tensor.sides``, ``interpret.
evaluate_walks``): every side's row is bitwise the one of its own pass, on the full-product,
separable and relaxed paths, with far fewer passes; a product run over the whole stack (not one
walk at a time) would change bits, which is why ``evaluate_walks`` does not."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
import symgrad.tensor as st
from symgrad.errors import SymgradError
from symgrad.precise import DD_OPS
from symgrad.tensor import interpret, sides
from symgrad.tensor.interpret import evaluate, evaluate_walks, identical
from symgrad.tensor.kinks import reached
from symgrad.tensor.model import TensorModel

X = st.X


def test_stacked_walks_are_bitwise_the_walks_one_at_a_time():
    """Two walks that differ in x by 2^+-60 scales: each walk's product alone gives the bits of
    its own pass; the same stack through one product (Ozaki's equilibration sees both walks)
    does not - the check below can fail."""
    W, x = st.param("W", (3, 4)), st.input("x", (4,))
    y = st.einsum("ij,j->i", st.map_(X[0] / 7, W), st.map_(X[0] / 3, x))
    rng = np.random.default_rng(5)
    Wv = rng.standard_normal((1, 3, 4))
    walks = [{"x": rng.standard_normal((1, 4)) * 2.0 ** rng.integers(-60, 60, 4)}
             for _ in range(2)]
    alone = [evaluate([y], DD_OPS, {"W": Wv, **w})[0] for w in walks]
    stacked = evaluate_walks([y], DD_OPS, {"W": Wv}, walks)[0]
    assert all(identical(alone[i], stacked[i:i + 1]) for i in range(2))
    together = evaluate([y], DD_OPS, {"W": Wv, "x": np.concatenate([w["x"] for w in walks])})[0]
    assert not all(identical(alone[i], together[i:i + 1]) for i in range(2))


def test_a_product_of_walks_selects_walk_by_walk(monkeypatch):
    """A product whose factor is a one-hot in some walks and dense in others: each walk's part
    is the product it gets alone (``selection.apart``: the one-hot walks select, the dense one
    goes to Ozaki alone); where every walk's factor is a one-hot, the whole stack selects in
    one pass, no walk multiplied alone."""
    from symgrad.precise.ddops import DDOps
    W, x = st.param("W", (3, 4)), st.input("x", (4,))
    y = st.einsum("ij,j->i", st.map_(X[0] / 7, W), x)
    rng = np.random.default_rng(6)
    Wv = rng.standard_normal((1, 3, 4))
    hot = lambda k: np.eye(4)[k][None]  # noqa: E731
    dense = rng.standard_normal((1, 4)) * 2.0 ** rng.integers(-60, 60, 4)
    alone_calls = []
    real = DDOps._matmul3
    monkeypatch.setattr(DDOps, "_matmul3",
                        lambda self, a, b: alone_calls.append(a.shape) or real(self, a, b))
    for walks, alone in (([hot(1), dense, hot(3)], 3), ([hot(0), hot(2), hot(2)], 0)):
        walks = [{"x": v} for v in walks]
        want = [evaluate([y], DD_OPS, {"W": Wv, **w})[0] for w in walks]
        alone_calls.clear()
        got = evaluate_walks([y], DD_OPS, {"W": Wv}, walks)[0]
        assert len(alone_calls) == alone
        assert all(identical(want[i], got[i:i + 1]) for i in range(len(walks)))


def test_a_leaf_the_walks_share_is_not_stacked():
    W, x = st.param("W", (2,)), st.input("x", (2,))
    y = st.sum_(st.map_(X[0] * X[1], W, x))
    walks = [{"x": np.ones((1, 2)), "W": np.full((1, 2), float(i))} for i in range(3)]
    seen = {}
    evaluate_walks([y], DD_OPS, {}, walks, on_node=lambda n, v: seen.setdefault(n.name, v))
    assert seen["x"].shape == (1, 2) and seen["W"].shape == (3, 2)


def test_evaluate_walks_names_a_leaf_without_a_batch_of_one():
    W = st.param("W", (2,))
    with pytest.raises(SymgradError, match=r"block 'W' of walk 0 has shape \(2, 2\)"):
        evaluate_walks([st.sum_(W)], DD_OPS, {}, [{"W": np.ones((2, 2))}] * 2)


def _layers(units: int, layers: int, tie: bool):
    W, x = st.param("W", (units, 3)), st.input("x", (3,))
    h = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", W, x))
    loss = st.sum_(st.map_(X[0] ** 2, W))
    if tie:  # a max-reduction tie among the first layer's units
        loss = loss + st.max_(h, axes=(0,))
    for k in range(1, layers):
        V = st.param(f"V{k}", (units, units))
        h = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", V, h))
    return TensorModel("layers", loss + st.sum_(h))


CASES = {  # name: (model, point, the path its row takes)
    "full product": (_layers(4, 1, False), {"W": np.zeros((1, 4, 3)), "x": np.ones((1, 3))},
                     None),
    "separable": (_layers(9, 1, False), {"W": np.zeros((1, 9, 3)), "x": np.ones((1, 3))},
                  "separable"),
    "relaxed": (_layers(6, 2, True), {"W": np.zeros((1, 6, 3)), "V1": np.ones((1, 6, 6)),
                                      "x": np.ones((1, 3))}, "relaxed"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_stacked_sides_are_bitwise_the_passes_one_at_a_time(monkeypatch, name):
    m, at, kind = CASES[name]
    keys = reached(m, at, DD_OPS, ("float64",), sg.Tolerance())
    passes = []
    real = interpret.evaluate
    for module in (interpret, sides):
        monkeypatch.setattr(module, "evaluate",
                            lambda *a, **k: passes.append(1) or real(*a, **k))

    def sides_with(entries):
        monkeypatch.setattr(sides, "STACK_ENTRIES", entries)
        passes.clear()
        hi, lo = np.zeros((1, 1 + m.n_parameters)), np.zeros((1, 1 + m.n_parameters))
        ks, _, _ = sides.kink_sides(m, at, keys, DD_OPS, hi, lo)
        s = ks.structure.get(0)
        return ks.vertices[0], ks.labels[0], s and s.kind, len(passes)
    default = sides.STACK_ENTRIES
    V1, L1, kind1, one_by_one = sides_with(0)
    V, L, kind_, stacked = sides_with(default)
    assert kind1 == kind_ == kind
    assert V.shape == V1.shape and V.shape[0] >= 10 and L == L1
    assert np.array_equal(V.view(np.uint64), V1.view(np.uint64))
    assert one_by_one >= V.shape[0] and stacked <= 8, (one_by_one, stacked)
