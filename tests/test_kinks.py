"""Kinks: reached when an argument is within its own rounding bound of the kink; a smooth
function written with Abs/Max has none; at a real kink the backend's gradient must be one
convex combination of the one-sided derivatives (checked jointly, not entry by entry)."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from scipy.optimize import linprog
from symgrad.compare import kinks
from symgrad.compare import KinkSides, MISMATCH, KINK, Tolerance, compare, convex_combination


class GivenGrad(torch.autograd.Function):
    """Forward: the value of ``y``; backward: hands ``weights * g`` to (w1, w2, w3)."""

    @staticmethod
    def forward(ctx, y, w1, w2, w3, weights):
        ctx.weights = weights
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        a, b, c = ctx.weights
        return None, g * a, g * b, g * c, None


def _tie_model():
    w1, w2, w3 = sp.symbols("w1 w2 w3")
    return sg.Model("max3", 2 * sp.Max(w1, w2, w3), params=[w1, w2, w3])


def _tie_fn(weights):
    def fn(w1, w2, w3):
        y = torch.maximum(torch.maximum(w1, w2), w3).detach()
        return 2 * GivenGrad.apply(y, w1, w2, w3, weights)
    return fn


TIE = {"w1": np.array([1.0]), "w2": np.array([1.0]), "w3": np.array([1.0])}


@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0),
                                     (0.0, 0.25, 0.75)])
def test_subgradient_at_a_three_way_tie_passes(weights):
    r = sg.verify(_tie_model(), at=TIE, torch_fn=_tie_fn(weights))
    assert r.ok, str(r)
    assert (r.comparisons["torch_fn"].status == KINK).any()
    if weights == (1.0, 0.0, 0.0):  # a vertex: the side is named
        notes = [f.note for f in r.kinks if f.backend == "torch_fn"]
        assert any("w1 wins the max" in n for n in notes), notes


@pytest.mark.parametrize("weights, jointly", [((1.0, 1.0, 1.0), True), ((0.5, 0.5, 0.5), True),
                                              ((1.0, -0.5, 0.5), False)])
def test_no_subgradient_at_a_tie_fails(weights, jointly):
    """(1, 1, 1): each entry lies in [0, 2], but together they are no convex combination (the
    old entry-by-entry check passed it); (1/2, 1/2, 1/2) is even sympy's own H(0) = 1/2."""
    r = sg.verify(_tie_model(), at=TIE, torch_fn=_tie_fn(weights))
    assert r.verdict == "fail"
    assert r.comparisons["numpy"].ok and r.comparisons["torch"].ok  # symgrad's own rows
    assert {f.backend for f in r.failures} == {"torch_fn"}
    assert ("convex combination" in r.failures[0].message()) == jointly


def test_underflowing_product_reaches_the_kink():
    """w*x rounds to 0 (w = 5e-324): relu's H(0) is one side of the kink, not an error."""
    w, x = sp.symbols("w x")
    m = sg.Model("underflow", sp.Max(0, w * x) + sp.tanh(w * x), params=[w], inputs=[x])
    r = sg.verify(m, at={"w": np.array([5e-324, 0.25]), "x": np.array([0.5, 0.5])},
                  torch_fn=lambda w, x: torch.relu(w * x) + torch.tanh(w * x))
    assert r.verdict != "fail", str(r)
    assert r.kinks and all(f.sample == 0 for f in r.kinks)
    relu = [f for f in r.kinks if f.backend == "torch_fn"][0]
    assert "H(0) = 0" in relu.note and "w*x → 0−" in relu.note  # torch.relu: the left side


@pytest.mark.parametrize("loss, fn, place", [
    (lambda w, x, W: sp.Abs(w * x), lambda w, x: torch.where(w * x >= 0, w * x, -w * x),
     "w*x → 0+ in the loss Abs(w*x)"),
    (lambda w, x, W: sg.ops.step(sp.Max(w * x, 0), label="h") * 3,
     lambda w, x: torch.where(w * x >= 0, w * x, 0 * w) * 3, "w*x → 0+ in h = Max(0, w*x)"),
    (lambda w, x, W: sp.Max(W[0] - W[1], 0) * x,
     lambda W, x: torch.where(W[0] - W[1] >= 0, W[0] - W[1], 0 * W[0]) * x,
     "W[0] - W[1] → 0+ in the loss x*Max(0, W[0] - W[1])")])
