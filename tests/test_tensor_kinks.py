"""Kinks in tensor programs (``symgrad.tensor.kinks`` / ``sides``): correct torch code at a kink
- exactly, or reached by rounding in float32 and float64 - passes whatever side it takes; a
gradient outside every subgradient ((1, 1, 1) at a three-way max tie, relu'(0) = 2) fails, and
a x(1 + 1e-10) gradient away from the kinks still fails."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.precise import DD, DD_OPS
from symgrad.tensor import interpret, sides
from symgrad.tensor.interpret import identical
from symgrad.tensor.kinks import reached
from symgrad.tensor.links import distinct, sources
from symgrad.tensor.nearest import misfit, nearest
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward

X = st.X
DTYPES = ("float64", "float32")
TORCH = {"float64": torch.float64, "float32": torch.float32}


def _layer(body):
    W, x, b = st.param("W", (4, 3)), st.input("x", (3,)), st.param("b", (4,))
    return TensorModel("layer", st.sum_(st.map_(body, st.einsum("ij,j->i", W, x) + b)))


def _at(W, b, x=(1.0, 1.0, 1.0)):
    return {"W": np.asarray(W, float)[None], "b": np.asarray(b, float)[None],
            "x": np.asarray(x, float)[None]}


AT_ZERO = _at(np.zeros((4, 3)), np.zeros(4))
LAYERS = {  # name: (body, torch's own op, a point with every unit exactly at its kink)
    "relu": (sp.Max(0, X[0]), torch.relu, AT_ZERO),
    "abs": (sp.Abs(X[0]), torch.abs, AT_ZERO),
    "clamp": (sp.Min(sp.Max(X[0], -1), 1), lambda h: torch.clamp(h, -1, 1),
              _at(np.zeros((4, 3)), [1.0, -1.0, 1.0, -1.0])),
    "hinge": (sp.Max(0, 1 - X[0]), lambda h: torch.clamp(1 - h, min=0),
              _at(np.zeros((4, 3)), np.ones(4))),
}


def _torch_fn(op):
    def fn(W, x, b):
        return op(W @ x + b).sum()
    return fn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_correct_torch_at_an_exact_kink_passes(name, dtype):
    body, op, at = LAYERS[name]
    r = sg.verify(_layer(body), torch_fn=_torch_fn(op), at=at, dtype=dtype)
    assert r.verdict == "pass", r
    assert np.isfinite(r.comparisons["torch_fn"].kink_position).any()  # judged by its sides


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_kink_reached_by_rounding_passes(dtype):
    """1 - w*x with w*x = 1 - 2^-2p exactly, which rounds to 1: torch's relu sees 0 and takes
    H(0) = 0, the exact derivative is the active side's -x. Without reach: a false alarm."""
    p = 23 if dtype == "float32" else 52
    w, x = st.param("w", (1,)), st.input("x", (1,))
    m = TensorModel("hinge", st.sum_(st.map_(sp.Max(0, 1 - X[0] * X[1]) + X[0], w, x)))
    at = {"w": np.array([[1 + 2.0**-p]]), "x": np.array([[1 - 2.0**-p]])}
    r = sg.verify(m, torch_fn=lambda w, x: (torch.relu(1 - w * x) + w).sum(), at=at,
                  dtype=dtype)  # + w: a value the dtype resolves (2^-2p alone it cannot)
    assert r.verdict == "pass", r
    assert (r.comparisons["torch_fn"].status == sg.compare.KINK).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_relu_argument_that_cancels_to_zero_by_rounding_passes(dtype):
    tiny = 2.0**-25 if dtype == "float32" else 2.0**-54  # 1 + tiny rounds to 1
    W = np.array([[1.0, tiny, -1.0]] * 4)
    r = sg.verify(_layer(sp.Max(0, X[0])), torch_fn=_torch_fn(torch.relu),
                  at=_at(W, [0.0, 0.0, 1.0, 1.0]), dtype=dtype)  # 1, 1: a value to resolve
    assert r.verdict == "pass", r
    assert (r.comparisons["torch_fn"].status[0, 1:] == sg.compare.KINK).sum() == 8


def _max_model():
    P, x = st.param("P", (2, 3)), st.input("x", (3,))
    return TensorModel("rowmax", st.sum_(st.max_(st.map_(X[0] * X[1], P, x), 1)))


