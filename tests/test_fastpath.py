"""The fast paths of the tensor pipeline on models built from scalar steps (issue 17): each one
gives the answer of the slow rule it stands in for, and takes the slow rule out of the way.

- ``zeros.annihilators`` (the bound's exact zeros): which arguments zero a map body, without
  ``sympy.simplify`` when the body is shown nonzero at a probe point or is 0 as written;
- ``derive._local``: a VJP body derived once per distinct map body;
- ``selection.select``: a DD product by a 0/1 selector (one-hot picks and spreads) exactly, as
  the Ozaki product gives it, bit for bit; a dense or non-finite product still goes to Ozaki.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import symgrad.tensor as st
from symgrad.precise import DD, DD_OPS
from symgrad.precise import selection
from symgrad.precise.ozaki import dd_matmul
from symgrad.tensor import bound, derive, zeros
from symgrad.tensor.program import X

x0, x1, x2 = X[0], X[1], X[2]
LOOKUP = sp.Piecewise((x1, sp.Eq(x0, 0)), (x2, sp.Eq(x0, 1)), (sp.nan, True))


def _no_simplify(*a, **k):
    raise AssertionError("sympy.simplify called")


@pytest.mark.parametrize("expr, k, want", [
    (x0 * x1, 2, (0, 1)),
    (x0 * sp.exp(x1), 2, (0,)),
    (sp.exp(x0) - 1, 1, (0,)),
    (x0 + x1, 2, ()),
    (sp.tanh(x0) * sp.Max(0, x1), 2, (0, 1)),
    (x0 - LOOKUP.xreplace({x0: x2, x2: x0}), 3, ()),  # an id picks among values: no zero
    (sp.log(1 + x0) * x1, 2, (0, 1)),
])
def test_annihilators_without_simplify(monkeypatch, expr, k, want):
    monkeypatch.setattr(zeros.sp, "simplify", _no_simplify)
    zeros._CACHE.clear()
    assert zeros.annihilators(expr, k) == want


def test_annihilators_asked_only_about_arguments_that_hold_a_zero(monkeypatch):
    # the bound asks about an argument only where its values hold a zero: a body whose
    # arguments hold none costs no probe and no simplify, and the answer is the same subset
    asked = []
    real = zeros._vanishes_with
    monkeypatch.setattr(zeros, "_vanishes_with", lambda e, x: asked.append(x) or real(e, x))
    zeros._CACHE.clear()
    body = x0 * sp.exp(x1) * x2
    assert zeros.annihilators(body, 3, among=[2]) == (2,)
    assert zeros.annihilators(body, 3, among=[1]) == ()
    assert asked == [x2, x1]
    assert zeros.annihilators(body, 3) == (0, 2) and asked == [x2, x1, x0]  # 1, 2 remembered
    asked.clear()
    w, v = st.param("w", ()), st.param("v", ())
    loss = st.map_(X[0] * sp.exp(X[1]), w, v)
    nonzero = {"w": np.array([0.5, -2.0]), "v": np.array([1.0, 3.0])}
    holds = {"w": np.array([0.0, -2.0]), "v": np.array([1.0, 3.0])}
    zeros._CACHE.clear()
    E = bound.evaluate_bound([loss], nonzero)[0]
    assert asked == [] and np.all(E > 0)
    E0 = bound.evaluate_bound([loss], holds)[0]
    assert asked == [X[0]] and E0[0] == 0 and E0[1] > 0  # w = 0 zeroes w * exp(v) exactly
    zeros._CACHE.clear()


def test_annihilators_undecided_falls_back_to_simplify(monkeypatch):
    # 0 * log(0) is nan as written: not a zero; sin^2 + cos^2 - 1 needs simplify to be 0
    zeros._CACHE.clear()
    assert zeros.annihilators(x0 * sp.log(x0), 1) == ()
    calls = []
    real = sp.simplify
    monkeypatch.setattr(zeros.sp, "simplify", lambda e: calls.append(e) or real(e))
    body = x0 * x1 + sp.sin(x1) ** 2 + sp.cos(x1) ** 2 - 1
    assert zeros.annihilators(body, 2) == (0, 1)  # x0 = 0 leaves sin^2 + cos^2 - 1: ~0 at
    assert len(calls) == 1  # every probe, so simplify decides; x1 = 0 folds to 0 as written
    zeros._CACHE.clear()


def test_vjp_body_derived_once_per_distinct_body(monkeypatch):
    calls = []
    real = derive.diff  # tensor/localdiff's (sympy.diff's expression, derive23)
    monkeypatch.setattr(derive, "diff", lambda *a: calls.append(a) or real(*a))
    derive._LOCAL.clear()
    w = st.param("w", (3,))
    loss = st.sum_(st.map_(sp.tanh(X[0]) * X[0], w)) + st.sum_(st.map_(sp.tanh(X[0]) * X[0], w))
    derive.gradient(loss, [w])
    assert len([a for a in calls if a[0].has(sp.tanh)]) == 1  # two nodes, one body


def _dd(rng, shape, scale=1.0):
    hi = rng.standard_normal(shape) * scale
    return DD(hi, hi * rng.uniform(-1, 1, shape) * 2.0 ** -53)


def _onehot(rows, cols, at):
    e = np.zeros((1, rows, cols))
    for r, c in at:
        e[0, r, c] = 1.0
    return DD(e)


@pytest.mark.parametrize("case", ["pick", "spread", "gather", "empty"])
def test_selection_bit_identical_to_ozaki(case):
    rng = np.random.default_rng(3)
    if case == "pick":  # x (1, 1, K) @ e_k (1, K, 1): einsum("i,i->")
        a, b = _dd(rng, (1, 1, 7)), _onehot(7, 1, [(4, 0)])
    elif case == "spread":  # g (1, 1, 1) @ e_k^T (1, 1, K): einsum(",i->i")
        a, b = _dd(rng, (1, 1, 1), 1e-3), _onehot(1, 9, [(0, 5)])
    elif case == "gather":  # a one-hot matrix on the left, a permutation of rows
        a, b = _onehot(3, 4, [(0, 2), (1, 0), (2, 3)]), _dd(rng, (1, 4, 5), 1e10)
    else:  # a column with no 1: exact zeros
        a, b = _dd(rng, (1, 2, 3)), _onehot(3, 2, [(1, 0)])
    got = selection.select(a, b)
    assert got is not None
    ref = dd_matmul(a, b)
    assert np.array_equal(got.hi, ref.hi) and np.array_equal(got.lo, ref.lo)
    # and against mpmath: each entry is the selected DD value exactly
    with mp.workprec(300):
        for idx in np.ndindex(got.shape):
            want = mp.fsum(mp.mpf(float(a.hi[idx[0], idx[1], k])) * mp.mpf(float(b.hi[idx[0], k,
                                                                                       idx[2]]))
                           + mp.mpf(float(a.lo[idx[0], idx[1], k])) * mp.mpf(float(b.hi[
                               idx[0], k, idx[2]]))
                           + mp.mpf(float(a.hi[idx[0], idx[1], k])) * mp.mpf(float(b.lo[
                               idx[0], k, idx[2]]))
                           for k in range(a.shape[2]))
            assert mp.mpf(float(got.hi[idx])) + mp.mpf(float(got.lo[idx])) == want


def test_selection_declines_dense_two_ones_and_non_finite():
    rng = np.random.default_rng(4)
    a = _dd(rng, (1, 2, 3))
    assert selection.select(a, _dd(rng, (1, 3, 2))) is None  # dense: Ozaki
    assert selection.select(a, _onehot(3, 1, [(0, 0), (2, 0)])) is None  # two 1s: a real sum
    bad = DD(np.array([[[np.inf, 1.0, 2.0]]]))
    assert selection.select(bad, _onehot(3, 1, [(1, 0)])) is None  # inf * 0 is nan
    out = DD_OPS.matmul3(bad, _onehot(3, 1, [(1, 0)]))
    assert np.isnan(out.hi[0, 0, 0])  # IEEE semantics kept by the general path


def test_einsum_picks_match_ozaki_on_the_dd_table():
    rng = np.random.default_rng(5)
    x = _dd(rng, (6,))
    e = DD(np.eye(6)[2])
    got = DD_OPS.einsum("i,i->", x, e)
    ref = dd_matmul(DD(x.hi[None, None], x.lo[None, None]), DD(e.hi[None, :, None]))
    assert got.hi == ref.hi[0, 0, 0] and got.lo == ref.lo[0, 0, 0]


class _OneAtATime:
    """DD_OPS without ``per_sample``: the oracle walks one sample at a time (the rule before)."""

    def __getattr__(self, key):
        if key == "per_sample":
            raise AttributeError(key)
        return getattr(DD_OPS, key)


def _dense_model():
    from symgrad.tensor.model import TensorModel
    W, b, x = st.param("W", (3, 4)), st.param("b", (3,)), st.input("x", (4,))
    h = st.map_(sp.tanh(X[0] + X[1]), st.einsum("ij,j->i", W, x), b)
    return TensorModel("dense", st.sum_(st.map_(sp.Max(0, X[0]) * X[0], h)))


def test_oracle_walks_small_programs_in_chunks_bit_for_bit(monkeypatch):
    from symgrad.tensor import views
    m = _dense_model()
    vals = m.draw(40, np.random.default_rng(0), "float64")
    vals["W"] = vals["W"] * np.logspace(-8, 8, 40)[:, None, None]  # scales differ by sample:
    walks = []  # one Ozaki split over all samples would rescale them together
    real = views.evaluate
    monkeypatch.setattr(views, "evaluate", lambda *a, **k: walks.append(1) or real(*a, **k))
    hi, lo = views.oracle_view(m, vals, DD_OPS)
    assert len(walks) == 1  # 40 samples, one walk
    h1, l1 = views.oracle_view(m, vals, _OneAtATime())
    assert len(walks) == 41
    assert np.array_equal(hi, h1) and np.array_equal(lo, l1)
    assert np.array_equal(np.signbit(hi), np.signbit(h1))


def test_oracle_chunks_bounded_by_entries(monkeypatch):
    from symgrad.tensor import views
    m = _dense_model()
    monkeypatch.setattr(views, "CHUNK_ENTRIES", 3 * sum(n.size for n in m.gradient.nodes))
    assert views._chunk(m.gradient.outputs, 40) == 3
    vals = m.draw(7, np.random.default_rng(1), "float64")
    done = []
    hi, lo = views.oracle_view(m, vals, DD_OPS, progress=done.append)
    h1, l1 = views.oracle_view(m, vals, _OneAtATime())
    assert np.array_equal(hi, h1) and np.array_equal(lo, l1)
    assert done[-1] == views.oracle_steps(m, 7)  # progress still counts every node x sample


def test_per_sample_table_multiplies_each_sample_apart():
    rng = np.random.default_rng(6)
    a = _dd(rng, (4, 2, 3)) * DD(np.array([1e-9, 1.0, 1e9, 3.0])[:, None, None])
    b = _dd(rng, (4, 3, 2))
    got = DD_OPS.per_sample(2).matmul3(a, b)
    for s in range(2):
        ref = dd_matmul(a[2 * s:2 * s + 2], b[2 * s:2 * s + 2])
        assert np.array_equal(got.hi[2 * s:2 * s + 2], ref.hi)
        assert np.array_equal(got.lo[2 * s:2 * s + 2], ref.lo)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bki", [(2, 2, 3), (2, 3, 2)]),
    ("ii->i", [(3, 3)]), ("ij->", [(2, 3)]), ("i,i->", [(5,), (5,)]), ("b,bi->bi", [(2,), (2, 4)]),
    ("iv,i,v->", [(3, 4), (3,), (4,)]), ("ij,kj->jik", [(2, 3), (1, 3)]),
])
def test_einsum_plan_replayed_same_values(monkeypatch, spec, shapes):
    from symgrad.precise import contract
    rng = np.random.default_rng(7)
    ops = [rng.integers(-4, 5, s).astype(np.float64) for s in shapes]
    want = np.einsum(spec, *ops)  # small integers: exact in every summation order
    contract._PLANS.clear()
    calls = []
    real = contract.parse
    monkeypatch.setattr(contract, "parse", lambda *a: calls.append(a) or real(*a))
    for _ in range(2):
        got = DD_OPS.einsum(spec, *[DD(o) for o in ops])
        assert np.array_equal(got.hi, want) and not np.any(got.lo)
    assert len(calls) == 1  # planned once, replayed


def test_einsum_plan_keeps_errors():
    from symgrad.errors import SymgradError
    with pytest.raises(SymgradError, match="axis 'j' has sizes"):
        DD_OPS.einsum("ij,jk->ik", DD(np.ones((2, 3))), DD(np.ones((4, 2))))


def test_interpreter_schedules_a_program_once(monkeypatch):
    from symgrad.tensor import interpret, recompute
    from symgrad.tensor.tables import NumpyOps
    m = _dense_model()
    calls = []
    real = recompute.topological

    def counted(outputs, **kw):  # the schedule's own walk (no within=: not the plan's parts)
        if not kw:
            calls.append(1)
        return real(outputs, **kw)
    monkeypatch.setattr(recompute, "topological", counted)
    vals = m.draw(2, np.random.default_rng(0), "float64")
    a = interpret.evaluate(m.gradient.outputs, NumpyOps(), vals)
    b = interpret.evaluate(m.gradient.outputs, NumpyOps(), vals)
    assert len(calls) == 1 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_rigorous_rows_walked_together_same_radii(monkeypatch):
    from symgrad.rigorous import tensor as rt
    from symgrad.tensor.views import oracle_view
    m = _dense_model()
    vals = m.draw(6, np.random.default_rng(2), "float64")
    hi, lo = oracle_view(m, vals, DD_OPS)
    walks = []
    real = rt._rows_balls
    monkeypatch.setattr(rt, "_rows_balls", lambda *a, **k: walks.append(1) or real(*a, **k))
    for dtype in ("float64", "float32"):
        enc = rt.tensor_enclosure(m, vals, hi, lo, dtype, 1.0)
        together = enc._radii_of(np.arange(6))
        one_by_one = np.concatenate([enc._radii_of(np.array([r])) for r in range(6)])
        assert np.array_equal(together, one_by_one, equal_nan=True)
    assert len(walks) == 4  # balls and centres, one walk each per dtype


def test_annihilators_survive_a_body_sympy_cannot_substitute():
    """Max(1/x0, x1) at x0 = 0 is Max(zoo, x1), which sympy refuses to build (a fuzz body
    crashed the bound): no exact zero is claimed for x0, and x1 still zeroes the product."""
    X = st.program.X
    assert zeros.annihilators(sp.Max(1 / X[0], X[1]) * X[1], 2) == (1,)
