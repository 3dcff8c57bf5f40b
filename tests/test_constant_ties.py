"""A max-pool tie between ReLU zeros is no kink (``symgrad.tensor.constant_ties``); a tie that
can move an entry is kept and a wrong derivative there is still caught; a sample with more
than ``sides.MAX_KEYS`` kinks takes the base, the enclosure and the search (``sides._lean``)
instead of leaving every entry inconclusive."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.precise import DD_OPS
from symgrad.tensor import sides
from symgrad.tensor.constant_ties import constant_ties
from symgrad.tensor.kinks import reached
from symgrad.tensor.model import TensorModel
from symgrad.tensor.program import max_, reshape

X = st.X


def _pool():
    """sum(v * max-pool(relu(z + c + d))) over three windows of two, and |z|^2 / 2 so that
    every entry of z has a nonzero derivative off the pool."""
    z, v = st.param("z", (6,)), st.input("v", (3,))
    c, d = st.input("c", (6,)), st.input("d", (6,))
    pooled = max_(reshape(st.map_(sp.Max(0, X[0] + X[1] + X[2]), z, c, d), (3, 2)), axes=(1,))
    return TensorModel("pool", st.sum_(st.map_(X[0] * X[1], v, pooled))
                       + st.sum_(st.map_(X[0] * X[0] / 2, z)))


def _at(z, c=np.zeros(6), d=np.zeros(6)):
    return {"z": np.asarray(z, float)[None], "v": np.array([[1.0, 2.0, 3.0]]),
            "c": np.asarray(c, float)[None], "d": np.asarray(d, float)[None]}


def _torch(split="max", slope=1.0):
    """The model in torch: the pool as torch.max (one winner) or amax (an even split), or
    ``split="both"``: every tied entry gets the whole gradient (a wrong derivative at a tie);
    ``slope``: relu'(0) (torch's is 0; 1 is another side; 2 is wrong)."""
    def fn(z, v, c, d):
        u = z + c + d
        h = torch.relu(u) + slope * (u - u.detach()) * (u == 0)
        w = h.reshape(3, 2)
        if split == "max":
            p = w.max(dim=1).values
        elif split == "amax":
            p = w.amax(dim=1)
        else:
            top = w.amax(dim=1, keepdim=True).detach()
            p = (w * (w == top)).sum(dim=1) - top.squeeze(1) * ((w == top).sum(dim=1) - 1)
        return (v * p).sum() + (z * z).sum() / 2
    return fn


ZERO_TIE = [-1.0, -2.0, 0.5, 0.25, 3.0, 1.0]  # window 0: relu zeros, far from their kink


def _keys(z, c=np.zeros(6), d=np.zeros(6), dtype="float64"):
    m = _pool()
    keys = reached(m, _at(z, c, d), DD_OPS, (dtype,), sg.Tolerance())
    return m, keys


def test_a_tie_of_relu_zeros_is_dropped_and_every_side_of_it_gives_one_row():
    """Window 0 holds relu(-1) = relu(-2) = 0: reached as a tie with two options, dropped by
    ``constant_ties``; its two sides evaluated anyway (the sided gradient program, each option
    one-hot) give the same row bit for bit - the proof's claim, checked - and correct torch
    passes with either winner rule."""
    m, keys = _keys(ZERO_TIE)
    s = sides.sided(m)
    ks = keys.rows[0]
    assert [(s.sites[k.site].selector is not None, k.options) for k in ks] == [(True, (0, 1))]
    assert constant_ties(s, ks, keys.base[0], {}) == []
    row = sides._Row(m, _at(ZERO_TIE), ks, keys.base[0], DD_OPS)
    first, second = row.vertices([(0,), (1,)])
    assert np.array_equal(first, second)
    hi, lo = np.zeros((1, 7)), np.zeros((1, 7))
    assert sides.kink_sides(m, _at(ZERO_TIE), keys, DD_OPS, hi, lo)[0].vertices == {}
    for split in ("max", "amax"):
        r = sg.verify(m, torch_fn=_torch(split), at=_at(ZERO_TIE), dtype="float32")
        assert r.verdict == "pass", r


@pytest.mark.parametrize("z, why", [
    ([0.5, 0.5, 0.25, 1.0, 3.0, 1.0], "a tie of two positive entries: the pool's gradient "
                                      "goes to one of them"),
    ([0.0, -2.0, 0.5, 0.25, 3.0, 1.0], "relu(0) = relu(-2) = 0 with z0 itself at its kink"),
])
def test_a_tie_that_can_move_an_entry_is_kept_and_a_wrong_derivative_there_fails(z, why):
    """Meant to fail: where a tied entry is no constant (relu on its linear side, or at its own
    kink), the tie stays a kink, correct torch passes, and a backward giving every tied entry
    the whole gradient (or relu'(0) = 2) is caught - the drop never reaches it."""
    m, keys = _keys(z)
    s = sides.sided(m)
    ties = [k for k in keys.rows[0] if s.sites[k.site].selector is not None]
    assert ties and constant_ties(s, ties, keys.base[0], {}) == ties, why
    assert sg.verify(m, torch_fn=_torch("max"), at=_at(z)).verdict == "pass"
    wrong = _torch("both") if z[0] else _torch("max", slope=2.0)
    bad = sg.verify(m, torch_fn=wrong, at=_at(z))
    assert bad.verdict == "fail" and any(f.output in ("d/dz[0]", "d/dz[1]")
                                         for f in bad.failures), bad


def test_relu_zeros_in_a_captured_max_pool_are_no_kinks():
    """A captured conv -> relu -> max_pool2d whose first windows are all below 0 (a negative
    bias on the first rows): the ties between their zeros are reached, none is left after
    ``constant_ties``, and the module's own backward passes in float32."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, 6, 6, generator=g, dtype=torch.float64)
    x[..., :3, :] = -4.0 - x[..., :3, :].abs()  # the top rows: relu's 0 side
    w = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3) / 8

    def fn(x):
        return (torch.nn.functional.max_pool2d(torch.relu(x), 2) * w).sum()
    c = sg.capture(fn, (x.clone().requires_grad_(),))
    s = sides.sided(c.model)
    at = c.at(1)
    keys = reached(c.model, at, DD_OPS, ["float32"], sg.VerifyConfig().tolerance)
    ties = [k for k in keys.rows[0] if s.sites[k.site].selector is not None]
    assert len(ties) >= 3
    assert [k for k in constant_ties(s, keys.rows[0], keys.base[0], {})
            if s.sites[k.site].selector is not None] == []
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=at, backends=("torch_fn",),
                  dtype="float32")
    assert r.ok, r


def test_more_kinks_than_max_keys_are_judged_by_the_base_and_the_enclosure(monkeypatch):
    """Over ``MAX_KEYS`` reached kinks a sample was inconclusive in every entry; now it takes
    the lean way (``sides._lean``: the base, the proven enclosure and a search of ``MAX_KEYS``
    kinks' worth of single changes), with the cap named in its reason: torch's relu (the base,
    every kink on its first side) passes, relu'(0) = 1000 is outside the enclosure and fails."""
    monkeypatch.setattr(sides, "MAX_KEYS", 2)
    at = _at(np.zeros(6))  # six relus at 0 and three pool ties between them: nine kinks
    m, keys = _keys(np.zeros(6))
    assert len(keys.rows[0]) == 9
    hi, lo = np.zeros((1, 7)), np.zeros((1, 7))
    ks, uncertain, why = sides.kink_sides(m, at, keys, DD_OPS, hi, lo)
    info = ks.structure[0]
    assert info.kind == "relaxed" and "more than 2 are not evaluated side by side" in info.reason
    assert not uncertain.any() and not why
    good = sg.verify(m, torch_fn=_torch("max", slope=0.0), at=at)
    assert good.verdict == "pass", good
    bad = sg.verify(m, torch_fn=_torch("max", slope=1000.0), at=at)
    assert bad.verdict == "fail", bad


def test_a_tie_with_a_relu_reached_by_rounding_on_its_zero_side_is_kept():
    """relu(z0 + c0 + d0) = relu(1 - 2^-30 - 1): on its 0 side, but within float32's rounding
    of its kink (float32 rounds 1 - 2^-30 to 1: torch's sum is exactly 0), so it is a kink
    of its own and the pool's tie with relu(-2) = 0 can move d/dz0 (relu on its other side,
    the pool's gradient to it): the tie is kept. Correct code at any side passes - relu'(0) =
    1 with the first entry winning is a real side, d/dz0 = v0, which dropping the tie (the
    base's even split: at most v0 / 2) would turn into a false alarm - and relu'(0) = 2 is
    caught."""
    z, c, d = [1.0, -2.0, 0.5, 0.25, 3.0, 1.0], [-2.0**-30, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 0]
    m, keys = _keys(z, c, d, "float32")
    s = sides.sided(m)
    assert keys.base[0][s.sites[0].atoms[0].selectors[0]].reshape(-1)[0] == 1.0  # the 0 side
    ties = [k for k in keys.rows[0] if s.sites[k.site].selector is not None]
    assert len(ties) == 1 and constant_ties(s, keys.rows[0], keys.base[0], {}) == keys.rows[0]
    at = _at(z, c, d)
    for slope in (0.0, 1.0):
        r = sg.verify(m, torch_fn=_torch("max", slope=slope), at=at, dtype="float32")
        assert r.verdict == "pass", (slope, r)
    bad = sg.verify(m, torch_fn=_torch("max", slope=2.0), at=at, dtype="float32")
    assert bad.verdict == "fail" and any(f.output == "d/dz[0]" for f in bad.failures), bad


def test_order_two_drops_the_hvp_programs_own_constant_ties(monkeypatch):
    """At order 2 the verified program is the HVP model (the forward and its derived
    gradient, whose max backward reads ``Heaviside(x - max)`` maps of its own): its max-pool
    tie between relu zeros is reached, the same proof drops it there (the HVP program's own
    sites, not the first derivative's), and torch's double backward passes."""
    seen = []
    real = sides.constant_ties

    def spy(s, ks, base, cache):
        out = real(s, ks, base, cache)
        seen.append((len(ks), len(out)))
        return out
    monkeypatch.setattr(sides, "constant_ties", spy)
    r = sg.verify(_pool(), torch_fn=_torch("max"), order=2, at=_at(ZERO_TIE))
    assert r.verdict == "pass", r
    assert seen and all(after < before for before, after in seen), seen