AT_TIE = {"P": np.ones((1, 2, 3)), "x": np.ones((1, 3))}  # every row a three-way tie


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [lambda P, x: torch.amax(P * x, 1).sum(),
                                lambda P, x: torch.max(P * x, 1).values.sum()],
                         ids=["amax", "max-values"])
def test_max_reduction_at_a_three_way_tie_passes(fn, dtype):
    r = sg.verify(_max_model(), torch_fn=fn, at=AT_TIE, dtype=dtype)
    assert r.verdict == "pass", r


def _all_tied(P, x):
    """The max's value with every tied entry's gradient 1: (1, 1, 1), no subgradient."""
    y = P * x
    m = y.amax(1, keepdim=True).detach()
    return (((y - m) * (y == m)).sum(1) + m[:, 0]).sum()


def test_max_reduction_summing_every_tied_gradient_fails():
    r = sg.verify(_max_model(), torch_fn=_all_tied, at=AT_TIE)
    assert r.verdict == "fail", r
    c = r.comparisons["torch_fn"]
    assert c.not_subgradient.any()  # each entry lies in [0, 1]: the joint test catches it


def test_three_way_max_map_summing_every_tied_gradient_fails():
    a, b, c = st.param("a", (2,)), st.param("b", (2,)), st.param("c", (2,))
    m = TensorModel("max3", st.sum_(st.map_(sp.Max(X[0], X[1], X[2]), a, b, c)))
    at = {k: np.full((1, 2), 0.5) for k in "abc"}

    def summed(a, b, c):
        top = torch.maximum(a, torch.maximum(b, c)).detach()
        return sum((v - top) * (v == top) for v in (a, b, c)).sum() + top.sum()

    def fair(a, b, c):
        return torch.maximum(a, torch.maximum(b, c)).sum()
    assert sg.verify(m, torch_fn=fair, at=at).verdict == "pass"
    bad = sg.verify(m, torch_fn=summed, at=at)
    assert bad.verdict == "fail", bad


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_derivative_two_at_an_exact_kink_fails(dtype):
    def relu2(W, x, b):
        z = W @ x + b
        return (torch.relu(z) + 2 * (z - z.detach()) * (z == 0)).sum()
    r = sg.verify(_layer(sp.Max(0, X[0])), torch_fn=relu2, at=AT_ZERO, dtype=dtype)
    assert r.verdict == "fail", r


def test_a_scaled_gradient_away_from_the_kinks_still_fails():
    """Two units exactly at 0 (any side passes), two away: W's gradient x(1 + 1e-10)."""
    rng = np.random.default_rng(1)
    W = np.vstack([np.zeros((2, 3)), rng.normal(size=(2, 3))])
    at = _at(W, [0.0, 0.0, 3.0, 3.0], x=[0.5, 1.5, -0.25])

    def scaled(W, x, b):
        return torch.relu(scale_backward(W, 1 + 1e-10) @ x + b).sum()
    r = sg.verify(_layer(sp.Max(0, X[0])), torch_fn=scaled, at=at)
    assert r.verdict == "fail", r
    c = r.comparisons["torch_fn"]
    assert np.isfinite(c.kink_position[0, 1:7]).all()  # units 0, 1: judged by their sides
    assert c.status[0, 7:13].tolist() == [sg.compare.MISMATCH] * 6  # units 2, 3: x(1 + 1e-10)


def test_a_smooth_model_does_no_kink_work():
    W, x = st.param("W", (2, 3)), st.input("x", (3,))
    m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
    assert "kinks_s" not in sg.verify(m, samples=3).timings
    relu = _layer(sp.Max(0, X[0]))
    r = sg.verify(relu, samples=3)  # random draws: no unit within rounding of 0
    assert r.ok and "kinks_s" in r.timings
    assert not np.isfinite(r.comparisons["torch"].kink_position).any()


def _wide(units: int, layers: int = 1):
    W, x = st.param("W", (units, 3)), st.input("x", (3,))
    h = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", W, x))
    for k in range(1, layers):
        V = st.param(f"V{k}", (units, units))
        h = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", V, h))
    return TensorModel("wide", st.sum_(h) + st.sum_(st.map_(X[0] * X[0], W)))


