"""Hessian-vector products at a tie where the function is smooth (logaddexp's x = y written as
max(x, y) + log1p(e^-|x - y|)): the exact H v is the true one, torch's correct double backward
passes, a planted second-derivative bug there is caught, and real kinks (relu, abs at 0) keep
the kink rules' outcome (``symgrad.tensor.ties``; the op catalogue's logaddexp2 row)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from sympy.codegen.cfunctions import log1p

import symgrad as sg
from symgrad.compare.entries import KINK, OK
from symgrad.hvp import second_order
from symgrad.hvp_mutants import detached_backward, scaled_second
from symgrad.opcatalog.build import second_order as catalogue_hvp
from symgrad.opcatalog.table import by_name
from symgrad.tensor.front import to_program
from symgrad.tensor.ties import linear_ties

x, y, r = sp.symbols("x y r", real=True)
LN2 = sp.log(2)
# the catalogue's stable definitions (symgrad.opcatalog.table) and their textbook forms
STABLE = {"logaddexp": sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y))),
          "logaddexp2": sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y) * LN2)) / LN2}
TEXTBOOK = {"logaddexp": sp.log(sp.exp(x) + sp.exp(y)),
            "logaddexp2": sp.log(2**x + 2**y) / LN2}
TORCH = {"logaddexp": torch.logaddexp, "logaddexp2": torch.logaddexp2}
# the op catalogue's reproducer (reports/ops.md, logaddexp2 float64) and two more ties
POINTS = [(0.5, -1.1940625169115267, 1.4543932040057097, 1.4158569878037066),
          (-3.0, 0.75, -0.5, 1.25), (2.0, -1.5, 1.0, 0.125)]


def _model(name: str) -> sg.Model:
    return sg.Model(name, r * STABLE[name], params=[x, y], inputs=[r])


def _textbook_hv(name: str, t: float, rv: float, vx: float, vy: float) -> list:
    """H v of r * textbook at x = y = t by sympy's Hessian, in mpmath at 50 digits."""
    f = r * TEXTBOOK[name]
    H = sp.hessian(f, (x, y))
    with mpmath.workdps(50):
        at = {x: mpmath.mpf(t), y: mpmath.mpf(t), r: mpmath.mpf(rv)}
        h = [[mpmath.mpf(sp.N(H[i, j].subs(at), 50)) for j in range(2)] for i in range(2)]
        return [h[i][0] * mpmath.mpf(vx) + h[i][1] * mpmath.mpf(vy) for i in range(2)]


@pytest.mark.parametrize("name", ["logaddexp", "logaddexp2"])
def test_exact_hvp_at_the_tie_is_the_textbook_one(name):
    """symgrad's exact H v of the stable form (max + log1p(e^-|x - y|)) at x = y, to 30
    digits, is sympy's H v of log(e^x + e^y) (log2(2^x + 2^y)): ln2/4 r (v_x - v_y) for
    logaddexp2, not 0 (sign(x - y)**2 at the tie was 0)."""
    h, _ = second_order(to_program(_model(name)))
    for t, rv, vx, vy in POINTS:
        got = sg.exact_at(h, {"x": t, "y": t, "r": rv, "v_x": vx, "v_y": vy}, dps=40)
        want = _textbook_hv(name, t, rv, vx, vy)
        for k, w in zip(("d/dx", "d/dy"), want):
            assert abs(got[k] - w) <= mpmath.mpf("1e-30") * abs(w), (name, t, k, got[k], w)
    if name == "logaddexp2":  # the catalogue's numbers: -0.007974 = r ln2/4 (v_x - v_y)
        t, rv, vx, vy = POINTS[0]
        got = sg.exact_at(h, {"x": t, "y": t, "r": rv, "v_x": vx, "v_y": vy}, dps=40)
        assert float(got["d/dx"]) == pytest.approx(rv * np.log(2) / 4 * (vx - vy), rel=1e-13)
        assert float(got["d/dx"]) == pytest.approx(-0.007973731455065025, rel=1e-13)


@pytest.mark.parametrize("name", ["logaddexp", "logaddexp2"])
def test_catalogue_hvp_at_the_tie_passes_with_the_textbook_value(name):
    """The op catalogue's own H v model (sympy.diff of the row, ``opcatalog.build``) verified
    at x = y against torch's double backward: every entry ok (no kink, no finding), the
    oracle's value the textbook H v."""
    built = catalogue_hvp(by_name(name))
    t, rv, vx, vy = POINTS[0]
    at = {"x": np.array([t, -3.0]), "y": np.array([t, -3.0]), "readout": np.array([rv, 0.75]),
          "v_x": np.array([vx, -0.5]), "v_y": np.array([vy, 1.25])}
    res = sg.verify(built.model, torch_fn=built.torch_fn, at=at)
    assert res.ok, res
    comp = res.comparisons["torch_fn"]
    assert (comp.status == OK).all(), comp.status
    want = _textbook_hv(name, t, rv, vx, vy)
    assert comp.expected[0, 1:].tolist() == pytest.approx([float(w) for w in want],
                                                          rel=1e-15)
    # exact_at of the same model (its stable rewrite splits the sign of x - y and its square
    # over two steps: the plain program gave twice the true value) takes the oracle's side
    got = sg.exact_at(built.model, {"x": t, "y": t, "readout": rv, "v_x": vx, "v_y": vy},
                      dps=40)
    for k, w in zip(("d/dx", "d/dy"), want):
        assert abs(got[k] - w) <= mpmath.mpf("1e-30") * abs(w), (name, k, got[k], w)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["logaddexp", "logaddexp2"])
