"""The ARB 0/1-selector fast path (``symgrad.precise.arb_select``, issue 17): an einsum of balls
whose one factor only picks entries gives the chosen balls, and the rounded enclosure widens
them exactly as the general product does: every node's ball of the gate's models (simplenet,
gpt_cross_entropy, gpt_softmax, float64 and float32) has the same midpoint and radius, bit for
bit, with and without the fast path; a dense, doubly-picking or non-finite product still goes
the general way.
"""

from __future__ import annotations

import numpy as np
import pytest
from flint import arb, ctx

from symgrad import zoo
from symgrad.precise import arb as arb_mod
from symgrad.precise import arb_select
from symgrad.precise.arb import ArbOps
from symgrad.rigorous import tensor as rt
from symgrad.rigorous.balls import PREC
from symgrad.rigorous.singular import SingularRounding
from symgrad.tensor.front import to_program
from symgrad.tensor.interpret import evaluate


def _same(a, b) -> bool:
    """Two balls equal as balls: the same midpoint and radius (both NaN counts as equal)."""
    if not (isinstance(a, arb) and isinstance(b, arb)):  # integer entries (ids, one-hots)
        return type(a) is type(b) and bool(a == b)
    if a.is_nan() or b.is_nan():
        return a.is_nan() and b.is_nan()
    if not (a.is_finite() and b.is_finite()):
        return str(a) == str(b)
    return bool(a.mid() == b.mid()) and bool(a.rad() == b.rad())


def _all_same(x, y) -> bool:
    x, y = np.asarray(x, dtype=object), np.asarray(y, dtype=object)
    if x.dtype != object or x.shape != y.shape:  # integer leaves
        return np.array_equal(x, y)
    return all(_same(a, b) for a, b in zip(x.reshape(-1), y.reshape(-1)))


def _walk(model, vals, dtype: str, exact: bool) -> dict:
    ops = rt.RoundedArbOps(dtype, 1.0, exact=exact)
    got: dict = {}
    with ctx.workprec(PREC):
        evaluate(model.gradient.outputs, ops, vals, on_node=lambda n, v: got.__setitem__(n.id, v))
    return got


def _general(*a, **k):
    return None