def test_a_kinks_convention_line_names_the_users_expression(loss, fn, place):
    """The side a backend took is placed in the user's own step, written as they wrote it
    (matrix entries as W[0]), not in the program's name for an unnamed loss ('at L[0]')."""
    w, x = sp.symbols("w x")
    W = sg.matrix("W", 2)
    params = [W] if "W" in place else [w]
    m = sg.Model("m", loss(w, x, W), params=params, inputs=[x])
    at = ({"W": np.array([[1.0, 1.0], [2.0, 1.0]]), "x": np.array([1.0, 1.0])} if "W" in place
          else {"w": np.array([0.0, 1.0]), "x": np.array([1.0, 1.0])})
    r = sg.verify(m, at=at, torch_fn=fn)
    assert r.verdict == "pass", str(r)
    notes = [f.message() for f in r.kinks if f.backend == "torch_fn"]
    assert notes and all("H(0) = " in n and f"(the one-sided derivative from {place})" in n
                         for n in notes), notes
    assert not any("L[0]" in n or "_{" in n for n in notes), notes


def test_hinge_whose_product_rounds_to_one():
    w, x = sp.symbols("w x")
    m = sg.Model("hinge", sp.Max(0, 1 - w * x), params=[w], inputs=[x])
    assert 3.0 * (1 / 3) == 1.0 and sp.Rational(3) * sp.Rational(1 / 3) != 1
    r = sg.verify(m, at={"w": np.array([3.0]), "x": np.array([1 / 3])},
                  torch_fn=lambda w, x: torch.relu(1 - w * x))
    assert r.verdict != "fail", str(r)
    assert r.kinks
    # a wrong slope at the same point is still caught
    wrong = sg.verify(m, at={"w": np.array([3.0]), "x": np.array([1 / 3])},
                      torch_fn=lambda w, x: 2 * torch.relu(1 - w * x) - 3 * (w - w.detach()))
    assert wrong.verdict == "fail"


def _softplus(w):
    return sp.Max(w, 0) + sp.log(1 + sp.exp(-sp.Abs(w)))


def softplus_model():
    """The stable softplus as a model (also a gate row, at ``SOFTPLUS_AT``)."""
    w = sp.Symbol("w")
    return sg.Model("softplus", _softplus(w), params=[w])


SOFTPLUS_AT = {"w": np.array([0.0, 1.0])}


def test_stable_softplus_has_no_kink_at_zero():
    """Max(w, 0) + log(1 + e^-|w|) is smooth: both sides give 1/2, a slope of 0.9 fails."""
    m, at = softplus_model(), SOFTPLUS_AT
    good = sg.verify(m, at=at, torch_fn=lambda w: torch.nn.functional.softplus(w))
    assert good.ok and not good.kinks, str(good)
    bad = sg.verify(m, at=at, torch_fn=lambda w: torch.nn.functional.softplus(w)
                    + 0.4 * (w - w.detach()))
    assert bad.verdict == "fail"
    assert any(f.sample == 0 and f.kind == "mismatch" for f in bad.failures)


def neuron_x15(w, b, x, y):
    """The neuron's torch code with dL/dz x1.5 (value unchanged); also a gate row."""
    z = w * x + b
    z = z * 1.5 - (z * 0.5).detach()  # value z, gradient x1.5
    return torch.nn.functional.binary_cross_entropy(torch.sigmoid(z), y)


Z0 = {"w": np.array([0.0, 0.0]), "b": np.array([0.0, 0.0]), "x": np.array([1.0, 2.0]),
      "y": np.array([0.0, 1.0])}  # the neuron at z = 0 exactly


