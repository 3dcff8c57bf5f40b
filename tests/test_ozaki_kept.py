"""The oracle's walk runs its DD products on kept work buffers (``precise.ozaki.kept_buffers``):
every product inside the block gives the very bits it gives alone, whatever the products before
it left in the buffers (larger, smaller, other kinds of operands, a buffer over the keep limit),
on one thread and on two; the buffers go when the block ends."""

from __future__ import annotations

import numpy as np
import pytest

from symgrad import parallel
from symgrad.precise import ozaki
from symgrad.precise.dd import DD
from symgrad.precise.ozaki import OzakiConfig, dd_matmul, kept_buffers

SMALL = OzakiConfig(chunk_elems=1 << 10, tile_elems=1 << 14, k_block=96)  # many tiles, K blocks


def _dd(rng, shape, lo: bool = True) -> DD:
    scale = 2.0 ** rng.integers(-20, 20, shape[:-1] + (1,))
    hi = rng.standard_normal(shape) * scale
    return DD(hi, rng.standard_normal(shape) * scale * 2.0**-60 if lo else None)


def _cases(rng) -> list[tuple[DD, DD]]:
    shapes = [(1, 64, 300, 200), (2, 7, 40, 9), (1, 120, 500, 260), (1, 3, 5, 4),
              (3, 33, 97, 65), (1, 64, 300, 200), (2, 7, 40, 9)]  # larger, smaller, again
    return [(_dd(rng, (bt, m, k), lo=i % 2 == 0), _dd(rng, (bt, k, n), lo=i % 3 == 0))
            for i, (bt, m, k, n) in enumerate(shapes)]


def _bits(c: DD) -> tuple[bytes, bytes]:
    return c.hi.tobytes(), c.lo.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_products_in_kept_buffers_have_the_bits_of_fresh_ones(threads, monkeypatch):
    rng = np.random.default_rng(7)
    cases = _cases(rng)
    alone = [_bits(dd_matmul(a, b, SMALL)) for a, b in cases]
    monkeypatch.setattr(ozaki, "KEPT_UP_TO", 5000)  # some buffers over the limit: dropped
    with parallel.using(threads), kept_buffers():
        kept = [_bits(dd_matmul(a, b, SMALL)) for a, b in cases]
        pool = ozaki._KEPT.pools[-1]
        assert pool["shared"].bufs, "the products did not keep their buffers"
        assert all(v.size <= 5000 for v in pool["shared"].bufs.values())
    assert kept == alone
    assert ozaki._KEPT.pools == []  # the block's buffers went with it


def test_a_stale_buffer_would_be_seen():
    """The comparison above can fail: a product whose sliced operands are not all rewritten
    (here one entry of B changed after slicing, standing in for a stale buffer) differs."""
    rng = np.random.default_rng(8)
    a, b = _dd(rng, (1, 16, 50)), _dd(rng, (1, 50, 12))
    b2 = DD(b.hi.copy(), b.lo.copy())
    b2.hi[0, 3, 4] += 2.0**-30 * abs(b2.hi[0, 3, 4])
    assert _bits(dd_matmul(a, b, SMALL)) != _bits(dd_matmul(a, b2, SMALL))
