import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import SymgradError


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
