"""The program's derivative (ported from tests/test_derive.py, whose scalar reverse accumulation
is deleted with the scalar pipeline, and from tests/test_gate.py's 40-digit check, which retires
with the gate): a plain ``sg.Model``'s tensor program (``to_program``) differentiates every zoo
model exactly as ``sympy.diff`` does, to 40 digits; rational constants stay exact; an unused
parameter's gradient is 0 and inputs get none; the program grows with the graph."""

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import zoo
from symgrad.tensor.front import to_program
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import MpmathOps

DPS = 60
ZOO = [n for n in zoo.names() if n != "tiny_gpt"]  # tiny_gpt: a tensor model already


def _sympy_gradient(model, point: dict) -> list:
    """Loss and d loss / d param of the scalar loss at 60 digits: sympy.diff of the expanded
    loss for small models; for the others sympy.diff of every step (its local derivatives)
    chained in reverse, at the point (the expanded attention loss takes minutes to diff)."""
    val = {model.real[s]: sp.Float(float(v), DPS)
           for b in model.blocks for s, v in zip(b.symbols, np.ravel(point[b.name]))}
    if len(model.params) <= 8:
        loss = model.graph.expand()
        return [sp.N(e.xreplace(val), DPS)
                for e in [loss] + [sp.diff(loss, p) for p in model.params]]
    for n in model.graph.nodes:
        val[n.symbol] = sp.N(n.expr.xreplace(val), DPS)
    adj = {model.graph.output.symbol: sp.Float(1, DPS)}
    for n in reversed(model.graph.nodes):
        a = adj.pop(n.symbol, None)
        if a is None:
            continue
        for s in n.operands:
            d = sp.N(sp.diff(n.expr, s).xreplace(val), DPS)
            adj[s] = adj.get(s, 0) + a * d
    return [val[model.graph.output.symbol]] + [sp.N(adj.get(p, 0), DPS) for p in model.params]


@pytest.mark.parametrize("name", ZOO)
def test_program_gradient_equals_sympy_diff_to_40_digits(name):
    """Meant to fail on any wrong local derivative or adjoint: the program's loss and gradient
    evaluated at 60 digits against sympy.diff at two drawn points."""
    model = zoo.get(name)
    program = to_program(model)
    values = program.draw(2, np.random.default_rng(7), "float64")
    for s in range(2):
        one = {k: v[s:s + 1] for k, v in values.items()}
        outs = evaluate(program.gradient.outputs, MpmathOps(DPS), one)
        got = [v for o in outs for v in np.asarray(o, dtype=object).reshape(-1)]
        want = _sympy_gradient(model, {k: v[0] for k, v in one.items()})
        assert len(got) == len(want) == 1 + program.n_parameters
        with mpmath.workdps(DPS):
            for i, (g, w) in enumerate(zip(got, want)):
                w = mpmath.mpf(str(w))
                scale = max(abs(w), mpmath.mpf(1))
                assert abs(g - w) <= scale * mpmath.mpf(10) ** -40, (name, s, i, g, w)


def test_rational_constants_stay_exact():
    """(1/3) w^3: the gradient is w^2 exactly (1/3 kept as a rational, not 0.333...): 9 at
    w = 3, fl(0.1)^2 to 60 digits at w = 0.1."""
    w = sp.Symbol("w")
    m = sg.Model("m", sp.Rational(1, 3) * w**3, params=[w])
    g = sg.exact_at(m, {"w": 3}, dps=DPS)
    assert g["d/dw"] == 9 and g["value"] == 9
    with mpmath.workdps(DPS):
        g = sg.exact_at(m, {"w": 0.1}, dps=DPS)
        want = mpmath.mpf(0.1) ** 2
        assert abs(g["d/dw"] - want) <= want * mpmath.mpf(10) ** -50


def test_gradient_of_unused_parameter_is_zero_and_inputs_get_no_adjoint():
    w, v, x = sp.symbols("w v x")
    m = sg.Model("m", sg.ops.exp(w * x), params=[w, v], inputs=[x], allow_unused=True)
    program = to_program(m)
    assert program.n_parameters == 2  # w and v; x is an input: no gradient entry
    g = sg.exact_at(m, {"w": 0.5, "v": 2.0, "x": 3.0})
    assert set(g) == {"value", "d/dw", "d/dv"}
    assert g["d/dv"] == 0
    assert abs(g["d/dw"] - 3 * mpmath.exp(1.5)) < 1e-14


def test_program_grows_with_graph_not_graph_times_params():
    """A chain of n sigmoids: the gradient program has O(n) nodes."""
    w = sp.Symbol("w")
    sizes = []
    for n in (20, 40):
        v = w
        for _ in range(n):
            v = sg.ops.sigmoid(v)
        r = sg.verify(sg.Model("chain", v, params=[w]), samples=1, backends=("numpy",))
        sizes.append(r.program_size["gradient_nodes"])
    assert sizes[1] < 2.2 * sizes[0]