def test_sigmoid_backward_scaled_at_zero_fails(models):
    """The neuron's BCE runs through softplus(+-z) (Abs, Max): no kink at z = 0."""
    at = Z0
    r = sg.verify(models["neuron"], at=at, torch_fn=neuron_x15)
    assert r.verdict == "fail" and not r.kinks
    assert sg.verify(models["neuron"], at=at, torch_fn=lambda w, b, x, y:
                     torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)).ok


@pytest.mark.parametrize("build, torch_fn, at", [
    (lambda w: sp.Abs(w) * 3, lambda w: torch.abs(w) * 3, [0.0, -1.0]),
    (lambda w: sp.sign(w) * w + w, lambda w: torch.sign(w) * w + w, [0.0, 2.0]),
    (lambda w: sp.Piecewise((w, w > 0), (0, True)) * 2, lambda w: torch.relu(w) * 2, [0.0, 1.0]),
    (lambda w: sp.Min(sp.Max(w, -1), 1), lambda w: torch.clamp(w, -1, 1), [1.0, -1.0, 0.5]),
    (lambda w: sp.Heaviside(w) * w, lambda w: torch.relu(w), [0.0, 3.0]),
])
def test_every_non_smooth_construct_is_a_kink(build, torch_fn, at):
    w = sp.Symbol("w")
    m = sg.Model("kink", build(w), params=[w])
    r = sg.verify(m, at={"w": np.array(at)}, torch_fn=torch_fn)
    assert r.ok, str(r)
    wrong = sg.verify(m, at={"w": np.array(at)},
                      torch_fn=lambda w: torch_fn(w) + 3 * (w - w.detach()))
    assert wrong.verdict == "fail"


def test_piecewise_condition_within_rounding_is_a_kink():
    """w*x > 1 where w*x rounds to exactly 1: either branch is what a float program takes."""
    w, x = sp.symbols("w x")
    m = sg.Model("pw", sp.Piecewise((2 * w * x - 1, w * x > 1), (w * x, True)), params=[w],
                 inputs=[x])
    at = {"w": np.array([3.0]), "x": np.array([1 / 3])}
    assert sg.verify(m, at=at).ok


def test_convex_combination_two_and_more_sides():
    V = np.array([[0.0, 2.0], [2.0, 0.0]])
    assert convex_combination(V, np.array([1.0, 1.0]), np.array([1e-12, 1e-12]))
    assert not convex_combination(V, np.array([2.0, 2.0]), np.array([1e-12, 1e-12]))
    V3 = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    assert convex_combination(V3, np.array([1.0, 1.0, 0.0]), np.full(3, 1e-12))
    assert not convex_combination(V3, np.array([2.0, 2.0, 2.0]), np.full(3, 1e-12))


def test_compare_rejects_entries_that_are_no_subgradient_together():
    exact = np.array([[2 / 3, 2 / 3, 2 / 3]])
    sides = KinkSides({0: np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])})
    got = np.array([[2.0, 2.0, 2.0]])
    c = compare(exact, np.zeros_like(exact), got, np.ones_like(exact), backend="b",
                dtype="float64", tol=Tolerance(), kink=sides)
    assert (c.status == MISMATCH).all() and c.not_subgradient.all()


def test_where_every_side_agrees_the_sides_value_is_the_derivative():
    """sign(w)^2 * w is w everywhere: at w = 0 both sides give slope 1, though sympy's
    sign(0) = 0 gives 0 (the false Hessian of logaddexp2 at a tie in `symgrad ops`). The exact
    value is the sides'; the bound was evaluated on the sign(0) = 0 path, so the entry is
    inconclusive there, never a false mismatch."""
    from symgrad.compare import INCONCLUSIVE
    w = sp.Symbol("w")
    m = sg.Model("sign_squared", sp.sign(w) ** 2 * w, params=[w])
    r = sg.verify(m, at={w: [0.0, 1.5]}, torch_fn=lambda w: w * 1.0, backends=("torch_fn",))
    c = r.comparisons["torch_fn"]
    # issue 16: an inconclusive entry is never a pass: the verdict says so
    assert r.verdict == "inconclusive" and c.expected[0, 1] == 1.0
    assert c.status[0, 1] == INCONCLUSIVE


