"""k-way ties (k >= 3) of max-like ops: the accepted set is the convex hull of the k one-hot
vertices - torch's 1/k each, amax's even split, max's index pick, any convex combination - and
a gradient proven outside it ((1, 1, 1), (1, 0, 1)) fails, naming the parameter.

vector_norm(x, inf) = Max(|x0|, |x1|, |x2|) is one map whose atoms do not fit one kink site
(3 * 3 * 3 * 4 one-hot cases): its atoms are hoisted into sites of their own
(``symgrad.tensor.sided._hoist``), so the Max's tie has its three sides; before, the map kept
sympy's derivative, Heaviside(0) = 1/2 for every member (sum 3/2), and torch's correct 1/3 each
was a "proven" mismatch of 3.5e6 ULPs in float32."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.tensor.model import TensorModel
from symgrad.tensor.sided import sided
from symgrad.verify import as_program

READOUT = 0.6313448548316956


def _norm_inf_model():
    x = sg.matrix("x", 3)
    r = sp.Symbol("readout", real=True)
    return sg.Model("norm_inf", r * sp.Max(*[sp.Abs(v) for v in x]), params=[x], inputs=[r])


def _norm_inf(x, readout):
    return (readout * torch.linalg.vector_norm(x, ord=float("inf"))).sum()


def _weighted(weights):
    """vector_norm(x, inf) as its value, its gradient readout * sign(x) * weights (planted)."""
    def fn(x, readout):
        w = torch.tensor(weights, dtype=x.dtype)
        a = x.abs()
        v = torch.linalg.vector_norm(x, ord=float("inf")).detach()
        return (readout * (v + (w * (a - a.detach())).sum())).sum()
    return fn


def _at(x):
    return {"x": np.array([x], float), "readout": np.array([READOUT])}


TIE3 = _at([-1e4, -1e4, -1e4])  # the catalogue's point (reports/ops.md, float32)


def test_the_norms_max_of_abs_is_sided():
    """Three Abs sites and a Max site of three members, not one map without sides."""
    s = sided(as_program(_norm_inf_model()))
    kinds = sorted(a.kind for site in s.sites for a in site.atoms)
    assert kinds == ["abs", "abs", "abs", "max"]
    assert [len(a.pieces) for site in s.sites for a in site.atoms if a.kind == "max"] == [3]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("x", [[-1e4, -1e4, -1e4], [3.0, -3.0, 3.0], [6.0, 6.0, 6.0]])
def test_vector_norm_inf_at_a_three_way_tie_passes(x, dtype):
    r = sg.verify(_norm_inf_model(), torch_fn=_norm_inf, at=_at(x), dtype=dtype)
    assert r.verdict == "pass", r
    assert np.isfinite(r.comparisons["torch_fn"].kink_position).any()  # judged by its sides


@pytest.mark.parametrize("weights", [(1.0, 0.0, 0.0), (1 / 3, 1 / 3, 1 / 3), (0.5, 0.5, 0.0),
                                     (0.0, 0.25, 0.75)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_point_of_the_hull_passes(weights, dtype):
    r = sg.verify(_norm_inf_model(), torch_fn=_weighted(weights), at=TIE3, dtype=dtype)
    assert r.verdict == "pass", r


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (0.5, 0.5, 0.5)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_a_gradient_outside_the_hull_fails_naming_x(weights, dtype):
    r = sg.verify(_norm_inf_model(), torch_fn=_weighted(weights), at=TIE3, dtype=dtype)
    assert r.verdict == "fail", r
    assert {f.backend for f in r.failures} == {"torch_fn"}
    assert all(f.output.startswith("d/dx[") for f in r.failures), [f.output for f in r.failures]
    assert "x[" in r.failures[0].message()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_two_way_tie(dtype):
    """(5, -5, 1): torch's 1/2 each (the midpoint, exact: it passed before too) and an index
    pick (before: a mismatch, the map had no sides) pass; (1, 1, 0) fails."""
    at = _at([5.0, -5.0, 1.0])
    r = sg.verify(_norm_inf_model(), torch_fn=_norm_inf, at=at, dtype=dtype)
    assert r.verdict == "pass", r
    assert sg.verify(_norm_inf_model(), torch_fn=_weighted((1.0, 0.0, 0.0)), at=at,
                     dtype=dtype).verdict == "pass"
    bad = sg.verify(_norm_inf_model(), torch_fn=_weighted((1.0, 1.0, 0.0)), at=at, dtype=dtype)
    assert bad.verdict == "fail", bad


def _rows_max_model(width):
    """sum_i r_i max_j x[i, j]: torch.amax / torch.max over dim 1."""
    x = sg.matrix("x", 2, width)
    r = sg.matrix("r", 2)
    loss = sum(r[i] * sp.Max(*[x[i, j] for j in range(width)]) for i in range(2))
    return sg.Model(f"rowmax{width}", loss, params=[x], inputs=[r])


ROW_FNS = {
    "amax": lambda x, r: (r * torch.amax(x, dim=1)).sum(),
    "max-values": lambda x, r: (r * torch.max(x, dim=1).values).sum(),
    "norm-inf-of-relu": lambda x, r: (r * torch.linalg.vector_norm(
        torch.relu(x) + 0.0, ord=float("inf"), dim=1)).sum(),
}


def _rows_at(width):
    """Row 0 a width-way tie at 2.5, row 1 a 3-way tie at 7 (and a smaller entry if wider)."""
    x = np.full((1, 2, width), 2.5)
    x[0, 1, :3] = 7.0
    x[0, 1, 3:] = 1.0
    return {"x": x, "r": np.array([[0.75, -1.25]])}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", sorted(ROW_FNS))
@pytest.mark.parametrize("width", [3, 4])
def test_max_over_a_dim_at_three_and_four_way_ties_passes(width, fn, dtype):
    r = sg.verify(_rows_max_model(width), torch_fn=ROW_FNS[fn], at=_rows_at(width), dtype=dtype)
    assert r.verdict == "pass", r
    assert np.isfinite(r.comparisons["torch_fn"].kink_position).any()  # judged by its sides


@pytest.mark.parametrize("width", [3, 4])
def test_max_over_a_dim_summing_every_tied_gradient_fails(width):
    def summed(x, r):
        m = x.amax(dim=1, keepdim=True).detach()
        return (r * (((x - m) * (x == m)).sum(1) + m[:, 0])).sum()
    bad = sg.verify(_rows_max_model(width), torch_fn=summed, at=_rows_at(width))
    assert bad.verdict == "fail", bad
    assert "x[" in bad.failures[0].message()


def test_a_max_reduction_at_a_four_way_tie_passes_and_all_ones_fails():
    """The tensor program's own max reduction (a site of its own): amax's 1/4 each passes,
    every tied gradient 1 fails."""
    x = st.param("x", (2, 4))
    m = TensorModel("amax4", st.sum_(st.max_(x, (1,))))
    at = {"x": np.full((1, 2, 4), -3.0)}
    assert sg.verify(m, torch_fn=lambda x: torch.amax(x, 1).sum(), at=at).verdict == "pass"

    def summed(x):
        top = x.amax(1, keepdim=True).detach()
        return (((x - top) * (x == top)).sum(1) + top[:, 0]).sum()
    assert sg.verify(m, torch_fn=summed, at=at).verdict == "fail"


def _wide_model(n):
    x = sg.matrix("x", n)
    return sg.Model(f"max{n}", sp.Max(*x), params=[x])


WIDE_FNS = {
    "amax": lambda x: torch.amax(x),
    "max-index": lambda x: torch.max(x, dim=0).values,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", sorted(WIDE_FNS))
@pytest.mark.parametrize("n", [9])
def test_a_max_too_wide_for_one_site_is_a_tree_of_sites(n, fn, dtype):
    """Max of 9 members: one atom of more operands and selectors than a map has symbols
    (before: no sides, sympy's H(0) = 1/2 for each of a three-way tie's members, a false
    FAIL). As two halves (each hoisted) its three-way tie across the halves has the three
    one-hot vertices: amax's 1/3 each and max's index pick pass; every tied gradient 1
    fails. (Up to 20 members pass too; 15 costs 30 s CPU in the front, before this fix too.)"""
    at = {"x": np.arange(n, dtype=float)[None]}
    at["x"][0, [0, n // 2, n - 1]] = n + 1.5
    m = _wide_model(n)
    r = sg.verify(m, torch_fn=WIDE_FNS[fn], at=at, dtype=dtype)
    assert r.verdict == "pass", r
    assert np.isfinite(r.comparisons["torch_fn"].kink_position).any()

    def summed(x):
        top = x.amax().detach()
        return ((x - top) * (x == top)).sum() + top
    bad = sg.verify(m, torch_fn=summed, at=at, dtype=dtype)
    assert bad.verdict == "fail", bad
    assert "x[" in bad.failures[0].message()
