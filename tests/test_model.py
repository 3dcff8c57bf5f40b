import warnings

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import SymgradError, zoo
from symgrad.opcatalog import by_name
from symgrad.opcatalog.build import second_order


def test_matrix_blocks_and_shapes():
    W = sg.matrix("W1", 2, 3)
    b = sg.matrix("b1", 2)
    assert str(W[1, 2]) == "W1_{1,2}" and b.shape == (2, 1)
    m = sg.Model("m", sg.ops.total(sg.ops.linear(sg.matrix("x", 3), W, b)), params=[W, b],
                 inputs=[sg.matrix("x", 3)])
    assert [(bl.name, bl.shape) for bl in m.blocks] == [("W1", (2, 3)), ("b1", (2,)), ("x", (3,))]
    assert m.entries[:2] == ["W1[0,0]", "W1[0,1]"] and m.entries[-1] == "b1[1]"


def test_draw_is_seeded_and_rounded_to_dtype():
    x, w = sp.symbols("x w")
    m = sg.Model("m", w * x, params=[w], inputs={x: sg.Uniform(0, 1)})
    a = m.draw(10, np.random.default_rng(1), "float32")
    b = m.draw(10, np.random.default_rng(1), "float32")
    assert np.array_equal(a["x"], b["x"])
    assert np.array_equal(a["x"].astype(np.float32).astype(np.float64), a["x"])


def test_free_symbol_not_declared():
    x, w, q = sp.symbols("x w q")
    with pytest.raises(SymgradError, match="free symbol 'q' is neither a parameter nor an input"):
        sg.Model("m", w * x + q, params=[w], inputs=[x])


def test_non_scalar_loss():
    W = sg.matrix("W", 2, 2)
    with pytest.raises(SymgradError, match=r"must be a scalar, got a Matrix of shape \(2, 2\)"):
        sg.Model("m", W * 2, params=[W])


def test_unsupported_function_is_named():
    w = sp.Symbol("w")
    with pytest.raises(SymgradError, match="not supported: gamma"):
        sg.Model("m", sp.gamma(w), params=[w])


def test_symbol_both_param_and_input():
    w = sp.Symbol("w")
    with pytest.raises(SymgradError, match="'w' is given a parameter and an input"):
        sg.Model("m", w * 2, params=[w], inputs=[w])


def test_constant_loss_and_empty_params():
    w = sp.Symbol("w")
    with pytest.raises(SymgradError, match="is a constant"):
        sg.Model("m", sp.Integer(3), params=[w])
    with pytest.raises(SymgradError, match="params is empty"):
        sg.Model("m", w, params=[], inputs=[w])


def test_bad_domain_and_bad_block():
    w = sp.Symbol("w")
    with pytest.raises(SymgradError, match="expected a sampling domain"):
        sg.Model("m", w, params={w: 3})
    with pytest.raises(SymgradError, match="not an sg.matrix"):
        sg.Model("m", w, params=[sp.ImmutableMatrix([w, w + 1])])
    with pytest.raises(SymgradError, match="must be a Python identifier"):
        sg.matrix("W 1", 2, 2)


def _unused_warnings(make) -> list[str]:
    """The 'does not appear in the loss' warnings ``make()`` gives, as lines."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        make()
    return [str(w.message) for w in seen if "does not appear in the loss" in str(w.message)
            or "do not appear in the loss" in str(w.message)]


def test_a_parameter_absent_from_the_loss_is_named_in_one_warning_line():
    """``params=[w, b]`` with b unused is most often a typo: one line naming it and the fix;
    the model is still built and verified (its gradient there is identically 0)."""
    w, b, c = sp.symbols("w b c")
    got = _unused_warnings(lambda: sg.Model("m", w**2, params=[w, b]))
    assert got == ["parameter 'b' does not appear in the loss of model 'm'; remove it from "
                   "params= or use it (or pass allow_unused=True: its gradient is identically "
                   "0)"]
    got = _unused_warnings(lambda: sg.Model("m", w**2, params=[w, b, c]))
    assert len(got) == 1 and got[0].startswith("parameters 'b', 'c' do not appear"), got
    W = sg.matrix("W", 2, 2)  # a whole block absent: named by the block's own name
    got = _unused_warnings(lambda: sg.Model("m", w**2, params=[w, W]))
    assert len(got) == 1 and got[0].startswith("parameter 'W' does not appear"), got
    m = sg.Model("m", w**2, params=[w, b], allow_unused=True)
    r = sg.verify(m, at={"w": np.array([1.5]), "b": np.array([2.0])}, backends=("numpy",))
    assert r.ok and sg.exact_at(m, {"w": 1.5, "b": 2.0})["d/db"] == 0


def test_parameters_that_reach_the_loss_are_not_warned_about():
    """Through named steps (the loss's free symbols are the steps'), one entry of a matrix
    block enough, a plain symbol given where the loss reads its real twin, allow_unused=True,
    and every built-in model and catalogue model (its Hessian-vector models: a linear
    parameter, addcmul's x, has no Hessian row and says so with allow_unused)."""
    w, x = sp.symbols("w x")
    W = sg.matrix("W", 2, 2)
    makes = [lambda: sg.Model("steps", sg.ops.sigmoid(sg.ops.step(w * x, label="z")),
                              params=[w], inputs=[x]),
             lambda: sg.Model("corner", W[0, 0] ** 2, params=[W]),
             lambda: sg.Model("twin", sp.Symbol("w", real=True) ** 2, params=[sp.Symbol("w")]),
             lambda: sg.Model("meant", x**2, params=[x, w], allow_unused=True),
             lambda: [zoo.get(n) for n in zoo.names()],
             lambda: second_order(by_name("addcmul"))]
    for make in makes:
        assert _unused_warnings(make) == []
    assert "x" in [b.name for b in second_order(by_name("addcmul")).model.param_blocks]