def test_thirty_two_relus_at_zero_are_separable_and_decided_exactly():
    """2^32 combinations of sides: the base, each single change and the interaction check
    (separable: the Minkowski sum, an exact linear program): torch.relu passes, a backward of
    1000 at 0 fails."""
    at = {"W": np.zeros((1, 32, 3)), "x": np.ones((1, 3))}

    def relu(W, x):
        return torch.relu(W @ x).sum() + (W * W).sum()

    def relu1000(W, x):
        z = W @ x
        return (torch.relu(z) + 1000 * (z - z.detach()) * (z == 0)).sum() + (W * W).sum()
    good = sg.verify(_wide(32), torch_fn=relu, at=at)
    assert good.verdict == "pass", good
    bad = sg.verify(_wide(32), torch_fn=relu1000, at=at)
    assert bad.verdict == "fail", bad


def _at_zero(slope, extra=0.0):
    """Two ReLU layers (W x, then V1 h) whose backward at exactly 0 takes ``slope`` (0: torch's
    relu), plus ``extra`` on unit 0 of the first layer (another side at its kink)."""
    def fn(W, V1, x):
        z = W @ x
        h = torch.relu(z) + slope * (z - z.detach()) * (z == 0)
        u = V1 @ h
        return ((torch.relu(u) + slope * (u - u.detach()) * (u == 0)).sum() + (W * W).sum()
                + extra * (z[0] - z[0].detach()))
    return fn


def test_stacked_relu_layers_at_zero_are_judged_by_hull_and_enclosure():
    """Two ReLU layers at 0: the kinks interact (every unit of one layer with every unit of the
    next). torch.relu (every unit on its first side) is in the evaluated hull: pass; a backward
    of 1000 at 0 is outside the ball enclosure of every subgradient: fail; unit 0 alone on its
    right side with two units of the next layer (a real subgradient, W[0]'s gradient 2, the
    others 0) lies in the enclosure but not in the hull of the sides evaluated: inconclusive,
    with the reason."""
    at = {"W": np.zeros((1, 8, 3)), "V1": np.ones((1, 8, 8)), "x": np.ones((1, 3))}

    m = _wide(8, 2)
    r = sg.verify(m, torch_fn=_at_zero(0.0), at=at)
    assert r.verdict == "pass", r
    assert sg.verify(m, torch_fn=_at_zero(1000.0), at=at).verdict == "fail"
    one = sg.verify(m, torch_fn=_at_zero(0.0, 2.0), at=at)
    c = one.comparisons["torch_fn"]
    assert one.verdict == "inconclusive" and "interact" in c.undecided[0], one


def test_sides_over_their_memory_budget_take_the_base_and_the_search(monkeypatch):
    """A sample whose sides' rows would take more than ``MAX_SIDE_BYTES`` (a wide train-mode
    network: every ReLU at 0 moves every entry; ResNet-18-shaped at width 16 grew to 20 GB)
    keeps one row at a time (``sides._lean``): the base, the proven enclosure and the search
    for the sides nearest to got. Two ReLU layers at 0 as in the test above: torch.relu (the
    base) passes, a backward of 1000 at 0 is outside the enclosure and fails, and a
    subgradient the single-change search does not reach is inconclusive with the reason
    naming the memory - never ok."""
    monkeypatch.setattr(sides, "MAX_SIDE_BYTES", 1024)
    at = {"W": np.zeros((1, 8, 3)), "V1": np.ones((1, 8, 8)), "x": np.ones((1, 3))}

    m = _wide(8, 2)
    assert sg.verify(m, torch_fn=_at_zero(0.0), at=at).verdict == "pass"
    assert sg.verify(m, torch_fn=_at_zero(1000.0), at=at).verdict == "fail"
    r = sg.verify(m, torch_fn=_at_zero(0.0, 2.0), at=at)
    c = r.comparisons["torch_fn"]
    assert r.verdict == "inconclusive" and "GiB" in c.undecided[0], r


def _branchy():
    """2 log(w) for w > 1, else w - 1: a kink at w = 1 (sides 2 and 1); its untaken branch
    log(w) is undefined at w <= 0, where the model is defined."""
    w = st.param("w", (5,))
    body = sp.Piecewise((2 * sp.log(X[0]), X[0] > 1), (X[0] - 1, True))
    return TensorModel("branchy", st.sum_(st.map_(body, w)))