def test_joint_subgradient_leaves_out_entries_with_an_infinite_allowance():
    """vector_norm in `symgrad ops` crashed scipy's linprog with an infinite allowance."""
    V = np.eye(3)
    assert convex_combination(V, np.array([1 / 3, 1 / 3, 5.0]), np.array([1e-9, 1e-9, np.inf]))
    assert not convex_combination(V, np.array([1.0, 1.0, 1.0]), np.array([1e-9, 1e-9, 1e-9]))


# ---------------------------------------------------------------- many kinks at once (issue 16)
def _zero_layer(width: int, depth: int = 1):
    """Linear -> ReLU (x depth) -> Linear -> BCE with logits; at W1 = 0, b = 0 every hidden
    pre-activation is exactly 0: ``width * depth`` ReLUs at their kink."""
    from symgrad import ops
    from symgrad.domains import Choice, Normal
    from symgrad.entries import matrix
    x, y = matrix("x", 3), sp.Symbol("y")
    params, h = [], x
    for d in range(depth):
        W, b = matrix(f"W{d + 1}", width, h.shape[0]), matrix(f"b{d + 1}", width)
        params += [W, b]
        h = ops.relu(ops.linear(h, W, b))
    V, c = matrix("V", 1, width), matrix("c", 1)
    z = ops.linear(h, V, c)
    m = sg.Model(f"zero_layer_{width}x{depth}", ops.bce(ops.sigmoid(z)[0, 0], y),
                 params=params + [V, c], inputs={x: Normal(), y: Choice([0.0, 1.0])})
    return m


def _zero_layer_fn(relu, depth: int = 1):
    def fn(**kw):
        h = kw["x"].reshape(-1)
        for d in range(depth):
            h = relu(kw[f"W{d + 1}"] @ h + kw[f"b{d + 1}"])
        z = kw["V"] @ h + kw["c"]
        y = kw["y"]
        return torch.nn.functional.binary_cross_entropy_with_logits(z.reshape(1), y.reshape(1))
    return fn


