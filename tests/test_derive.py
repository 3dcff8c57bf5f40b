import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import zoo
from symgrad.backends import mpmath as mp_backend
from symgrad.codegen import compile_program
from symgrad.derive import naive_gradient, reverse_accumulation


SMALL = ["chain_rule", "neuron", "simplenet", "tensor_ops", "gpt_embedding", "gpt_layer_norm",
         "gpt_gelu_tanh", "gpt_gelu_erf", "gpt_softmax", "gpt_dropout", "gpt_cross_entropy"]


@pytest.mark.parametrize("name", SMALL)
def test_reverse_accumulation_matches_plain_sympy_diff(name):
    model = zoo.get(name)
    # evaluated through our own printer: sympy's lambdify/evalf walk the flat trees too slowly
    target = mp_backend.target(40)
    fast = compile_program([], model.leaves, reverse_accumulation(model).expand_gradient(), target)
    slow = compile_program([], model.leaves, naive_gradient(model), target)
    drawn = model.draw(1, np.random.default_rng(7), "float64")  # respects integer domains
    point = [mpmath.mpf(float(v)) for b in model.blocks for v in drawn[b.name].ravel()]
    with mpmath.workdps(40):
        for a, b, entry in zip(fast(point), slow(point), model.entries):
            assert abs(a - b) <= mpmath.mpf(10) ** -30 * (1 + abs(b)), entry


def test_rational_constants_stay_exact():
    w = sp.Symbol("w")
    m = sg.Model("m", sp.Rational(1, 3) * w**3, params=[w])
    (g,) = reverse_accumulation(m).expand_gradient()
    assert g == m.params[0] ** 2


def test_gradient_of_unused_parameter_is_zero_and_inputs_get_no_adjoint():
    w, v, x = sp.symbols("w v x")
    m = sg.Model("m", sg.ops.exp(w * x), params=[w, v], inputs=[x])
    p = reverse_accumulation(m)
    assert p.gradient[1] == 0
    assert not any(str(s).startswith("d_x") for s, _ in p.assignments)


def test_program_grows_with_graph_not_graph_times_params():
    # a chain of n sigmoids: the backward program has O(n) assignments
    w = sp.Symbol("w")
    sizes = []
    for n in (20, 40):
        v = w
        for _ in range(n):
            v = sg.ops.sigmoid(v)
        sizes.append(reverse_accumulation(sg.Model("chain", v, params=[w])).size["operations"])
    assert sizes[1] < 2.2 * sizes[0]
