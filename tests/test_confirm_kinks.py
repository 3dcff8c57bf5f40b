"""Fresh samples that land on a kink (symgrad.confirm, issue 17): the confirmation judges them
as the run does - the comparer's one-sided derivatives and subgradient test decide those
entries, and their distance from sympy's H(0) = 1/2 value is neither a mismatch "again" nor part
of a block's projection - while a planted bug beside them is still confirmed."""

from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import (INCONCLUSIVE, KINK, MISMATCH, SUSPECT, SYSTEMATIC, Tolerance,
                             compare, systematic)
from symgrad.confirm import Experiments, confirm
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward


def _on_kinks(got: np.ndarray, exact: np.ndarray, at: list, bound: float = 1.0):
    """compare() of got against exact, where the entries ``at`` sit on a kink whose sides are 0
    and 2 x exact (sympy's H(0) = 1/2 is their midpoint) and the backend took the side 2 x
    exact: within the kink interval, far beyond the entry allowance from the midpoint."""
    got = got.copy()
    low, high = exact.copy(), exact.copy()
    for i, j in at:
        low[i, j], high[i, j] = min(0.0, 2 * exact[i, j]), max(0.0, 2 * exact[i, j])
        got[i, j] = 2 * exact[i, j]
    comp = compare(exact, 0 * exact, got, np.full(exact.shape, bound), backend="b",
                   dtype="float64", tol=Tolerance(), kink=(low, high))
    for i, j in at:
        assert comp.status[i, j] == KINK and np.isfinite(comp.kink_position[i, j])
    return comp


def _entry_suspect():
    """A float64 run whose entry [0, 3] of block W (columns 1..8) is SUSPECT (beyond the fast
    bound, within the rigorous enclosure)."""
    exact = np.hstack([np.ones((2, 1)), np.random.default_rng(1).normal(size=(2, 8))])
    got = exact.copy()
    got[0, 3] *= 1 + 1e-3
    comp = compare(exact, 0 * exact, got, np.full(exact.shape, 1.0), backend="b",
                   dtype="float64", tol=Tolerance())
    status = comp.status.copy()
    status[0, 3] = SUSPECT
    return replace(comp, status=status), exact


def _run(comp, exact, fresh) -> "sg.compare.Comparison":
    exp = Experiments(lambda n, a, b: (exact[:, a:b], (comp.got - exact)[:, a:b],
                                       comp.allowed_abs[:, a:b]), lambda n, r: None,
                      lambda names, m: {"b": fresh}, 1000, len(exact))
    return confirm({"b": comp}, [("W", 1, 9)], Tolerance(), exp)["b"]


@pytest.mark.parametrize("planted", [False, True])
def test_entry_suspicion_a_fresh_kink_is_not_a_mismatch_again(planted):
    """Fresh samples correct except two entries on a kink (the backend on one side): before,
    |got - H(0) value| > allowance counted as "beyond the fast bound again" and the suspicion
    became a MISMATCH; now it stays inconclusive. With a real 1e-3 error beside the kinks
    (planted), it is still confirmed."""
    comp, exact = _entry_suspect()
    rng = np.random.default_rng(2)
    f_exact = np.hstack([np.ones((6, 1)), rng.normal(size=(6, 8))])
    f_got = f_exact.copy()
    if planted:
        f_got[4, 6] *= 1 + 1e-3
    fresh = _on_kinks(f_got, f_exact, [(1, 3), (2, 5)])
    c = _run(comp, exact, fresh)
    assert c.status[0, 3] == (MISMATCH if planted else INCONCLUSIVE)
    assert bool(c.evidence) == planted
    if not planted:
        assert "not beyond the fast bound on" in c.unconfirmed[-1]


def test_entry_suspicion_a_fresh_sample_off_the_kink_interval_still_counts():
    """A fresh entry on a kink but outside its interval (no one-sided derivative) is the
    comparer's MISMATCH, and confirms the suspicion as before."""
    comp, exact = _entry_suspect()
    f_exact = np.hstack([np.ones((3, 1)), np.random.default_rng(3).normal(size=(3, 8))])
    fresh = _on_kinks(f_exact, f_exact, [(1, 3)])
    got = fresh.got.copy()
    got[1, 3] = 3 * f_exact[1, 3]  # beyond the side 2 x exact
    fresh = compare(f_exact, 0 * f_exact, got, np.full(got.shape, 1.0), backend="b",
                    dtype="float64", tol=Tolerance(),
                    kink=(np.minimum(0, 2 * f_exact) * (np.arange(9) == 3),
                          np.maximum(f_exact, 2 * f_exact * (np.arange(9) == 3))))
    assert fresh.status[1, 3] == MISMATCH
    assert _run(comp, exact, fresh).status[0, 3] == MISMATCH


def _block_suspect(factor: float, n: int, k: int = 32):
    """A float64 block W (columns 1..k) x factor on every sample, beside a correct block H
    (columns k+1..k+8), through compare and the block test (as tests/test_confirm.py)."""
    g = np.random.default_rng(0).normal(size=(n, k))
    exact = np.hstack([np.ones((n, 1)), g, np.linspace(1, 2, 8)[None].repeat(n, 0)])
    got = exact.copy()
    got[:, 1:k + 1] *= factor
    comp = systematic(compare(exact, 0 * exact, got, np.full(exact.shape, 1e12), backend="b",
                              dtype="float64", tol=Tolerance()),
                      [("W", 1, k + 1), ("H", k + 1, k + 9)], Tolerance())
    return comp, exact, got