def _branchy_fn(w, factor=1.0):
    w = scale_backward(w, factor) if factor != 1.0 else w
    return torch.where(w > 1, 2 * torch.log(torch.where(w > 1, w, 1.0)), w - 1).sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_untaken_piecewise_branch_undefined_there_is_never_evaluated(dtype):
    """At w = -2 and 0 the sided program's mix S0 * 2 log(w) + S1 (w - 1) was 0 * NaN = NaN:
    'domain' findings where the model is defined. At the kink w = 1 torch's side passes; a
    x(1 + 1e-6) backward still fails."""
    at = {"w": np.array([[-2.0, 0.0, 0.5, 1.0, 3.0]])}
    r = sg.verify(_branchy(), torch_fn=_branchy_fn, at=at, dtype=dtype)
    assert r.verdict == "pass", [(f.output, f.kind, f.note) for f in r.failures]
    bad = sg.verify(_branchy(), torch_fn=lambda w: _branchy_fn(w, 1 + 1e-6), at=at,
                    dtype=dtype)
    assert bad.verdict == "fail"
    assert {f.kind for f in bad.failures} - {"mismatch", "systematic"} == set()


# ------------------------------------------------ kinks of smooth compositions (linked atoms)
def _bce_body(z, y):
    """The stable BCE with logits: Max and Abs of z, smooth at z = 0."""
    soft = sp.log(1 + sp.exp(-sp.Abs(z)))
    return y * (soft + sp.Max(0, -z)) + (1 - y) * (soft + sp.Max(0, z))


def _logits(split: bool):
    """The stable BCE of four logits z (a parameter, so that z = 0 exactly): in one map body,
    or (split) its log(1 + e^-|z|) and its Max in two maps reading the same z (linked across
    nodes)."""
    z, y = st.param("z", (4,)), st.input("y", (4,))
    if not split:
        return TensorModel("bce", st.sum_(st.map_(_bce_body(X[0], X[1]), z, y)))
    soft = st.map_(sp.log(1 + sp.exp(-sp.Abs(X[0]))), z)
    hinge = st.map_(X[1] * sp.Max(0, -X[0]) + (1 - X[1]) * sp.Max(0, X[0]), z, y)
    return TensorModel("bce_split", st.sum_(soft + hinge))


def _bce_fn(factor: float = 1.0):
    def fn(z, y):  # z[0]'s gradient x factor (value unchanged)
        z = torch.cat([z[:1] * factor - (z[:1] * (factor - 1)).detach(), z[1:]])
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
    return fn


BCE_AT_ZERO = {"z": np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, -1.0]]),
               "y": np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])}


@pytest.mark.parametrize("split", [False, True], ids=["one-map", "two-maps"])
def test_a_smooth_composition_of_kinked_atoms_has_no_kink(split):
    """At z = 0 exactly the Max and Abs atoms are one kink (argument z up to sign): their
    consistent sides agree (sigmoid(0) - y), so correct code passes and a x1.5 backward at the
    kink fails as a plain mismatch (independent sides accepted it inside their hull)."""
    m = _logits(split)
    good = sg.verify(m, torch_fn=_bce_fn(), at=BCE_AT_ZERO)
    assert good.verdict == "pass", good
    bad = sg.verify(m, torch_fn=_bce_fn(1.5), at=BCE_AT_ZERO)
    assert bad.verdict == "fail", bad
    c = bad.comparisons["torch_fn"]
    assert (c.status[:, 1] == sg.compare.MISMATCH).all()  # z[0], both samples
    assert not (c.status == sg.compare.KINK).any()


def _two_conditions():
    """2w for w > 0, 3w for w >= 0, else w: the two conditions are one kink (key w), so the
    sides at w = 0 are 2 and 1; the middle branch holds at w = 0 alone (no side)."""
    w = st.param("w", (2,))
    body = sp.Piecewise((2 * X[0], X[0] > 0), (3 * X[0], X[0] >= 0), (X[0], True))
    return TensorModel("two_conditions", st.sum_(st.map_(body, w)))


@pytest.mark.parametrize("fn, verdict", [
    (lambda w: torch.where(w > 0, 2 * w, w).sum(), "pass"),  # slope 1 at 0: the left side
    (lambda w: torch.where(w >= 0, 2 * w, w).sum(), "pass"),  # slope 2: the right side
    (lambda w: torch.where(w > 0, 2 * w, torch.where(w >= 0, 3 * w, w)).sum(), "fail")],
    ids=["left", "right", "literal-middle-branch"])