@pytest.mark.parametrize("name", ["simplenet", "gpt_cross_entropy", "gpt_softmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_ball_same_as_general_product(name, dtype, monkeypatch):
    m = to_program(zoo.get(name))
    vals = m.draw(3, np.random.default_rng(5), dtype)
    taken = []
    real = arb_select.selection

    def counting(*a, **k):
        got = real(*a, **k)
        taken.append(got is not None)
        return got
    monkeypatch.setattr(rt, "selection", counting)
    fast = [_walk(m, vals, dtype, exact) for exact in (False, True)]
    assert any(taken), "the fast path was never taken on a model built from scalar steps"
    monkeypatch.setattr(rt, "selection", _general)
    monkeypatch.setattr(arb_mod, "selection", _general)
    slow = [_walk(m, vals, dtype, exact) for exact in (False, True)]
    for f, s in zip(fast, slow):
        assert f.keys() == s.keys()
        bad = [i for i in f if not _all_same(f[i], s[i])]
        assert not bad, f"{len(bad)} nodes differ from the general product"


def test_rows_enclosure_radii_unchanged(monkeypatch):
    """The enclosure's per-row radii (what the verdict reads) on simplenet, both ways."""
    from symgrad.tensor.views import oracle_view
    from symgrad.precise import DD_OPS
    m = to_program(zoo.get("simplenet"))
    vals = m.draw(4, np.random.default_rng(1), "float64")
    hi, lo = oracle_view(m, vals, DD_OPS)
    fast = rt.tensor_enclosure(m, vals, hi, lo, "float64", 1.0)._radii_of(np.arange(4))
    monkeypatch.setattr(rt, "selection", _general)
    slow = rt.tensor_enclosure(m, vals, hi, lo, "float64", 1.0)._radii_of(np.arange(4))
    assert np.array_equal(fast, slow, equal_nan=True)


def _balls(rng, shape, prec_bits: int = 128) -> np.ndarray:
    with ctx.workprec(prec_bits):
        return np.array([arb(float(v)) / 3 for v in rng.standard_normal(int(np.prod(shape)))],
                        dtype=object).reshape(shape)


def _hot(rows: list, n: int) -> np.ndarray:
    out = np.empty((len(rows), n), dtype=object)
    out[...] = arb(0)
    for r, picks in enumerate(rows):
        for j in picks:
            out[r, j] = arb(1)
    return out


@pytest.mark.parametrize("prec_bits", [128, 400])
def test_arb_ops_selection_bit_for_bit(prec_bits, monkeypatch):
    """Balls of at most the table's precision (every ball of the rigorous walk): bit for bit.
    Wider midpoints (400 bits, rounded to 128 by the product): the same midpoint, the ball
    inside the general product's (whose ``arb_dot`` over 5 terms bounds the rounding a few
    2^-30 looser) and around the exact selected value: still a proof."""
    rng = np.random.default_rng(0)
    x = _balls(rng, (4, 5), prec_bits)
    hot = _hot([[2], [], [4], [0]], 5)  # a row that picks nothing: an exact 0
    ops = ArbOps(128)
    fast = ops.einsum("bi,bi->b", x, hot), ops.einsum("bi,bi->b", hot, x)
    assert fast[0][1].is_zero() and fast[0][1].is_exact()
    assert _all_same(fast[0], fast[1])
    monkeypatch.setattr(arb_mod, "selection", _general)
    slow = ops.einsum("bi,bi->b", x, hot)
    if prec_bits == 128:
        assert _all_same(fast[0], slow)
        return
    for f, s, v in zip(fast[0], slow, [x[0, 2], arb(0), x[2, 4], x[3, 0]]):
        assert bool(f.mid() == s.mid()) and s.contains(f) and f.contains(v)
        assert f.rad() <= s.rad()


def test_not_a_selector_goes_the_general_way():
    rng = np.random.default_rng(1)
    x = _balls(rng, (2, 3))
    assert arb_select.selection("bi,bi->b", [x, _hot([[0, 1], [2]], 3)]) is None  # two 1s
    half = _hot([[0], [1]], 3)
    half[0, 0] = arb(1) / 2
    assert arb_select.selection("bi,bi->b", [x, half]) is None  # not 0/1
    assert arb_select.selection("bi,bi->b", [x, x]) is None  # dense
    assert arb_select.selection("bi,bi,bi->b", [x, x, _hot([[0], [1]], 3)]) is None
    x[1, 2] = arb("inf")  # 0 * inf is NaN in the general product: not picked around
    assert arb_select.selection("bi,bi->b", [x, _hot([[0], [1]], 3)]) is None
    assert ArbOps(128).einsum("bi,bi->b", x, _hot([[0], [1]], 3))[1].is_nan()


def test_rounded_walk_keeps_a_nan_ball_in_its_own_entry():
    """The rounded enclosure (``finite_results``): an entry beyond the dtype's range (a NaN
    ball) scattered by a one-hot gives NaN where it is picked and exact 0s elsewhere: 0 * inf
    is NaN in the dtype, a non-finite result, so a finite result there is 0 (as the rounded
    product's zero factor); the exact oracle's table and the singular walk (which entries may
    be non-finite) still take the general product."""
    x = np.array([arb.nan(), arb(3)], dtype=object)  # lane 0 overflowed, lane 1 finite
    hot = _hot([[0], [2]], 3)[:, None, :]  # (2, 1, 3): entry b is placed at column hot[b]
    picked = arb_select.selection("b,bzi->bi", [x, hot], finite_results=True)
    assert picked is not None and arb_select.selection("b,bzi->bi", [x, hot]) is None
    out = rt.RoundedArbOps("float64", 1.0).einsum("b,bzi->bi", x, hot)
    assert out[0, 0].is_nan() and out[1, 2].contains(3) and out[1, 2].rad() < 1e-15
    assert all(out[b, i].is_finite() and abs(out[b, i]) < 1e-300
               for b, i in [(0, 1), (0, 2), (1, 0), (1, 1)])
    assert all(v.is_nan() for v in ArbOps(128).einsum("b,bzi->bi", x, hot).reshape(-1)[:3])
    singular = rt.RoundedArbOps("float64", 1.0, rounding=SingularRounding("float64", 1.0))
    assert singular.einsum("b,bzi->bi", x, hot)[0, 1].is_nan()  # which entries may be
    #                                                         non-finite: the NaN spreads
