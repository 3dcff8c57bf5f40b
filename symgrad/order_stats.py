"""The exact median of float32 values seen chunk by chunk, without a copy of them all: a radix
selection on the values' order-preserving 32-bit keys, the upper 16 bits counted while the
chunks pass once (``ChunkMedian.add``), the lower 16 bits of the one or two buckets that hold
the middle ranks counted on a second pass (``ChunkMedian.value``). The same number as
``float(np.median(np.concatenate(chunks)))`` on float32 (NaN where any value is NaN, the mean
of the two middle values in float32 for an even count), for the figures of GPT-2-sized results
(``symgrad.measures``: no 0.65 GB float32 copy of every entry's ULPs).

>>> import numpy as np
>>> parts = [np.float32([3, 1, 4]), np.float32([1, 5, 9, 2])]
>>> m = ChunkMedian()
>>> for p in parts:
...     m.add(p)
>>> m.value(lambda: iter(parts)) == float(np.median(np.concatenate(parts)))
True
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

_HIGH = 1 << 16  # buckets of the upper 16 key bits (and of the lower 16)


def float32_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys in the order of the float32 ``values`` (-0.0 taken as +0.0; NaN not
    ordered: the caller counts them apart).

    >>> float32_keys(np.float32([-1.0, -0.0, 0.0, 2.0])).tolist() == sorted(
    ...     float32_keys(np.float32([-1.0, -0.0, 0.0, 2.0])).tolist())
    True
    """
    bits = (np.asarray(values, np.float32).reshape(-1) + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(1 << 31))


def _from_key(key: int) -> np.float32:
    bits = key & 0x7FFFFFFF if key >> 31 else ~key & 0xFFFFFFFF
    return np.array([bits], np.uint32).view(np.float32)[0]


class ChunkMedian:
    """The median of float32 values passed in chunks (``add``); ``value(again)`` finishes it
    with one more pass over the same values (``again()`` yields them again, in any chunking
    and order)."""

    def __init__(self) -> None:
        self.count = 0
        self.nans = 0
        self.high = np.zeros(_HIGH, np.int64)

    def add(self, values: np.ndarray) -> None:
        """Count a chunk's values (any shape; float32 or wider: compared as float32)."""
        v = np.asarray(values, np.float32).reshape(-1)
        nan = np.isnan(v)
        n_nan = int(nan.sum())
        if n_nan:
            v = v[~nan]
        self.nans += n_nan
        self.count += v.size
        self.high += np.bincount((float32_keys(v) >> np.uint32(16)).astype(np.int64),
                                 minlength=_HIGH)

    def value(self, again: Callable[[], Iterable[np.ndarray]]) -> float:
        """The median of every value added (0.0 when none was; NaN when any was NaN).

        Arguments:
            again: returns an iterable of the same values as were added, chunk by chunk.
        Returns:
            ``float(np.median(all values))`` as numpy computes it on float32."""
        if self.nans:
            return float("nan")
        if self.count == 0:
            return 0.0
        half = self.count // 2
        ranks = [half] if self.count % 2 else [half - 1, half]
        cum = np.cumsum(self.high)
        buckets = [int(np.searchsorted(cum, r, side="right")) for r in ranks]
        below = [int(cum[b - 1]) if b else 0 for b in buckets]
        wanted = sorted(set(buckets))
        low = {b: np.zeros(_HIGH, np.int64) for b in wanted}
        for chunk in again():
            v = np.asarray(chunk, np.float32).reshape(-1)
            keys = float32_keys(v[~np.isnan(v)])
            top = keys >> np.uint32(16)
            for b in wanted:
                low[b] += np.bincount((keys[top == b] & np.uint32(0xFFFF)).astype(np.int64),
                                      minlength=_HIGH)
        picked = []
        for r, b, under in zip(ranks, buckets, below):
            k = int(np.searchsorted(np.cumsum(low[b]), r - under, side="right"))
            picked.append(_from_key((b << 16) | k))
        return float(np.mean(np.array(picked, np.float32)))
