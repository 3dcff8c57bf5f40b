"""The double-double product in chunks (symgrad.precise.ozaki: operand rows / columns sliced,
output sub-tiles summed, ``chunk_elems`` entries at a time) gives the very bits of one whole
pass per tile where the BLAS sums a dot product in one order whatever the operands' shapes, and
within the rounded GEMM's share (2**-100 of |A||B|) where it does not (OpenBLAS's AVX-512
kernels); it is exact to DD accuracy; a planted wrong sub-tile is seen."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np
import pytest

from symgrad.precise.dd import DD
from symgrad.precise.ozaki import OzakiConfig, _sub_tiles, dd_matmul

WHOLE = 1 << 40  # chunk_elems past any tile: one slicing pass and one sub-tile per tile
ROUNDED_SHARE = 2.0**-100  # of (|A||B|)_ij: the one rounded GEMM's terms are <= 2**(-S tau)
#  (2**-60 here) of the entry's scale, and two summation orders of K <= 2**10 of them differ by
#  <= 2 K u of that (<= 2**-102); a wrong sub-tile (the test below plants 1e-27) is far above


@cache
def _blas_sums_in_one_order() -> bool:
    """Whether float64 GEMM gives an entry the same bits when the operands are cut into row or
    column blocks (true of OpenBLAS's AVX2 kernels, false of its AVX-512 ones on some shapes)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 17, 160)), rng.standard_normal((3, 160, 290))
    whole = a @ b
    rows = np.concatenate([a[:, i:i + 5] @ b for i in range(0, 17, 5)], axis=1)
    cols = np.concatenate([a @ b[:, :, j:j + 37] for j in range(0, 290, 37)], axis=2)
    return bool((whole == rows).all() and (whole == cols).all())


def _operands(rng, bt: int, m: int, k: int, n: int, b_lo: bool = False) -> tuple[DD, DD]:
    scale = 2.0 ** rng.integers(-30, 30, (bt, m, 1))  # rows of very different sizes
    a = DD(rng.standard_normal((bt, m, k)) * scale, rng.standard_normal((bt, m, k)) * 2.0**-60)
    b = DD(rng.standard_normal((bt, k, n)),  # float64 (lo a zero view) or double-double
           rng.standard_normal((bt, k, n)) * 2.0**-58 if b_lo else None)
    return a, b


@pytest.mark.parametrize("bt,m,k,n,kb", [(1, 300, 70, 41, 16), (3, 17, 40, 290, 1024),
                                          (1, 5, 1, 600, 1024), (2, 260, 33, 19, 8)])
@pytest.mark.parametrize("chunk", [1, 37, 4096])
@pytest.mark.parametrize("b_lo", [False, True])
def test_chunks_change_no_bit(bt, m, k, n, kb, chunk, b_lo):
    rng = np.random.default_rng(bt * 1000 + m + k + n)
    a, b = _operands(rng, bt, m, k, n, b_lo)
    whole = dd_matmul(a, b, OzakiConfig(k_block=kb, chunk_elems=WHOLE))
    got = dd_matmul(a, b, OzakiConfig(k_block=kb, chunk_elems=chunk))
    scale = np.abs(a.hi) @ np.abs(b.hi)
    assert (np.abs((got.hi - whole.hi) + (got.lo - whole.lo)) <= ROUNDED_SHARE * scale).all()
    if _blas_sums_in_one_order():  # then not one bit may change
        np.testing.assert_array_equal(got.hi, whole.hi)
        np.testing.assert_array_equal(got.lo, whole.lo)


def test_chunked_product_is_exact_to_dd_accuracy_and_a_planted_error_is_seen():
    rng = np.random.default_rng(11)
    a, b = _operands(rng, 1, 9, 30, 7)
    c = dd_matmul(a, b, OzakiConfig(k_block=8, chunk_elems=5))  # many sub-tiles and K-blocks
    fa = [[Fraction(float(h)) + Fraction(float(lo)) for h, lo in zip(rh, rl)]
          for rh, rl in zip(a.hi[0], a.lo[0])]
    fb = [[Fraction(float(x)) for x in row] for row in b.hi[0]]
    scale = np.abs(a.hi[0]) @ np.abs(b.hi[0])

    def worst(hi: np.ndarray, lo: np.ndarray) -> float:
        return max(abs(float(Fraction(float(hi[i, j])) + Fraction(float(lo[i, j]))
                             - sum(fa[i][t] * fb[t][j] for t in range(30)))) / scale[i, j]
                   for i in range(9) for j in range(7))
    assert worst(c.hi[0], c.lo[0]) <= 1e-30
    lo = c.lo[0].copy()
    lo[4:, 3:] += 1e-27 * scale[4:, 3:]  # one sub-tile's block summed wrong
    assert worst(c.hi[0], lo) > 1e-30


def test_sub_tiles_cover_the_tile_once():
    for bt, mt, nt, chunk in [(1, 50257, 768, 1 << 16), (12, 64, 64, 1 << 16), (1, 3, 5, 1),
                              (2, 600, 7, 100)]:
        seen = np.zeros((mt, nt), int)
        for rs, cs in _sub_tiles(bt, mt, nt, chunk):
            assert rs.stop - rs.start <= 256
            seen[rs, cs] += 1
        assert (seen == 1).all()
