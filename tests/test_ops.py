import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad import SymgradError, ops, zoo
from symgrad.compare import FAILING
from symgrad.graph import Graph
from symgrad.tensor.front import to_program
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import TorchOps


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
    with pytest.raises(SymgradError, match=r"linear: weight has shape \(2, 3\) but the input "
                       r"has 2 rows; need weight \(out, in\) and input \(in, 1\)$"):
        ops.linear(sg.matrix("x", 2), A)
    # newuser8 wrote linear(W, x, c) for F.linear's linear(x, W, c): the message says so
    with pytest.raises(SymgradError, match=r"weight has shape \(3, 1\) but the input has 2 "
                       r"rows; .*; the input comes first, linear\(x, weight, bias\): swap them$"):
        ops.linear(A, sg.matrix("x", 3))
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


def _own_torch_hessian(model: sg.Model, values: dict[str, float], params: list[str]):
    """The gradient and Hessian (torch double backward) of symgrad's own torch program of
    ``model`` (its tensor program under the torch table, as the torch view runs it)."""
    program = to_program(model)
    leaves = {b.name: torch.tensor(values[b.name], dtype=torch.float64,
                                   requires_grad=b.name in params) for b in program.blocks}
    loss = evaluate([program.loss], TorchOps("float64"), leaves)[0].sum()
    wrt = [leaves[n] for n in params]
    grads = torch.autograd.grad(loss, wrt, create_graph=True)
    hess = [[torch.autograd.grad(g.sum(), v, retain_graph=True)[0].item() for v in wrt]
            for g in grads]
    return [g.item() for g in grads], hess


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_own_program_of_ops_bce_is_twice_differentiable_at_a_zero_logit(y):
    """The zoo neuron, L = ops.bce(sigmoid(x w + b), y), at w = b = 0 (logit exactly 0): the
    Hessian is sigma'(0) [[x^2, x], [x, 1]] with sigma'(0) = 1/4 (exact in binary floats here).
    The max(t, 0) + log1p(e^-|t|) form of softplus gave all four entries 0 (abs'(0) = 0)."""
    x = 1.5
    g, h = _own_torch_hessian(zoo.get("neuron"), {"w": 0.0, "b": 0.0, "x": x, "y": y}, ["w", "b"])
    assert g == [(0.5 - y) * x, 0.5 - y]
    assert h == [[x * x / 4, x / 4], [x / 4, 0.25]], h


def test_own_program_of_ops_softplus_is_twice_differentiable_at_zero():
    """ops.softplus: (1/2, 1/4) at 0, and sigma(z), sigma(z) sigma(-z) off 0."""
    z = sp.Symbol("z", real=True)
    model = sg.Model("softplus", ops.softplus(z), params=[z])
    assert _own_torch_hessian(model, {"z": 0.0}, ["z"]) == ([0.5], [[0.25]])
    for at in (-3.0, 2.5):
        s = 1 / (1 + np.exp(-at))
        (g,), ((h,),) = _own_torch_hessian(model, {"z": at}, ["z"])
        assert g == pytest.approx(s, rel=1e-15) and h == pytest.approx(s * (1 - s), rel=1e-14)


def test_order_2_of_the_zoo_neuron_at_a_zero_logit_passes():
    """H v of ops.bce at z = 0 through sg.verify: the own programs' entries are sigma'(0) x v
    within their bound (the max/abs form failed them: 0 against the exact value)."""
    at = {"w": [0.0, 0.0, 0.5], "b": [0.0, 0.0, -0.75], "x": [1.5, -2.0, 1.5],
          "y": [1.0, 0.0, 0.0]}
    r = sg.verify(zoo.get("neuron"), order=2, at=at, seed=0, backends=("numpy", "torch"))
    for name in ("numpy", "torch"):
        c = r.comparisons[name]
        assert not np.isin(c.status, FAILING).any(), (name, c.status, c.got, c.expected)
    assert r.verdict == "pass", r.verdict


