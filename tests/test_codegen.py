import pytest
import sympy as sp

from symgrad import SymgradError
from symgrad.backends import mpmath as mp_backend
from symgrad.backends import numpy as np_backend
from symgrad.backends import torch as torch_backend
from symgrad.codegen import compile_program, unsupported_functions


def test_unsupported_node_is_named():
    x = sp.Symbol("x")
    with pytest.raises(SymgradError, match="not supported: gamma"):
        compile_program([], [x], [sp.gamma(x)], torch_backend.TARGET)
    assert unsupported_functions(sp.gamma(x) + sp.exp(x)) == {"gamma"}


@pytest.mark.parametrize("expr", [
    lambda x: sp.Max(x, 0) + sp.Min(x, 1, -x), lambda x: sp.Heaviside(x) * x,
    lambda x: sp.erf(x) + sp.erfc(x / 2), lambda x: sp.Piecewise((x**2, x > 0), (2, True)),
    lambda x: sp.sqrt(x**2 + 1) + 1 / x + x ** sp.Rational(3, 2) * 0 + sp.Abs(x),
    lambda x: sp.sign(x) + sp.tanh(x) + sp.pi * x,
])
def test_backends_agree_on_table_entries(expr):
    """numpy, torch and mpmath spell every table entry the same function (sympy issue 28457:
    stock lambdify breaks on Max/Heaviside/erf with Python numbers in torch)."""
    import numpy as np
    import torch
    x = sp.Symbol("x", real=True)
    e = expr(x)
    xs = np.array([-1.5, -0.25, 0.5, 2.0])
    npf = compile_program([], [x], [e], np_backend.target("float64"))
    tf = compile_program([], [x], [e], torch_backend.TARGET)
    got_np = np.broadcast_to(npf([xs])[0], xs.shape)
    got_t = tf([torch.tensor(xs)])[0]
    got_t = got_t.numpy() if isinstance(got_t, torch.Tensor) else np.full(xs.shape, got_t)
    import mpmath
    oracle = compile_program([], [x], [e], mp_backend.target(40))
    with mpmath.workdps(40):
        exact = [float(oracle([mpmath.mpf(v)])[0]) for v in xs]
    np.testing.assert_allclose(got_np, exact, rtol=1e-14)
    np.testing.assert_allclose(got_t, exact, rtol=1e-14)
