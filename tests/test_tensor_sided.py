"""The sided program (``symgrad.tensor.sided``) never lets a selector cancel out of a
derivative: at a side where an atom's piece makes the model undefined (log 0), the exact
gradient is a domain point, never a finite wrong number.

``log(Max(0, v)**2)/w`` at v < 0 is log(0): undefined. Its sided body with a bare mix,
``log(s1**2*v**2)/w``, has d/dv = 2/(w v) for every s1 (sympy cancels s1**2/s1**2), so at the
actual side s1 = 0 the "exact" d/dv was 45.30 at the fuzz's point, a finite value for a function
that has none there. Each atom kind is checked at a point reaching no kink (the model written
directly as a ``TensorModel``), with torch's own code and with the cancelled value planted as
its backward: both are judged against a domain point, neither passes as a match."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import DOMAIN, OK
from symgrad.tensor.model import TensorModel
from symgrad.tensor.program import topological
from symgrad.tensor.sided import sided

X = st.X
V, W = -0.04692128514329265, -0.9408519957422179  # the fuzz's point (tests/test_fuzz.py)

CASES = {  # name: (the atom as a body of v, torch's code for it, v where its piece is 0)
    "max": (sp.Max(0, X[0]), torch.relu, V),
    "min": (sp.Min(0, X[0]), lambda v: torch.clamp(v, max=0), -V),
    "heaviside": (sp.Heaviside(X[0]) * X[0], lambda v: (v > 0) * v, V),
}  # (a Piecewise atom took its piece alone before; its model's own gradient has a zoo constant
#    here: log(Piecewise((v, v > 0), (0, True))**2) fails in the bound's code generator)


def _model(atom: sp.Expr) -> TensorModel:
    v, w = st.param("v", (1,)), st.param("w", (1,))
    return TensorModel("log_atom_squared", st.sum_(st.map_(sp.log(atom**2) / X[1], v, w)))


def _torch_fn(op, planted: bool):
    def fn(v, w):
        out = torch.log(op(v) ** 2) / w
        if planted:  # the cancelled derivative 2/(w v) as d/dv, the value unchanged
            slope = (2 / (w * v)).detach()
            out = out.detach() + slope * (v - v.detach())
        return out.sum()
    return fn


@pytest.mark.parametrize("planted", [False, True], ids=["torch", "cancelled-backward"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_side_where_the_model_is_undefined_has_no_finite_exact_gradient(name, planted):
    atom, op, v = CASES[name]
    at = {"v": np.array([[v]]), "w": np.array([[W]])}
    r = sg.verify(_model(atom), torch_fn=_torch_fn(op, planted), at=at)
    c = r.comparisons["torch_fn"]
    assert not np.isfinite(c.expected[0, 1]), c.expected  # d/dv: log 0, no finite value
    assert c.status[0, 1] == DOMAIN, sg.compare.STATUS_NAMES[c.status[0, 1]]
    assert not np.isfinite(c.kink_position).any()  # no kink reached: decided as written


def test_the_same_model_where_it_is_defined_still_passes_and_a_wrong_backward_fails():
    """v > 0 for Max (v < 0 for Min): the sided program's one-hot side is the model itself,
    d/dv = 2/(w v) exactly; a x(1 + 1e-6) backward still fails."""
    atom, op, _ = CASES["max"]
    at = {"v": np.array([[-V], [0.75]]), "w": np.array([[W], [2.0]])}
    good = sg.verify(_model(atom), torch_fn=_torch_fn(op, False), at=at)
    assert good.verdict == "pass", good
    assert (good.comparisons["torch_fn"].status == OK).all()

    def scaled(v, w):
        out = torch.log(op(v) ** 2) / w
        return (out + 1e-6 * (out - out.detach())).sum()
    bad = sg.verify(_model(atom), torch_fn=scaled, at=at)
    assert bad.verdict == "fail"
    assert {f.kind for f in bad.failures} - {"mismatch", "systematic"} == set()


UNDEFINED = {  # an atom with an undefined argument at x < 0, and torch's code for it
    "max": (sp.Max(0, sp.sqrt(X[1]), sp.erf(X[0] + sp.Rational(1, 2))),
            lambda w, x: torch.maximum(torch.clamp(torch.sqrt(x), min=0), torch.erf(w + 0.5))),
    "step": (sp.Heaviside(sp.sqrt(X[1]) - 1) * X[0], lambda w, x: (torch.sqrt(x) > 1) * w),
}  # (Abs / sign of sqrt(x) + w: the model's own gradient leaves the vocabulary: atan2, a
#    Derivative, before any side is taken)


@pytest.mark.parametrize("name", sorted(UNDEFINED))
def test_an_atom_of_an_undefined_argument_takes_no_side(name):
    """The fuzz's Max(0, sqrt(x), erf(w + 1/2)) at x = -0.254: argmax took the NaN member's
    side, whose d/dw is 0, an exact 0 for a function undefined there; (nan > 0) put a
    Heaviside on its first side (d/dw 0). No side is the atom's: d/dw is a domain point."""
    body, op = UNDEFINED[name]
    w, x = st.param("w", (1,)), st.param("x", (1,))
    m = TensorModel(f"undefined_{name}", st.sum_(st.map_(body, w, x)))
    at = {"w": np.array([[-1.6597755612261518]]), "x": np.array([[-0.2544412628962783]])}
    r = sg.verify(m, torch_fn=lambda w, x: op(w, x).sum(), at=at)
    c = r.comparisons["torch_fn"]
    assert not np.isfinite(c.expected[0, 1]), c.expected  # d/dw
    assert c.status[0, 1] == DOMAIN, sg.compare.STATUS_NAMES[c.status[0, 1]]


def _sided_body(body: sp.Expr, *names: str) -> sp.Expr:
    params = [st.param(n, (1,)) for n in names]
    s = sided(TensorModel("body", st.sum_(st.map_(body, *params))))
    (node,) = [n for n in topological([s.loss]) if n.op == "map" and len(n.args) > len(names)]
    return node.attrs["expr"]


def test_each_one_hot_side_is_its_piece_differentiated_alone():
    """The sided body's d/dv at each one-hot side is the derivative of the body with that
    side's piece put in before differentiating: log(0**2)/w is NaN (not 2/(w v)), log(v**2)/w
    is 2/(w v); sqrt(Max(w, 0)) + w on the side 0 has d/dw 1 (not inf * 0), on the side w
    1/(2 sqrt(w)) + 1."""
    v, w = X[0], X[1]
    body = _sided_body(sp.log(sp.Max(0, v) ** 2) / w, "v", "w")
    d = sp.diff(body, v)
    at = {v: sp.Rational(-1, 2), w: 2}
    assert d.subs({**at, X[2]: 1, X[3]: 0}) is sp.nan
    assert d.subs({v: sp.Rational(1, 2), w: 2, X[2]: 0, X[3]: 1}) == 2
    body = _sided_body(sp.sqrt(sp.Max(v, 0)) + v, "w")
    d = sp.diff(body, v)
    assert d.subs({v: -1, X[1]: 1, X[2]: 0}) == 1  # sympy's Max(0, w): pieces (0, w)
    assert d.subs({v: 4, X[1]: 0, X[2]: 1}) == sp.Rational(5, 4)