def test_an_unlabelled_elementwise_op_on_a_matrix_is_still_a_layer():
    """``ops.tanh`` on a matrix without ``label=`` tags its Group (named after its operand,
    ``tanh_W1_out``, as dense after its weight): the textbook form has one delta per layer,
    dL/dW2 and dL/db2 included (untagged, the second dense's rules were dropped)."""
    from symgrad.report import gradient_formulas
    X, t = sg.matrix("x", 4, 1), sg.matrix("t", 4)
    W1, b1, W2, b2 = sg.matrix("W1", 3, 1), sg.matrix("b1", 3), sg.matrix("W2", 2, 3), \
        sg.matrix("b2", 2)
    h = ops.tanh(ops.dense(X, W1, b1))
    assert h[0, 0].group.op == "tanh" and h[0, 0].group.label == "tanh_W1_out"
    assert h[0, 0].group.operands == ("W1_out",) and h[0, 0].group.shape == (4, 3)
    m = sg.Model("mlp_unlabelled", ops.cross_entropy(ops.dense(h, W2, b2), t),
                 params=[W1, b1, W2, b2], inputs=[X, t])
    title, lines = gradient_formulas(m)[0]
    assert title == "Textbook form: one delta per op (matrix notation)"
    tex = [f.latex for f in lines]  # the user's own W1, W2: W_1, W_2 (the zoo's: W^(1))
    for lhs in (r"\frac{\partial L}{\partial W_{2}} =", r"\frac{\partial L}{\partial b_{2}} =",
                r"\delta_{\mathrm{tanh\_W1\_out}} =", r"\delta_{\mathrm{W1\_out}} =",
                r"\frac{\partial L}{\partial W_{1}} =", r"\frac{\partial L}{\partial b_{1}} ="):
        assert sum(line.startswith(lhs) for line in tex) == 1, (lhs, tex)
    labelled = ops.tanh(ops.dense(X, W1, b1), label="h")  # a label of the user's still wins
    assert labelled[0, 0].group.label == "h" and labelled[1, 2].label == "h_{1,2}"


def test_cross_entropy_rows_are_one_group():
    """ops.cross_entropy's per-row steps (lse_t, nll_t) carry one Group, as dense's entries do,
    so explain and the report read them as one layer on the logits (issue 17, item 7)."""
    import symgrad as sg
    Z, y = sg.matrix("Z", 3, 4), sg.matrix("y", 3)
    loss = sg.ops.cross_entropy(Z, y)
    rows = [s for s in loss.definition.free_symbols if getattr(s, "group", None) is not None]
    assert {s.group.op for s in rows} == {"cross_entropy"} and len(rows) == 3
    g = rows[0].group
    assert (g.label, g.operands, g.shape) == ("nll", ("Z", "y"), (3, 1))
    lse = [u for s in rows for u in s.definition.free_symbols if getattr(u, "kind", "") ==
           "logsumexp" or str(getattr(u, "label", "")).startswith("lse")]
    assert lse and all(u.group is g for u in lse)


def test_cross_entropy_of_separate_steps_or_a_transpose_is_not_one_layer():
    """No Group where no matrix name stands for the logits: steps gathered in a matrix, or a
    square op output transposed (lse(Z) would name the untransposed Z)."""
    import symgrad as sg
    x, W, y = sg.matrix("x", 3), sg.matrix("W", 4, 3), sg.matrix("y", 1)
    gathered = sg.ops.cross_entropy(sg.ops.linear(x, W).T, y)
    X, V, t = sg.matrix("X", 3, 3), sg.matrix("V", 3, 3), sg.matrix("t", 3)
    square = sg.ops.cross_entropy(sg.ops.dense(X, V).T, t)
    for loss in (gathered, square):
        assert all(getattr(s, "group", None) is None for s in loss.definition.free_symbols)
    plain = sg.ops.cross_entropy(sg.ops.dense(X, V), t)
    assert all(s.group.op == "cross_entropy" for s in plain.definition.free_symbols)
