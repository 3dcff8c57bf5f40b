"""One-thread BLAS for small double-double products (symgrad.precise.blas_threads): the
thread count is back afterwards (also after an exception), and a product is as exact on one
thread as on all of them (the Ozaki levels are exact integer GEMMs)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from symgrad.precise.blas_threads import _found, one_thread
from symgrad.precise.dd import DD
from symgrad.precise.ozaki import OzakiConfig, dd_matmul


def _counts() -> list[int]:
    return [g() for g, _ in _found()]


def test_one_thread_inside_and_restored_after():
    if not _found():
        pytest.skip("no OpenBLAS loaded by numpy here (one_thread does nothing)")
    before = _counts()
    with one_thread():
        assert _counts() == [1] * len(before)
        with one_thread():  # nested
            assert _counts() == [1] * len(before)
        assert _counts() == [1] * len(before)
    assert _counts() == before
    with pytest.raises(RuntimeError):
        with one_thread():
            raise RuntimeError("planted")
    assert _counts() == before


def _exact(a: DD, b: DD) -> np.ndarray:
    fa = [[Fraction(float(h)) + Fraction(float(lo)) for h, lo in zip(rh, rl)]
          for rh, rl in zip(a.hi[0], a.lo[0])]
    fb = [[Fraction(float(h)) + Fraction(float(lo)) for h, lo in zip(rh, rl)]
          for rh, rl in zip(b.hi[0], b.lo[0])]
    return np.array([[sum(fa[i][k] * fb[k][j] for k in range(len(fb)))
                      for j in range(len(fb[0]))] for i in range(len(fa))], dtype=object)


@pytest.mark.parametrize("below", [0, 1 << 60])  # all threads / one thread
def test_product_is_double_double_exact_on_either_thread_count(below):
    rng = np.random.default_rng(7)
    m, k, n = 5, 40, 6
    a = DD(rng.standard_normal((1, m, k)), rng.standard_normal((1, m, k)) * 2.0**-60)
    b = DD(rng.standard_normal((1, k, n)), rng.standard_normal((1, k, n)) * 2.0**-60)
    c = dd_matmul(a, b, OzakiConfig(one_thread_below=below))
    exact = _exact(a, b)
    scale = np.abs(a.hi[0]) @ np.abs(b.hi[0])
    for i in range(m):
        for j in range(n):
            got = Fraction(float(c.hi[0, i, j])) + Fraction(float(c.lo[0, i, j]))
            assert abs(float(got - exact[i, j])) <= 1e-30 * scale[i, j], (i, j)
    planted = DD(c.hi, c.lo + 1e-28 * scale[None])  # an error the check must see
    got = Fraction(float(planted.hi[0, 0, 0])) + Fraction(float(planted.lo[0, 0, 0]))
    assert abs(float(got - exact[0, 0])) > 1e-30 * scale[0, 0]