@pytest.mark.parametrize("planted", [False, True])
def test_block_suspicion_fresh_kink_entries_are_left_out_of_the_projection(planted):
    """Fresh samples with a kink entry each whose comparer status is usable (INCONCLUSIVE, as a
    relaxed kink leaves it) and whose distance from the H(0) value is +exact: before, those
    entries entered the pooled projection and confirmed a suspicion on correct code; now the
    block test leaves them out, as the run's own block test does. A planted x (1 + 1e-5) bias
    beside them is still confirmed."""
    comp, exact, _ = _block_suspect(1 + 1e-5, 3)
    assert comp.systematic and comp.systematic[0].confirmed is None
    f_comp, f_exact, f_got = _block_suspect(1 + 1e-5 if planted else 1.0, 40)
    at = [(i, 1 + (7 * i) % 32) for i in range(40)]
    fresh = _on_kinks(f_got, f_exact, at, bound=1e12)
    status = fresh.status.copy()
    for i, j in at:
        status[i, j] = INCONCLUSIVE
    fresh = replace(fresh, status=status)
    exp = Experiments(lambda n, a, b: (exact[:, a:b], (comp.got - exact)[:, a:b],
                                       comp.allowed_abs[:, a:b]), lambda n, r: None,
                      lambda names, m: {"b": fresh}, 1000, len(exact))
    c = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), exp)["b"]
    assert c.systematic and any(f.confirmed for f in c.systematic) == planted
    assert c.ok != planted
    if planted:
        assert (c.status[:, 1:] == SYSTEMATIC).any()
        assert "pooled p = 1e-05" in c.systematic[0].evidence


# ---------------------------------------------------------------- end to end, scalar model
_w, _x = sp.symbols("w x", real=True)


def _kinked() -> sg.Model:
    """softplus(w x) + relu(w) x**2 with w in {0, 1/2, 1}: a third of every draw (fresh ones
    too) sits exactly on relu's kink, where sympy's H(0) = 1/2 and torch's relu'(0) = 0."""
    return sg.Model("kinked", sp.log(1 + sp.exp(_w * _x)) + sp.Max(_w, 0) * _x**2,
                    params={_w: sg.Choice([0.0, 0.5, 1.0])}, inputs={_x: sg.Normal()})


def _kinked_fn(scale: float):
    def fn(w, x):
        w = scale_backward(w, scale) if scale != 1.0 else w
        return torch.nn.functional.softplus(w * x) + torch.relu(w) * x**2
    return fn


@pytest.mark.parametrize("scale", [1 + 1e-12, 1 - 1e-12])
def test_planted_bias_confirmed_on_fresh_samples_that_hit_the_kink(scale):
    """The planted 1e-12 bias is a suspicion (the block test), confirmed on fresh samples -
    a third of which sit on the kink - with the planted size and sign."""
    r = sg.verify(_kinked(), torch_fn=_kinked_fn(scale), samples=64, seed=0,
                  backends=("torch_fn",))
    comp = r.comparisons["torch_fn"]
    assert r.verdict == "fail" and (comp.status == KINK).any()
    [f] = comp.systematic
    assert f.block == "w" and f.confirmed and "fresh samples" in f.evidence
    assert abs(f.projection - (scale - 1)) < 0.3 * abs(scale - 1)


def test_correct_code_on_the_kink_passes():
    r = sg.verify(_kinked(), torch_fn=_kinked_fn(1.0), samples=64, seed=0)
    assert r.verdict == "pass", str(r)
    assert (r.comparisons["torch_fn"].status == KINK).any()


# ---------------------------------------------------------------- end to end, tensor model
def _kinked_tensor():
    w = st.param("w", (6,), sg.Choice([0.0, 0.5, 1.0]))
    x = st.input("x", (6,))
    body = sp.log(1 + sp.exp(st.X[0] * st.X[1])) + sp.Max(st.X[0], 0) * st.X[1] ** 2
    return TensorModel("kinked", st.sum_(st.map_(body, w, x)))


def _kinked_tensor_fn(scale: float):
    def fn(w, x):
        w = scale_backward(w, scale) if scale != 1.0 else w
        return (torch.nn.functional.softplus(w * x) + torch.relu(w) * x**2).sum()
    return fn


def test_tensor_correct_code_on_the_kink_passes():
    assert sg.verify(_kinked_tensor(), torch_fn=_kinked_tensor_fn(1.0), samples=64).verdict \
        == "pass"


@pytest.mark.parametrize("scale", [1 + 1e-13, 1 - 1e-13])
def test_tensor_planted_bias_confirmed_with_its_size_on_fresh_kinks(scale):
    r = sg.verify(_kinked_tensor(), torch_fn=_kinked_tensor_fn(scale), samples=64, seed=0,
                  backends=("torch_fn",))
    [f] = r.comparisons["torch_fn"].systematic
    assert f.block == "w" and f.confirmed and "fresh samples" in f.evidence
    p = float(f.evidence.split("pooled p = ")[1].split(" ")[0])
    assert abs(p - (scale - 1)) < 0.3 * abs(scale - 1)