def _zero_layer_at(width: int, depth: int = 1, n: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    at, fan = {}, 3
    for d in range(depth):  # the first layer zero; deeper ones random weights, zero bias
        at[f"W{d + 1}"] = np.zeros((n, width, fan)) if d == 0 else rng.normal(size=(n, width, fan))
        at[f"b{d + 1}"] = np.zeros((n, width))
        fan = width
    at.update(V=rng.normal(size=(n, 1, width)), c=rng.normal(size=(n, 1)),
              x=rng.normal(size=(n, 3)), y=np.array([0.0, 1.0] * n)[:n])
    return at


class ThousandAtZero(torch.autograd.Function):
    """A ReLU whose backward hands 1000 * g at exactly 0 (every subgradient lies in [0, 1])."""

    @staticmethod
    def forward(ctx, h):
        ctx.save_for_backward(h)
        return h.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        return g * torch.where(h > 0, 1.0, torch.where(h == 0, 1000.0, 0.0)).to(g.dtype)


@pytest.mark.parametrize("width, n", [(7, 2), (8, 2), (32, 1)])
def test_relus_at_exact_zero_beyond_enumeration(width, n):
    """2^8 and 2^32 combinations of sides: the sides are separable (one ReLU layer), decided
    exactly by k + 1 passes (no cap, no 'uncertain', no 'systematic'); torch.relu's H(0) = 0
    passes as a kink, a backward of 1000 at 0 fails as outside the subdifferential. Two
    samples at widths 7 and 8; one at width 32 (the 2^32 case: each sample is decided on its
    own, so a second sample there repeats the same check at the file's largest cost)."""
    from symgrad.compare import INCONCLUSIVE, SYSTEMATIC
    m, at = _zero_layer(width), _zero_layer_at(width, n=n)
    good = sg.verify(m, at=at, torch_fn=_zero_layer_fn(torch.relu))
    assert good.ok, str(good)
    c = good.comparisons["torch_fn"]
    assert (c.status == KINK).sum() == n * 4 * width  # dW1 (3 per unit) and db1, each sample
    assert not np.isin(c.status, (INCONCLUSIVE, SYSTEMATIC)).any()
    assert not c.systematic
    note = [f.note for f in good.kinks if f.backend == "torch_fn"][0]
    assert "first side" in note and "→ 0−" in note  # torch.relu: H(0) = 0, the left side
    bad = sg.verify(m, at=at, torch_fn=_zero_layer_fn(ThousandAtZero.apply))
    assert bad.verdict == "fail"
    cb = bad.comparisons["torch_fn"]
    assert (cb.status == MISMATCH).sum() == n * 4 * width  # every kink entry, each sample
    f = [f for f in bad.failures if f.backend == "torch_fn"][0]
    assert f.kind == "mismatch" and "outside the subdifferential" in f.note


def test_separable_kinks_are_decided_with_k_plus_one_passes(monkeypatch):
    """32 ReLUs at 0 (2^32 combinations of sides): the base and one change per kink are the
    only vertices evaluated (the two points between the sides, the affine check, are passes of
    their own), not 2^32. The program evaluates each of the 33 vertices once
    (``symgrad.tensor.sides``; the same count as tests/test_tensor_kinks.py on a tensor
    model)."""
    from symgrad.tensor import sides
    calls = []
    real = sides._Row.vertex
    monkeypatch.setattr(sides._Row, "vertex",
                        lambda self, c, **kw: calls.append(c) or real(self, c, **kw))
    r = sg.verify(_zero_layer(32), at=_zero_layer_at(32, n=1), backends=("numpy",))
    assert r.ok
    assert len(calls) == 33


class PatternAtZero(torch.autograd.Function):
    """A ReLU whose derivative at exactly 0 is ``pattern[j]`` for unit j (each a valid side)."""

    @staticmethod
    def forward(ctx, h, pattern):
        ctx.save_for_backward(h, pattern)
        return h.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        h, pattern = ctx.saved_tensors
        return g * torch.where(h > 0, 1.0, torch.where(h == 0, pattern, 0.0)).to(g.dtype), None


def test_interacting_kinks_beyond_enumeration():
    """Two stacked ReLU layers of 4 at 0 and the logit at 0 (|z| in the BCE): 2^9 combinations
    in one group of interacting kinks (h1 h2 products), beyond enumeration: relaxed.
    torch.relu (the all-left side), H(0) = 1 (all-right), H(0) = 1/2, and one convention per
    layer (a class of kinks) lie in the hull of the sides evaluated and pass, with no block
    test firing on them; a backward of 1000 at 0 is outside the proven enclosure and fails;
    a different side per unit (a vertex the fixed choices do not evaluate) is found by the
    search for the sides nearest to the gradient (``symgrad.tensor.nearest``) and passes, that
    side named; a fraction between the sides per unit (0.5, 0, 0, 1: a point of the hull no
    vertex is) lies in the enclosure but not in the hull evaluated: inconclusive, with the
    reason - never ok, never failing."""
    from symgrad.compare import INCONCLUSIVE
    m, at = _zero_layer(4, depth=2), _zero_layer_at(4, depth=2, n=1, seed=1)
    at["c"] = np.zeros((1, 1))  # the logit at 0 too

    def relu1(h):
        return torch.where(h >= 0, h, 0 * h)

    def layers(first, second):
        def fn(W1, b1, W2, b2, V, c, x, y):
            h = second(W2 @ first(W1 @ x.reshape(-1) + b1) + b2)
            z = V @ h + c
            return torch.nn.functional.binary_cross_entropy_with_logits(z.reshape(1),
                                                                      y.reshape(1))
        return fn
    for first, second in ((torch.relu, torch.relu), (relu1, relu1), (torch.relu, relu1),
                          (relu1, torch.relu), (lambda h: (h + h.abs()) / 2,) * 2):
        r = sg.verify(m, at=at, torch_fn=layers(first, second))
        c = r.comparisons["torch_fn"]
        assert r.ok and not (c.status == INCONCLUSIVE).any() and not c.systematic, str(r)
    bad = sg.verify(m, at=at, torch_fn=_zero_layer_fn(ThousandAtZero.apply, depth=2))
    assert not bad.ok and any(f.backend == "torch_fn" for f in bad.failures)
    pattern = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    r = sg.verify(m, at=at, torch_fn=layers(torch.relu,
                                            lambda h: PatternAtZero.apply(h, pattern)))
    c = r.comparisons["torch_fn"]
    assert r.ok and not (c.status == INCONCLUSIVE).any() and not c.systematic, str(r)
    assert "nearest to this backend's gradient" in c.side[0] and "0+" in c.side[0]
    pattern = torch.tensor([0.5, 0.0, 0.0, 1.0], dtype=torch.float64)
    r = sg.verify(m, at=at, torch_fn=layers(torch.relu,
                                            lambda h: PatternAtZero.apply(h, pattern)))
    c = r.comparisons["torch_fn"]
    assert c.ok and (c.status == INCONCLUSIVE).any() and not c.systematic
    assert r.verdict == "inconclusive"
    assert "interact" in c.undecided[0] and "enclosure" in c.undecided[0]


def test_separable_combination_per_key_and_jointly():
    from symgrad.compare import separable_combination
    # base (0, 0, 0); key 0 moves entry 0 by 1; key 1 moves entries 1 and 2 by (1, -1)
    V = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, -1]])
    groups = [[0, 1], [0, 2]]
    tiny = np.full(3, 1e-12)
    assert separable_combination(V, groups, np.array([0.3, 0.5, -0.5]), tiny)
    assert not separable_combination(V, groups, np.array([0.3, 0.5, 0.5]), tiny)
    assert not separable_combination(V, groups, np.array([1.5, 0.0, 0.0]), tiny)
    # two keys on one entry: the sum of their weights (a linear program)
    V2 = np.array([[0.0, 0], [1, 1], [1, -1]])
    assert separable_combination(V2, groups, np.array([2.0, 0.0]), np.full(2, 1e-12))
    assert not separable_combination(V2, groups, np.array([2.0, 1.0]), np.full(2, 1e-12))


