"""``precise/ozaki_kernels`` gives the bits of the numpy passes it replaced (oracle19b).

The references below are ``ozaki``'s numpy code as it was before the kernels (``_part`` +
``_slices``, and ``_tile``'s level sums), pass for pass. The kernels must match them bit for bit on
random data with NaN, inf, signed zeros and subnormals, and whole products must match with the
references swapped in.
"""

from __future__ import annotations

import numpy as np
import pytest

from symgrad.precise import ozaki
from symgrad.precise.dd import DD, add
from symgrad.precise.ozaki_kernels import cut, level_sums


def _cut_numpy(hi, lo, shift, n, tau, qcat, qoff, rcat, roff, boff):
    """``ozaki._part`` + ``ozaki._slices`` as they were (along the last axis)."""
    kk = hi.shape[2]
    with np.errstate(all="ignore"):
        if shift is None:
            h, l_ = hi.copy(), None if lo is None else lo.copy()
        else:
            sh = shift.reshape(1, 1, -1)
            h, l_ = np.ldexp(hi, sh), None if lo is None else np.ldexp(lo, sh)
        m = np.maximum(np.max(h, axis=2, keepdims=True), -np.min(h, axis=2, keepdims=True))
        _, e = np.frexp(m)
        rh, rl = h, l_
        for i in range(n):
            sigma = np.ldexp(0.75, e - i * tau + 53 - tau)
            q = np.add(rh, sigma)
            np.subtract(q, sigma, out=q)
            qcat[:, :, qoff[i]:qoff[i] + kk] = q
            r = rh - q
            if rl is None:
                rh = r
            elif i == 0:
                s = r + rl
                t1 = s - r
                t2 = s - t1
                t2 = r - t2
                t1 = rl - t1
                el = t2 + t1
                r = s + el
                rh, rl = s, el
            else:
                s = r + rl
                t1 = s - r
                el = rl - t1
                r = s + el
                rh, rl = s, el
            if roff[i] >= 0:
                rcat[:, :, roff[i]:roff[i] + kk] = r
        if boff >= 0:
            rcat[:, :, boff:boff + kk] = h


def _sums_numpy(tail, p, dest_hi, dest_lo, accumulate):
    """``ozaki._tile``'s passes after its GEMMs, as they were."""
    S = p.shape[0]
    with np.errstate(all="ignore"):
        hi, lo = tail.copy(), np.zeros(tail.shape)
        t1, t2 = np.empty(tail.shape), np.empty(tail.shape)
        for level in range(S - 1, -1, -1):
            pl = p[level]
            np.add(hi, pl, out=t1)
            np.subtract(t1, pl, out=t2)
            if level == S - 1:
                np.subtract(hi, t2, out=lo)
                lo += 0.0
                np.add(t1, lo, out=hi)
                continue
            np.subtract(hi, t2, out=t2)
            lo += t2
            np.add(t1, lo, out=hi)
            np.subtract(hi, t1, out=t2)
            np.subtract(lo, t2, out=lo)
        if accumulate:
            t = add(DD(dest_hi, dest_lo), DD(hi, lo))
            hi, lo = t.hi, t.lo
    dest_hi[...] = hi
    dest_lo[...] = lo


def _data(rng, shape, specials=True, dtype_scale=1.0):
    x = rng.standard_normal(shape) * 2.0 ** rng.integers(-60, 60, shape) * dtype_scale
    if specials:
        pick = rng.random(shape)
        x[pick < 0.02] = np.nan
        x[(pick >= 0.02) & (pick < 0.04)] = np.inf
        x[(pick >= 0.04) & (pick < 0.06)] = -np.inf
        x[(pick >= 0.06) & (pick < 0.09)] = -0.0
        x[(pick >= 0.09) & (pick < 0.12)] = 0.0
        x[(pick >= 0.12) & (pick < 0.16)] *= 2.0 ** -1060  # subnormals (and zeros)
    return x


def _same(a, b):
    """The same bits, NaN for NaN: a NaN's sign and payload are no value (IEEE 754 leaves which
    operand's NaN an operation returns open, and compilers swap the operands of a + b)."""
    nan = np.isnan(a)
    assert (nan == np.isnan(b)).all()
    assert np.where(nan, 0.0, a).tobytes() == np.where(nan, 0.0, b).tobytes()


@pytest.mark.parametrize("case", ["specials", "subnormal rows", "finite, shifted",
                                  "zero rows", "no lo"])
