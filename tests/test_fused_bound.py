"""The bound's fused kernels (symgrad/tensor/fused.py) bit for bit against the numpy
steps they replace, on data with NaN, inf, signed zeros and subnormals."""

from __future__ import annotations

import numpy as np
import pytest

from symgrad.tensor import fused
from symgrad.tensor.operands import plus, times
from symgrad.tensor.ownround import with_value
from symgrad.tensor.quadrature import LOW, root_or_linear

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -2.5e-310, 1e-300, 3e38,
                    3.4028235677973366e38, -1e39, 1.0 + 2.0**-30])


def _data(rng, shape, *, signed=True, special=True) -> np.ndarray:
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-30, 30, shape))
    if not signed:
        x = np.abs(x)
    if special:
        flat = x.reshape(-1)
        at = rng.choice(flat.size, size=min(flat.size, 3 * SPECIAL.size), replace=False)
        flat[at] = np.resize(SPECIAL if signed else np.abs(SPECIAL), at.size)
    return x


def _bits(x) -> bytes:
    return np.ascontiguousarray(x).tobytes()


def _e_steps(A, a, terms, v, b):
    """``bound._b_einsum``'s numpy steps."""
    with np.errstate(all="ignore"):
        return _e_raw(A, a, terms, v, b)


def _e_raw(A, a, terms, v, b):
    total = times(A.copy(), a if np.ndim(a) == 0 else a.copy()) if A is not None else 0.0
    for t in terms:
        total = plus(total, t)
    return with_value(total, b, v)


def _s_steps(A, a, quads, v, b, linear, n0):
    """``bound._s_einsum``'s numpy steps."""
    with np.errstate(all="ignore"):
        return _s_raw(A, a, quads, v, b, linear, n0)


def _s_raw(A, a, quads, v, b, linear, n0):
    total = times(A.copy(), a if np.ndim(a) == 0 else a.copy()) if A is not None else 0.0
    for q, quad in enumerate(quads):
        quad = root_or_linear(quad.copy(), lambda q=q: linear[q])
        if linear is not None:
            quad = np.maximum(quad, linear[q] / np.sqrt(n0), out=quad)
        total = plus(total, quad)
    return with_value(total, b, v)


@pytest.mark.parametrize("seed", range(4))
def test_live_is_np_any(seed):
    rng = np.random.default_rng(seed)
    x = _data(rng, (5, 7))
    cases = [x, np.zeros((4, 3)), -np.zeros((4, 3)), np.zeros(0), x[:, ::2], x.T,
             np.broadcast_to(np.zeros(()), (3, 50)), np.broadcast_to(x[:1], (4, 7)),
             np.where(x != x, 0.0, 0.0), 0.0, 2.0, np.float64(0), x.astype(np.float32)]
    z = np.zeros((6, 6))
    z[5, 5] = np.nan
    cases += [z, z[:, ::-1], np.zeros((3, 3)) + 5e-324]
    for c in cases:
        assert fused.live(c) is bool(np.any(c)), c


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("order", ["C", "F"])
def test_einsum_total_is_the_rules_steps(seed, order):
    rng = np.random.default_rng(seed)
    shape = (1, 301, 1 + fused.FUSE_FROM // 150)  # > 2 pieces on the pool: 3 * PIECE / 4

    def arr(signed=True):
        return np.asarray(_data(rng, shape, signed=signed), order=order)
    v = arr()
    for a in (1.5, arr(signed=False)):
        A = arr(signed=False)
        terms = [arr(signed=False) for _ in range(2)]
        got = fused.einsum_total(A, a, terms, v, 0.0)
        assert got is not None and got.strides == A.strides  # laid out as the contraction
        assert _bits(got) == _bits(_e_steps(A, a, terms, v, 0.0))
        quads = [arr(signed=False) for _ in range(2)]
        for q in quads:  # no quadrature below LOW: the kernel's path
            np.copyto(q, 1.0, where=q < LOW)
        got = fused.einsum_total(A, a, quads, v, 0.0, quads=True)
        assert got is not None
        assert _bits(got) == _bits(_s_steps(A, a, quads, v, 0.0, None, 1024))


def test_einsum_total_declines_what_numpy_must_form():
    rng = np.random.default_rng(0)
    shape = (4, fused.FUSE_FROM // 4)
    A, v = np.abs(rng.standard_normal(shape)), rng.standard_normal(shape)
    low = np.full(shape, 1.0)
    low[2, 3] = 1e-300  # below LOW: its squares underflowed, re-formed by numpy's path
    assert fused.einsum_total(A, 1.0, [low, low], v, 0.0, quads=True) is None
    assert fused.einsum_total(A, 1.0, [A, np.asfortranarray(A)], v, 0.0) is None  # layouts
    assert fused.einsum_total(A, 1.0, [A, A[:, :3]], v, 0.0) is None  # shapes
    assert fused.einsum_total(A, np.ones((1, shape[1])), [A, A], v, 0.0) is None  # broadcast
    assert fused.einsum_total(None, 1.0, [A, A], v, 0.0) is None  # no contraction added
    assert fused.einsum_total(A, 1.0, [A], v, 0.0) is None  # one term: numpy's
    assert fused.einsum_total(A, 1.0, [A, A], v, 2.0) is None  # a |v| term: numpy's
    small = A[:1, :8]
    assert fused.einsum_total(small, 1.0, [small, small], v, 0.0) is None  # below FUSE_FROM


@pytest.mark.parametrize("seed", range(4))
def test_map_pair_is_the_numpy_steps(seed):
    from symgrad.tensor.mapbound import _quadrature
    rng = np.random.default_rng(seed)
    block = (13, 17)
    for m in (0, 1, 2, 3):
        out = _data(rng, (m + 2,) + block, signed=False)
        out[2:, 0, :5] = out[1, 0, :5] + 1e-170  # differences whose squares underflow
        out[2:, 1, :3] = out[1, 1, :3]  # no difference at all
        for extra in (0.0, 0.25, _data(rng, block, signed=False)):
            E, S = np.empty(block), np.empty(block)
            assert fused.map_pair(out, m, extra, E, S)
            with np.errstate(all="ignore"):
                wE = out[0] + extra
                wS = _quadrature(out[1], (out[q] - out[1] for q in range(2, m + 2))) + extra
            for x in (wE, wS):
                np.copyto(x, np.inf, where=np.isnan(x))
            assert _bits(E) == _bits(wE) and _bits(S) == _bits(wS)
    E = np.empty(block)
    assert not fused.map_pair(np.broadcast_to(out[:1], (m + 2,) + block), m, 0.0, E, E)
    assert not fused.map_pair(out, m, np.ones((1, 17)), E, E)  # a broadcast extra: numpy's