@pytest.mark.parametrize("seed", range(6))
def test_feasible_by_rows_answers_as_one_linear_program(seed, monkeypatch):
    """Constraint generation (few rows first, then the violated ones) gives the whole
    system's answer: random sides of a kink against entries with allowances, some systems
    feasible (got a convex combination of the sides), some not (got pushed off the hull in a
    direction no side reaches), with far more rows than the first program takes."""
    monkeypatch.setattr(kinks, "FIRST_ROWS", 16)
    monkeypatch.setattr(kinks, "MORE_ROWS", 8)
    rng = np.random.default_rng(seed)
    m, k = 12, 400
    V = rng.normal(size=(m, k))
    w = rng.dirichlet(np.ones(m))
    got = w @ V
    if seed % 2:  # off the hull: beyond every side along a random direction
        d = rng.normal(size=k)
        got = got + d * (np.max(V @ d) - got @ d + 1.0) / (d @ d)  # 1 past every side
    allow = np.full(k, 1e-3)
    A, b = np.vstack([V.T, -V.T]), np.concatenate([got + allow, allow - got])
    whole = linprog(np.zeros(m), A_ub=A, b_ub=b, A_eq=np.ones((1, m)), b_eq=[1.0],
                    bounds=[(0, None)] * m, method="highs").status == 0
    assert whole == (seed % 2 == 0)
    assert kinks.feasible(A, b, np.ones((1, m)), np.ones(1)) == whole
    assert convex_combination(V, got, allow) == whole