@pytest.mark.parametrize("transposed", [False, True])
def test_cut_gives_the_numpy_bits(case, transposed):
    rng = np.random.default_rng(["specials", "subnormal rows", "finite, shifted", "zero rows",
                                 "no lo"].index(case) + 10 * transposed)
    bt, rows, kk, n, tau = 2, 37, 29, 3, 20
    hi = _data(rng, (bt, kk, rows) if transposed else (bt, rows, kk), case == "specials")
    lo = hi * rng.standard_normal(hi.shape) * 2.0 ** -54
    if transposed:
        hi, lo = hi.swapaxes(1, 2), lo.swapaxes(1, 2)  # B's columns: strided rows
    if case == "subnormal rows":
        hi, lo = hi * 2.0 ** -1040, lo * 2.0 ** -1040
    if case == "zero rows":
        hi[:, ::3] = 0.0
        hi[:, 1::3] = -0.0
    shift = rng.integers(-50, 50, kk).astype(np.int32) if case == "finite, shifted" else None
    lo = None if case == "no lo" else lo
    qoff, roff, boff = [2 * kk, kk, 0], [3 * kk, -1, kk], 2 * kk
    outs = []
    for f in (cut, _cut_numpy):
        q, r = np.full((bt, rows, 3 * kk), 7.0), np.full((bt, rows, 4 * kk), 7.0)
        f(hi, lo, shift, n, tau, q, qoff, r, roff, boff)
        outs.append((q, r))
    _same(outs[0][0], outs[1][0])
    _same(outs[0][1], outs[1][1])


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("S", [1, 3])
def test_level_sums_give_the_numpy_bits(accumulate, S):
    rng = np.random.default_rng(3 * S + accumulate)
    shape = (2, 13, 31)
    tail = _data(rng, shape) * 2.0 ** -40
    p = np.stack([_data(rng, shape, specials=level == 0) * 2.0 ** (-20 * level)
                  for level in range(S)])
    start = (_data(rng, shape), _data(rng, shape, specials=False) * 2.0 ** -60)
    outs = []
    for f in (level_sums, _sums_numpy):
        big_hi, big_lo = np.full((2, 20, 40), 5.0), np.full((2, 20, 40), 5.0)
        dh, dl = big_hi[:, 3:16, 4:35], big_lo[:, 3:16, 4:35]  # strided views, as the result's
        dh[...], dl[...] = start
        f(tail, p, dh, dl, accumulate)
        outs.append((big_hi, big_lo))
    _same(outs[0][0], outs[1][0])
    _same(outs[0][1], outs[1][1])


def _tile_numpy(A, Bx, Br, S, kk, work, dest, accumulate):
    tail = np.matmul(A, Br)
    p = np.stack([np.matmul(A[:, :, :(lv + 1) * kk], Bx[:, (S - 1 - lv) * kk:, :])
                  for lv in range(S)])
    _sums_numpy(tail, p, dest.hi, dest.lo, accumulate)


def _dd(rng, shape, f64=False, spread=0):
    h = rng.standard_normal(shape) * 2.0 ** rng.integers(-spread, spread + 1, shape)
    if f64:
        return DD(h)
    lo = h * rng.standard_normal(shape) * 2.0 ** -54
    s = h + lo
    return DD(s, lo - (s - h))


@pytest.mark.parametrize("case", ["dd x dd, 3 K-blocks", "dd x float64, transposed",
                                  "spread, equilibrated", "tiny"])
def test_products_give_the_numpy_bits(case, monkeypatch):
    rng = np.random.default_rng(11)
    if case == "dd x dd, 3 K-blocks":
        a, b = _dd(rng, (2, 40, 2500)), _dd(rng, (2, 2500, 30))
    elif case == "dd x float64, transposed":
        a = _dd(rng, (1, 64, 300))
        a = a.map_arrays(lambda x: x.swapaxes(1, 2))
        b = _dd(rng, (1, 700, 64), f64=True).map_arrays(lambda x: x.swapaxes(1, 2))
    elif case == "spread, equilibrated":
        a, b = _dd(rng, (1, 50, 200), spread=200), _dd(rng, (1, 200, 60), spread=30)
        a = DD(a.hi * 2.0 ** rng.integers(-300, 300, (1, 1, 200)), a.lo)
    else:
        a = _dd(rng, (1, 20, 30))
        a, b = DD(a.hi * 1e-300, a.lo * 1e-300), _dd(rng, (1, 30, 40))
    cfg = ozaki.OzakiConfig(chunk_elems=1 << 12)
    got = ozaki.dd_matmul(a, b, cfg)
    monkeypatch.setattr(ozaki, "cut", _cut_numpy)
    monkeypatch.setattr(ozaki, "_tile", _tile_numpy)
    want = ozaki.dd_matmul(a, b, cfg)
    _same(got.hi, want.hi)
    _same(got.lo, want.lo)


def test_every_entry_of_the_result_and_buffers_is_written(monkeypatch):
    """``dd_matmul``'s result and work buffers are ``np.empty``: filled with NaN instead, the
    product is the same bits (every entry written before it is read; 3 K-blocks, strided B)."""
    rng = np.random.default_rng(5)
    a, b = _dd(rng, (2, 70, 2100)), _dd(rng, (2, 90, 2100)).map_arrays(lambda x: x.swapaxes(1, 2))
    cfg = ozaki.OzakiConfig(chunk_elems=1 << 12)
    want = ozaki.dd_matmul(a, b, cfg)
    empty = np.empty
    monkeypatch.setattr(np, "empty", lambda *s, **k: np.full_like(empty(*s, **k), np.nan))
    got = ozaki.dd_matmul(a, b, cfg)
    _same(got.hi, want.hi)
    _same(got.lo, want.lo)
    assert np.isfinite(got.hi).all()
