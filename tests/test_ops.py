import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import SymgradError, ops
from symgrad.graph import Graph


def _flat(expr):
    return Graph.from_expr(expr).expand()


@pytest.mark.parametrize("op", [ops.sigmoid, ops.tanh, ops.exp])
def test_partials_in_terms_of_output_equal_sympy_diff(op):
    z = sp.Symbol("z", real=True)
    out = op(z)
    (operand, partial), = out.partials.items()
    by_sympy = sp.diff(out.definition, operand)
    as_given = partial.xreplace({out: out.definition})
    for v in (-30, sp.Rational(-5, 2), 0, sp.Rational(7, 10), 41):
        a, b = by_sympy.subs(z, v).evalf(50), as_given.subs(z, v).evalf(50)
        assert abs(a - b) <= 1e-40 * abs(b)


def test_stable_bce_is_the_textbook_bce():
    z, y = sp.symbols("z y", real=True)
    stable = _flat(ops.bce(ops.sigmoid(z), y))
    textbook = -(y * sp.log(1 / (1 + sp.exp(-z))) + (1 - y) * sp.log(1 - 1 / (1 + sp.exp(-z))))
    for zv in (-40, sp.Rational(-33, 10), sp.Rational(1, 4), 17):
        for yv in (0, 1, sp.Rational(3, 10)):
            a = stable.subs({z: zv, y: yv}).evalf(60)
            b = textbook.subs({z: zv, y: yv}).evalf(60)
            assert abs(a - b) <= 1e-40 * abs(b)


def test_softplus_relu_and_reductions():
    x = sp.Symbol("x", real=True)
    assert _flat(ops.relu(x)) == sp.Max(x, 0)
    assert abs((_flat(ops.softplus(x)) - sp.log(1 + sp.exp(x))).subs(x, -3).evalf(50)) < 1e-45
    A = sg.matrix("A", 2, 2)
    assert sp.expand(_flat(ops.total(A))) == sum(A)


def test_matmul_linear_reshape_shapes_and_errors():
    A, B = sg.matrix("A", 2, 3), sg.matrix("B", 3, 4)
    assert ops.matmul(A, B).shape == (2, 4)
    assert ops.reshape(A, 3, 2).shape == (3, 2) and ops.transpose(A).shape == (3, 2)
    with pytest.raises(SymgradError, match=r"shapes \(2, 3\) and \(2, 3\) do not align"):
        ops.matmul(A, A)
    with pytest.raises(SymgradError, match="cannot reshape"):
        ops.reshape(A, 4, 2)
    with pytest.raises(SymgradError, match="linear: weight has shape"):
        ops.linear(sg.matrix("x", 2), A)
    with pytest.raises(SymgradError, match="expected a matrix"):
        ops.matmul(sp.Symbol("q"), A)


def test_ops_values_match_numpy():
    x = sg.matrix("x", 3)
    W, b = sg.matrix("W", 2, 3), sg.matrix("b", 2)
    out = ops.linear(x, W, b)
    rng = np.random.default_rng(0)
    xv, Wv, bv = rng.normal(size=3), rng.normal(size=(2, 3)), rng.normal(size=2)
    subs = {**dict(zip(x, xv)), **dict(zip(W, Wv.ravel())), **dict(zip(b, bv))}
    got = [float(_flat(e).subs(subs)) for e in out]
    assert np.allclose(got, Wv @ xv + bv, rtol=1e-14)