def test_torch_double_backward_at_the_tie_passes(name, dtype):
    """torch.logaddexp(2)'s double backward is right at x = y: sg.verify(order=2) passes it,
    every H v entry ok (not a false alarm, not a kink excuse)."""
    fn = TORCH[name]
    at = {k: np.array([p[i] for p in POINTS]) for i, k in enumerate(("x", "r", "v_x", "v_y"))}
    at["y"] = at["x"].copy()
    res = sg.verify(_model(name), torch_fn=lambda x, y, r: r * fn(x, y), order=2, at=at,
                    dtype=dtype)
    assert res.ok, res
    assert (res.comparisons["torch_fn"].status == OK).all()


def _planted(name: str, make):
    """r * (y + f(x - y)), f(t) = logaddexp(t, 0) through a planted custom Function."""
    fn = TORCH[name]
    f = make(lambda t: fn(t, torch.zeros_like(t)))
    return lambda x, y, r: r * (y + f(x - y))


@pytest.mark.parametrize("name", ["logaddexp", "logaddexp2"])
def test_planted_second_derivative_bug_at_the_tie_is_caught(name):
    """At x = y only: a backward whose f' is detached (the curvature dropped) and one whose
    second derivative is x (1 + 1e-9) fail; the same construction unplanted passes."""
    t, rv, vx, vy = POINTS[0]
    at = {"x": np.array([t]), "y": np.array([t]), "r": np.array([rv]),
          "v_x": np.array([vx]), "v_y": np.array([vy])}
    model = _model(name)
    fine = sg.verify(model, torch_fn=_planted(name, lambda f: scaled_second(f, 1.0)),
                     order=2, at=at)
    assert fine.ok, fine
    for make in (detached_backward, lambda f: scaled_second(f, 1 + 1e-9)):
        res = sg.verify(model, torch_fn=_planted(name, make), order=2, at=at)
        assert res.verdict == "fail", res
        assert {f.output for f in res.failures} >= {"Hv:x", "Hv:y"}


def test_real_kinks_keep_their_outcome():
    """relu and abs at 0 are not smooth: H v there stays the kink rules' (relu: a kink
    accepted, abs: H = 0 on both sides), and x|x| (f'' = 2 sign x: sides -2 and 2) stays a
    kink, not a smooth point."""
    w, u = sp.symbols("w u", real=True)
    at = {"w": np.array([0.0, 0.7]), "u": np.array([1.3, -0.4]), "v_w": np.array([1.1, 0.9])}
    cases = [(sp.Max(w, 0) * u, lambda w, u: torch.relu(w) * u, [[KINK, OK], [OK, OK]]),
             (sp.Abs(w) * u, lambda w, u: torch.abs(w) * u, [[OK, OK], [OK, OK]]),
             (w * sp.Abs(w) * u, lambda w, u: w * torch.abs(w) * u, [[OK, KINK], [OK, OK]])]
    for f, fn, status in cases:
        res = sg.verify(sg.Model("k", f, params=[w], inputs=[u]), torch_fn=fn, order=2, at=at)
        assert res.ok, res
        assert res.comparisons["torch_fn"].status.tolist() == status, f
    # exact_at at the kink keeps the functions' own conventions: relu'(0) = H(0) = 1/2
    relu = sg.Model("relu", sp.Max(w, 0) * u, params=[w], inputs=[u])
    assert sg.exact_at(relu, {"w": 0.0, "u": 1.5})["d/dw"] == mpmath.mpf("0.75")


def test_linear_ties_is_the_same_function_off_the_tie():
    """sign/Heaviside products of one argument rewritten: equal at random points off the tie,
    the mean of the two sides at it; products of different arguments untouched."""
    a, b = sp.symbols("a b", real=True)
    exprs = [sp.sign(a - b)**2 * sp.exp(a), sp.Heaviside(b - a) * sp.sign(a - b) * (a + 3),
             sp.Heaviside(2 * a - 2 * b)**3 * sp.sign(b - a)**2, sp.sign(a)**3 * b]
    rng = np.random.default_rng(0)
    for e in exprs:
        new = linear_ties(e)
        assert new != e
        for va, vb in rng.normal(size=(20, 2)):
            p = {a: sp.Float(va), b: sp.Float(vb)}
            assert float(new.subs(p)) == pytest.approx(float(e.subs(p)), rel=1e-14)
        tie = {a: sp.Rational(1, 3), b: sp.Rational(1, 3)}
        eps = sp.Rational(1, 10**6)
        sides = [e.subs({a: tie[a] + s, b: tie[b]}) for s in (-eps, eps)]
        mean = (sides[0] + sides[1]) / 2
        assert abs(float(new.subs(tie) - mean)) < 1e-5, (e, new)
    assert linear_ties(sp.sign(a) * sp.sign(b)) == sp.sign(a) * sp.sign(b)
    assert linear_ties(sp.Heaviside(a, 1) ** 2) == sp.Heaviside(a, 1) ** 2  # H(0) = 1: kept