def test_piecewise_conditions_of_one_key_take_one_side(fn, verdict):
    """Taken independently the conditions had the middle branch's slope 3 as a side (w > 0
    false with w >= 0 true): the literal torch transcription passed with a derivative that is
    no subgradient of the function (its one-sided derivatives are 2 and 1)."""
    r = sg.verify(_two_conditions(), torch_fn=fn, at={"w": np.zeros((1, 2))},
                  backends=("torch_fn",))
    assert r.verdict == verdict, r


def test_separable_kinks_are_decided_with_k_plus_one_vertices(monkeypatch):
    """32 ReLUs at 0 (2^32 combinations): the base and one change per kink are the only
    vertices evaluated (the two points between the sides are passes of their own), as on the
    scalar side (tests/test_kinks.py counts its passes)."""
    calls = []
    real = sides._Row.vertex
    monkeypatch.setattr(sides._Row, "vertex",
                        lambda self, c, remember=False: calls.append(c) or real(self, c, remember))
    at = {"W": np.zeros((1, 32, 3)), "x": np.ones((1, 3))}
    assert sg.verify(_wide(32), at=at, backends=("numpy",)).verdict == "pass"
    assert len(calls) == 33


def test_the_sides_reuse_unchanged_values_bitwise(monkeypatch):
    """Stacked ReLU layers at 0 plus a max-reduction tie (the relaxed path: first- and
    last-side bases, single changes, random combinations, fractional passes): every side's
    gradient row is bitwise the one of a pass that computes every node again, and the
    passes after the remembered ones recompute only part of the program."""
    W, V1, x = st.param("W", (6, 3)), st.param("V1", (6, 6)), st.input("x", (3,))
    h = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", W, x))
    u = st.map_(sp.Max(0, X[0]), st.einsum("ij,j->i", V1, h))
    m = TensorModel("stack", st.sum_(u) + st.max_(h, axes=(0,)) + st.sum_(st.map_(X[0] ** 2, W)))
    at = {"W": np.zeros((1, 6, 3)), "V1": np.ones((1, 6, 6)), "x": np.ones((1, 3))}
    keys = reached(m, at, DD_OPS, ("float64",), sg.Tolerance())
    assert len(keys.rows[0]) > 6  # beyond enumeration: the relaxed path
    computed = []
    real = interpret.RULES["map"]
    monkeypatch.setitem(interpret.RULES, "map", lambda *a: computed.append(1) or real(*a))

    def sides_with(limit):
        monkeypatch.setattr(sides, "REUSE_UP_TO", limit)
        monkeypatch.setattr(sides, "STACK_ENTRIES", 0)  # one pass per side (stacked: fewer)
        computed.clear()
        hi, lo = np.zeros((1, 1 + 18 + 36)), np.zeros((1, 1 + 18 + 36))
        ks, _, _ = sides.kink_sides(m, at, keys, DD_OPS, hi, lo)
        return ks.vertices[0], len(computed)
    default = sides.REUSE_UP_TO
    plain, every = sides_with(0)
    reused, fewer = sides_with(default)
    assert plain.shape == reused.shape and plain.shape[0] > 2 ** 6 // 4
    assert np.array_equal(plain.view(np.uint64), reused.view(np.uint64))
    assert fewer < every / 2, (fewer, every)


def test_identical_is_bitwise():
    """Signed zeros, NaN payloads and double-double parts are told apart."""
    a = np.array([0.0, 1.0, np.nan])
    assert identical(a, a.copy()) and not identical(a, np.array([-0.0, 1.0, np.nan]))
    assert not identical(a, a.astype(np.float32)) and not identical(a, a[:2])
    assert identical(DD(a, np.ones(3)), DD(a.copy(), np.ones(3)))
    assert not identical(DD(a, np.ones(3)), DD(a, np.full(3, 1 + 2.0**-52)))
    assert not identical(DD(a), DD(a, np.zeros(3)))  # zero view against a zero array
    assert not identical(a, [0.0, 1.0, np.nan])
    big = np.arange(1000.0).reshape(10, 100)
    for at in ((0, 0), (3, 37), (9, 99)):  # probed or not, one entry apart is apart
        other = big.copy()
        other[at] = -other[at] - 1.0
        assert not identical(big, other) and not identical(big.T, other.T)
    assert identical(big.T, big.copy().T) and identical(np.broadcast_to(a[:1], (100,)),
                                                        np.zeros(100))


