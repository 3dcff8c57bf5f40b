"""Kinks on the program path (issue 17, item 3; ported from tests/test_kinks.py before the scalar
pipeline is deleted): every plain ``sg.Model`` is verified as its tensor program
(``symgrad.tensor.front.to_program``), whose oracle and comparer carry the kink sides and the
joint subgradient test at ties.

Meant to pass: Max / Min / Abs / clamp / relu / hinge at a kink that only the *rounding* of
``w*x`` reaches (the exact point lies strictly on one side, the float program on the kink), with
torch's own convention - in float64 and float32. Meant to fail: the same code with a wrong
slope, and (1, 1, 1) at a three-way tie of max (each entry in [0, 2], together no convex
combination of the sides).
"""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import FAILING, INCONCLUSIVE, KINK, OK
from symgrad.tensor import sides
from symgrad.tensor.front import to_program
from symgrad.tensor.model import TensorModel
from tests.test_kinks import GivenGrad, _tie_fn  # the three-way tie's torch_fn

w, x = sp.symbols("w x")
ONE = torch.ones(())

# name: (loss, torch code with torch's own convention at the kink, w that puts w*x on it).
# At x = fl(1/3) and w = +-3, w*x rounds to +-1 exactly in both dtypes, while the exact product
# is 1 - 2^-54 (float64: fl64(1/3) < 1/3) or 1 + 2^-25 (float32: fl32(1/3) > 1/3): a kink
# reached by rounding only, from the left in float64 and from the right in float32.
ROUNDED = {
    "hinge": (sp.Max(0, 1 - w * x), lambda w, x: torch.relu(1 - w * x), 3.0),
    "relu": (sp.Max(w * x - 1, 0), lambda w, x: torch.relu(w * x - 1), 3.0),
    "relu H(0)=1": (sp.Max(w * x - 1, 0),
                    lambda w, x: torch.where(w * x - 1 >= 0, w * x - 1, 0 * w), 3.0),
    "max": (sp.Max(w * x, 1), lambda w, x: torch.maximum(w * x, ONE.to(w.dtype)), 3.0),
    "min": (sp.Min(w * x, 1), lambda w, x: torch.minimum(w * x, ONE.to(w.dtype)), 3.0),
    "abs": (sp.Abs(w * x - 1), lambda w, x: torch.abs(w * x - 1), 3.0),
    "clamp at 1": (sp.Min(sp.Max(w * x, -1), 1), lambda w, x: torch.clamp(w * x, -1, 1), 3.0),
    "clamp at -1": (sp.Min(sp.Max(w * x, -1), 1), lambda w, x: torch.clamp(w * x, -1, 1),
                    -3.0),
}


def _rounded(name: str, dtype: str):
    loss, fn, wv = ROUNDED[name]
    third = float(np.float32(1 / 3)) if dtype == "float32" else 1 / 3
    assert float(np.asarray(wv, dtype) * np.asarray(third, dtype)) == np.sign(wv)  # on the kink
    assert sp.Rational(wv) * sp.Rational(third) != np.sign(wv)  # the exact point is not
    m = sg.Model(name.split()[0], loss, params=[w], inputs=[x])
    at = {"w": np.array([wv, 0.5]), "x": np.array([third, 0.5])}  # sample 1: away from it
    return m, at, fn


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(ROUNDED))
def test_a_kink_reached_by_rounding_is_no_false_alarm(name, dtype):
    """torch's side of the kink (relu: H(0) = 0, maximum/minimum: 1/2, abs: 0, clamp: 1) is a
    subgradient of the rounded point: never a failure. Where a side differs from the exact
    derivative, the entry is accepted as a kink (not ok by chance: judged by its sides)."""
    m, at, fn = _rounded(name, dtype)
    r = sg.verify(m, at=at, torch_fn=fn, dtype=dtype)
    assert r.verdict != "fail" and not r.failures, str(r)
    c = r.comparisons["torch_fn"]
    assert np.isin(c.status[0, 1], (OK, KINK)), c.status
    assert (c.status[1] == OK).all()  # away from the kink: plainly right
    if c.got[0, 1] != c.expected[0, 1]:
        assert c.status[0, 1] == KINK and r.kinks
    # an inconclusive entry is only the loss value whose allowance exceeds the value itself
    # (hinge/abs: exact 2^-54 or so, computed 0): never a gradient entry
    assert not (c.status[:, 1] == INCONCLUSIVE).any()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(ROUNDED))
def test_a_wrong_slope_at_a_rounded_kink_is_caught(name, dtype):
    """Meant to fail: the same code with d/dw + 3 (value unchanged) is outside every side."""
    m, at, fn = _rounded(name, dtype)
    r = sg.verify(m, at=at, dtype=dtype,
                  torch_fn=lambda w, x: fn(w, x) + 3 * (w - w.detach()))
    assert r.verdict == "fail"
    c = r.comparisons["torch_fn"]
    assert np.isin(c.status[:, 1], FAILING).all(), c.status  # at the kink and away from it
    assert c.status[1, 0] == OK  # away from the kink the value is plainly right
    # (at the kink the row as a whole is no subgradient: the joint test may name the value too)
    assert "d/dw" in {f.output for f in r.failures if f.backend == "torch_fn"}


