"""symgrad.tensor.front.to_program: a scalar sg.Model as a tensor program of shape-() maps."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import zoo
from symgrad.tensor.front import MAX_ARGS, to_program
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.program import topological
from symgrad.tensor.tables import MpmathOps, NumpyOps
from symgrad.testing import scale_backward


def test_blocks_names_shapes_domains_and_order_are_the_models():
    m = zoo.get("simplenet")
    tm = to_program(m)
    assert [(b.name, b.shape, b.domain, b.is_param) for b in tm.blocks] == \
        [(b.name, b.shape, b.domain, b.is_param) for b in m.blocks]
    assert list(tm.entries) == m.entries
    names = {n.name for n in topological([tm.loss])}
    assert {"W1[0,1]", "b1[4]", "x[9]", "y", "h_{0}", "L"} <= names  # user's names kept


@pytest.mark.parametrize("name", ["simplenet", "gpt_embedding", "gpt_cross_entropy"])
def test_same_seed_draws_the_same_samples(name):
    m = zoo.get(name)
    old = m.draw(5, np.random.default_rng(3), "float32")
    new = to_program(m).draw(5, np.random.default_rng(3), "float32")
    assert list(old) == list(new)
    for k in old:
        np.testing.assert_array_equal(old[k], new[k])


def test_every_node_is_a_map_pick_or_layout():
    tm = to_program(zoo.get("gpt_cross_entropy"))  # integer targets: onehot picks
    ops = {n.op for n in topological([tm.loss])}
    assert ops <= {"param", "input", "const", "einsum", "map", "reshape", "onehot"}
    assert all(n.shape == () for n in topological([tm.loss]) if n.op == "map")


def _exact(m, values):
    """Loss and gradient of the scalar model at one sample, by sympy.diff (float)."""
    loss = m.graph.expand()
    subs = {m.real[s]: float(v) for b in m.blocks
            for s, v in zip(b.symbols, np.ravel(values[b.name][0]))}
    return [float(e.xreplace(subs)) for e in [loss] + [sp.diff(loss, p) for p in m.params]]


def _tensor(tm, values):
    outs = evaluate(tm.gradient.outputs, MpmathOps(30), values)
    return [float(v) for o in outs for v in np.asarray(o, dtype=object).reshape(-1)]


def test_a_step_wider_than_a_map_is_split_exactly():
    """sum of 25 squares: one step of 25 operands (> MAX_ARGS) becomes parts, same function."""
    A = sg.matrix("A", 5, 5)
    m = sg.Model("wide", sg.ops.total(sp.ImmutableMatrix(5, 5, [a**2 for a in A])),
                 params=[A])
    assert max(len(n.operands) for n in m.graph.nodes) > MAX_ARGS
    tm = to_program(m)
    maps = [n for n in topological([tm.loss]) if n.op == "map"]
    assert all(len(n.args) <= MAX_ARGS for n in maps)
    assert any("~" in n.name for n in maps)  # the parts of the wide step
    values = m.draw(1, np.random.default_rng(0), "float64")
    np.testing.assert_allclose(_tensor(tm, values), _exact(m, values), rtol=1e-14)


def test_a_value_read_by_many_steps_keeps_its_whole_gradient():
    """w read by 20 steps (> MAX_ARGS users): read through exact copies, the gradient sums all."""
    w, x = sp.symbols("w x")
    terms = [sg.ops.step(sp.tanh(w * x + k), label=f"t{k}") for k in range(20)]
    m = sg.Model("fan", sg.ops.step(sp.Add(*terms[:10]), label="s1")
                 + sg.ops.step(sp.Add(*terms[10:]), label="s2"), params=[w], inputs=[x])
    tm = to_program(m)
    users: dict[int, int] = {}
    for n in topological([tm.loss]):
        for a in n.args:
            users[a.id] = users.get(a.id, 0) + 1
    assert max(users.values()) <= MAX_ARGS
    values = m.draw(1, np.random.default_rng(1), "float64")
    np.testing.assert_allclose(_tensor(tm, values), _exact(m, values), rtol=1e-14)
    assert sg.verify(tm, samples=20, seed=0).ok


def test_integer_input_with_negative_values_is_refused():
    t, w = sp.Symbol("t"), sp.Symbol("w")
    m = sg.Model("neg", w * t, params=[w], inputs={t: sg.Integers(-2, 2)})
    with pytest.raises(sg.SymgradError, match="'t'.*Integers"):
        to_program(m)


def test_numpy_view_runs_the_same_values_as_the_scalar_program():
    m = zoo.get("gpt_embedding")
    tm = to_program(m)
    values = tm.draw(1, np.random.default_rng(0), "float64")
    outs = evaluate(tm.gradient.outputs, NumpyOps("float64"), values)
    got = np.concatenate([np.asarray(o).reshape(-1) for o in outs])
    np.testing.assert_allclose(got, _exact(m, values), rtol=1e-13, atol=1e-15)


def test_planted_sign_flip_is_caught_and_its_twin_passes_on_the_program():
    tm = to_program(zoo.get("tensor_ops"))

    def fn(A, X, flip=False):
        A = scale_backward(A, -1.0, (1, 2)) if flip else A
        R = A.reshape(3, 2)
        return ((R @ R.T - X) ** 2).mean()
    assert sg.verify(tm, torch_fn=fn, samples=20, seed=0).verdict != "fail"
    bad = sg.verify(tm, torch_fn=lambda A, X: fn(A, X, True), samples=20, seed=0)
    assert bad.verdict == "fail"
    assert any(f.output == "d/dA[1,2]" for f in bad.failures), [f.output for f in bad.failures]

