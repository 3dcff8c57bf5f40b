"""The DD product's FastTwoSums give the bits of the TwoSums they replaced (oracle19).

``ozaki._tile`` adds each exact level by FastTwoSum(p, hi) and ``ozaki.cut`` splits every
residual after the first by FastTwoSum: exact there (the lemma in ``ozaki``'s docstring), so
the pairs are TwoSum's. The references below are the TwoSum versions as they were before;
swapped in, they must give the very same hi and lo.
"""

import numpy as np
import pytest

from symgrad.precise import ozaki
from symgrad.precise.dd import DD, add


def _tile_two_sum(A, Bx, Br, S, kk, work, dest, accumulate):
    shape = (A.shape[0], A.shape[1], Bx.shape[2])
    hi = np.matmul(A, Br)
    lo = np.zeros(shape)
    for level in range(S - 1, -1, -1):
        p = np.matmul(A[:, :, :(level + 1) * kk], Bx[:, (S - 1 - level) * kk:, :])
        s = hi + p
        bb = s - hi
        e = (hi - (s - bb)) + (p - bb)
        lo = lo + e
        hi = s + lo
        lo = lo - (hi - s)
    if accumulate:
        t = add(DD(dest.hi, dest.lo), DD(hi, lo))
        hi, lo = t.hi, t.lo
    dest.hi[...] = hi
    dest.lo[...] = lo


def _cut_two_sum(hi, lo, shift, n, tau, qcat, qoff, rcat, roff, boff):
    kk = hi.shape[2]
    if shift is not None:
        hi = np.ldexp(hi, shift.reshape(1, 1, -1))
        lo = None if lo is None else np.ldexp(lo, shift.reshape(1, 1, -1))
    m = np.maximum(np.max(hi, axis=2, keepdims=True), -np.min(hi, axis=2, keepdims=True))
    _, e = np.frexp(m)
    rh, rl = hi, lo
    for i in range(n):
        sigma = np.ldexp(0.75, e - i * tau + 53 - tau)
        q = (rh + sigma) - sigma
        qcat[:, :, qoff[i]:qoff[i] + kk] = q
        r = rh - q
        if rl is not None:
            s = r + rl
            bb = s - r
            rl = (r - (s - bb)) + (rl - bb)
            r, rh = s + rl, s
        else:
            rh = r
        if roff[i] >= 0:
            rcat[:, :, roff[i]:roff[i] + kk] = r
    if boff >= 0:
        rcat[:, :, boff:boff + kk] = hi


def _operands(case, rng):
    def dd(shape, f64=False):
        h = rng.standard_normal(shape)
        if f64:
            return DD(h)
        lo = h * rng.standard_normal(shape) * 2.0 ** -54
        s = h + lo
        return DD(s, lo - (s - h))
    if case == "dd x dd, 3 K-blocks":
        return dd((2, 40, 2500)), dd((2, 2500, 30))
    if case == "dd x float64":
        return dd((1, 300, 64)), dd((1, 64, 700), f64=True)
    if case == "scaled rows and columns":
        a, b = dd((1, 50, 200)), dd((1, 200, 60))
        return (DD(a.hi * 2.0 ** rng.integers(-300, 300, (1, 50, 1)), a.lo * 0),
                DD(b.hi * 2.0 ** rng.integers(-40, 40, (1, 200, 1)), b.lo * 2.0 ** -1))
    a = dd((1, 20, 30))  # "tiny": grids below the normal range
    return DD(a.hi * 1e-300, a.lo * 1e-300), dd((1, 30, 40))


@pytest.mark.parametrize("case", ["dd x dd, 3 K-blocks", "dd x float64",
                                  "scaled rows and columns", "tiny"])
def test_fast_two_sums_give_the_two_sums_bits(case, monkeypatch):
    a, b = _operands(case, np.random.default_rng(7))
    cfg = ozaki.OzakiConfig(chunk_elems=1 << 12)
    got = ozaki.dd_matmul(a, b, cfg)
    monkeypatch.setattr(ozaki, "_tile", _tile_two_sum)
    monkeypatch.setattr(ozaki, "cut", _cut_two_sum)
    want = ozaki.dd_matmul(a, b, cfg)
    assert got.hi.tobytes() == want.hi.tobytes()
    assert got.lo.tobytes() == want.lo.tobytes()