# ---------------------------------------------------------------- a three-way tie of max


W123 = sp.symbols("w1 w2 w3")
TIE = {"w1": np.array([1.0]), "w2": np.array([1.0]), "w3": np.array([1.0])}


@pytest.mark.parametrize("program", [False, True], ids=["sg.Model", "to_program"])
@pytest.mark.parametrize("weights, jointly", [((1.0, 1.0, 1.0), True), ((0.5, 0.5, 0.5), True),
                                              ((1.0, -0.5, 0.5), False)])
def test_no_subgradient_at_a_three_way_tie_is_caught(weights, jointly, program):
    """2 Max(w1, w2, w3) at w = (1, 1, 1): the sides are 2 e_i. (1, 1, 1) x 2 has each entry in
    [0, 2] but is no convex combination (sum 6, not 2): caught by the joint test, as is
    sympy's H(0) = 1/2 per argument; a negative entry fails entry by entry. The same through
    the plain model and through its program handed over explicitly."""
    model = sg.Model("max3", 2 * sp.Max(*W123), params=list(W123))
    m = to_program(model) if program else model
    assert isinstance(to_program(model), TensorModel)
    r = sg.verify(m, at=TIE, torch_fn=_tie_fn(weights))
    assert r.verdict == "fail"
    assert r.comparisons["numpy"].ok and r.comparisons["torch"].ok  # symgrad's own rows
    assert {f.backend for f in r.failures} == {"torch_fn"}
    assert ("convex combination" in r.failures[0].message()) == jointly


@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0),
                                     (0.0, 0.25, 0.75)])
def test_a_subgradient_at_a_three_way_tie_passes(weights):
    model = sg.Model("max3", 2 * sp.Max(*W123), params=list(W123))
    r = sg.verify(to_program(model), at=TIE, torch_fn=_tie_fn(weights))
    assert r.ok and r.verdict == "pass", str(r)
    assert (r.comparisons["torch_fn"].status == KINK).any()


# ---------------------------------------------------------------- max ties feeding relus
def _max_relu(n: int = 8):
    a, b, c, v = (sp.symbols(f"{s}0:{n}") for s in "abcv")
    loss = sum(sp.Max(sp.Max(a[i], b[i], c[i]), 0) * v[i] for i in range(n))
    m = sg.Model("max_relu", loss, params=[*a, *b, *c], inputs=list(v))
    at = {f"{s}{i}": np.array([0.0]) for s in "abc" for i in range(n)}
    at.update({f"v{i}": np.array([float(i + 1)]) for i in range(n)})
    return m, at


def _windows(maximum):
    def fn(**kw):
        return sum(torch.where(h >= 0, h, 0 * h) * kw[f"v{i}"] for i in range(8)
                   for h in [maximum(kw[f"a{i}"], kw[f"b{i}"], kw[f"c{i}"])])
    return fn


class AllTied(torch.autograd.Function):
    """max of three whose backward hands the whole gradient to every tied argument."""

    @staticmethod
    def forward(ctx, a, b, c):
        return torch.maximum(torch.maximum(a, b), c)

    @staticmethod
    def backward(ctx, g):
        return g, g, g


@pytest.mark.parametrize("maximum, ok", [
    (lambda a, b, c: torch.maximum(torch.maximum(a, b), c), True),  # 1/4, 1/4, 1/2
    (AllTied.apply, False)], ids=["torch.maximum", "all-tied"])
def test_max_ties_feeding_relus_are_separable_windows(monkeypatch, maximum, ok):
    """8 windows relu(max(a, b, c)) * v at a 4-way tie with relu's 0: 4^8 combinations of
    sides. The program's sides (``symgrad.tensor.sides``) split them into the 8 separable
    windows and evaluate far fewer vertices than 4^8 (the scalar oracle's "separable, 8
    groups"), and decide exactly: torch.maximum passes, every tied argument getting the whole
    gradient fails as no convex combination."""
    calls = []
    real = sides._Row.vertex
    monkeypatch.setattr(sides._Row, "vertex",
                        lambda self, c, **kw: calls.append(c) or real(self, c, **kw))
    m, at = _max_relu()
    r = sg.verify(m, at=at, torch_fn=_windows(maximum))
    assert r.ok == ok, str(r)
    c = r.comparisons["torch_fn"]
    assert not (c.status == INCONCLUSIVE).any() and not c.systematic  # decided exactly
    assert 0 < len(calls) < 4**8 // 16
    if not ok:
        f = [f for f in r.failures if f.backend == "torch_fn"][0]
        assert "convex combination" in f.note