def test_nearest_search_finds_the_vertex_and_keeps_its_budget():
    """``tensor.nearest``: over 12 interacting kinks (each kink moves its own entries, and one
    entry is the product of all sides: 4096 combinations) the search walks from the
    all-first-side start to the one vertex that fits ``got``, one kink at a time; it never
    takes more passes than its budget, and a ``got`` no vertex fits ends at the best fit found
    with its misfit still positive."""
    rng = np.random.default_rng(5)
    own = rng.standard_normal((12, 3))

    def run(combo):
        s = np.array(combo, float)
        return np.concatenate([(own * s[:, None]).ravel(), [np.prod(s + 1)]])
    want = tuple(int(b) for b in rng.integers(0, 2, 12))
    got, allow = run(want), np.full(37, 1e-12)
    start = (0,) * 12
    combo, v, taken = nearest(run, [(0, 1)] * 12, range(12), [(start, run(start))], got, allow)
    assert combo == want and misfit(v, got, allow)[0] == 0 and taken <= 12 * 12
    far = got + 0.5  # no vertex: the search stops, never claims a fit
    combo, v, taken = nearest(run, [(0, 1)] * 12, range(12), [(start, run(start))], far, allow,
                              passes=7)
    assert taken == 7 and misfit(v, far, allow)[0] > 0
    with pytest.raises(ValueError, match="starts is empty"):
        nearest(run, [(0, 1)] * 12, range(12), [], got, allow)


class _PoolCornerTwice(torch.autograd.Function):
    """max_pool2d(x, 3, 2, 1) whose backward doubles the corner entry's gradient (the bug)."""

    @staticmethod
    def forward(ctx, x):
        y, idx = torch.nn.functional.max_pool2d(x, 3, 2, 1, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        idx, = ctx.saved_tensors
        gx = torch.zeros(ctx.shape, dtype=g.dtype).flatten(2)
        gx = gx.scatter_add(2, idx.flatten(2), g.flatten(2)).reshape(ctx.shape)
        gx[..., 0, 0] *= 2
        return gx


def test_max_pool_edge_windows_hold_no_copies_and_a_corner_bug_is_proven():
    """A captured max-pool's windows hold their entries inside the input only, grouped by
    how many (``capture.conv.grouped_max``; capture22): until then the padding was an edge
    entry's copy, the corner window held x[0, 0] four times, and a tie between copies of one
    value made the rigorous enclosure of its max unbounded (``rigorous/max_top``): the
    backward doubling the corner entry's gradient read inconclusive. No window holds an
    entry twice now (``links.sources``), no tie is reached, the correct backward passes and
    the planted one is proven wrong at the corner."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 1, 5, 5, generator=g, dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 0, 0, 3] = 9.0, 8.0  # the corner and a top-edge entry win
    w = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3) / 4  # exact weights
    c = sg.capture(lambda x: (torch.nn.functional.max_pool2d(x, 3, 2, 1) * w).sum(),
                   (x.clone().requires_grad_(),))
    s = sides.sided(c.model)
    sites = [t for t in s.sites if t.selector is not None]
    assert len(sites) == 4  # window lengths (2 or 3) x (2 or 3)
    for site in sites:
        src = sources(site.node.args[0]).reshape(-1)[site.index]  # (windows, L) -> x's entry
        assert all(len(set(row.tolist())) == len(row) for row in src)
    corner = [sources(t.node.args[0]).reshape(-1)[t.index][0].tolist() for t in sites]
    assert [0, 1, 5, 6] in corner  # the corner window: x[0, 0], x[0, 1], x[1, 0], x[1, 1]
    at = c.at(1)
    keys = reached(c.model, at, DD_OPS, ["float64"], sg.VerifyConfig().tolerance)
    assert distinct(s, keys.rows[0], {}) == []
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=at, backends=("torch_fn",))
    assert r.ok, r
    bad = sg.verify(c.model, torch_fn=lambda x: (_PoolCornerTwice.apply(x) * w).sum(), at=at,
                    backends=("torch_fn",))
    assert bad.verdict == "fail" and any(f.output == "d/dx[0,0,0,0]" for f in bad.failures)
