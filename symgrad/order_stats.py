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
_SIGN = 1 << 15  # the upper 16 bits of a key from which its float32 is >= +0.0
_NOT_PLAIN = 0x7F80  # the upper 16 bits of a float32 from which it is inf, NaN or negative


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
        self.plain = True  # every value added finite and >= +0.0 (ULPs): keys from the bits

    def add(self, values: np.ndarray) -> None:
        """Count a chunk's values (any shape; float32 or wider: compared as float32)."""
        self.take(self.counted(values))

    @staticmethod
    def counted(values: np.ndarray) -> tuple[int, int, np.ndarray]:
        """A chunk's counts (NaNs, values, the upper 16 key bits' histogram, whether every
        value is finite and >= +0.0), for ``take``: made apart, on any thread, and taken in
        any order (sums)."""
        v = np.asarray(values, np.float32).reshape(-1)
        upper = np.bincount(v.view(np.uint32) >> np.uint32(16), minlength=_HIGH)
        if not upper[_NOT_PLAIN:].any():  # finite, >= +0.0: the key is the bits | 2^31 (one
            high = np.zeros(_HIGH, np.int64)  # pass: the keys' 8 were most of the summary's)
            high[_SIGN:] = upper[:_SIGN]
            return 0, v.size, high, True
        nan = np.isnan(v)
        n_nan = int(nan.sum())
        if n_nan:
            v = v[~nan]
        return n_nan, v.size, np.bincount((float32_keys(v) >> np.uint32(16)).astype(np.int64),
                                          minlength=_HIGH), False

    def take(self, counts: tuple[int, int, np.ndarray]) -> None:
        """Add a chunk's ``counted`` counts."""
        self.nans += counts[0]
        self.count += counts[1]
        self.high += counts[2]
        self.plain &= counts[3]

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
        return medians([self], lambda _: again())[0]

    def _plan(self) -> tuple | None:
        """The ranks of the middle, their buckets of the upper key bits, the counts below
        those buckets and a histogram of the lower 16 bits of each (None: no selection, the
        value is decided: NaN or no value)."""
        if self.nans or self.count == 0:
            return None
        half = self.count // 2
        ranks = [half] if self.count % 2 else [half - 1, half]
        cum = np.cumsum(self.high)
        buckets = [int(np.searchsorted(cum, r, side="right")) for r in ranks]
        below = [int(cum[b - 1]) if b else 0 for b in buckets]
        return ranks, buckets, below, {b: np.zeros(_HIGH, np.int64) for b in set(buckets)}

    def _picked(self, plan: tuple | None) -> float:
        if plan is None:
            return float("nan") if self.nans else 0.0
        picked = []
        ranks, buckets, below, low = plan
        for r, b, under in zip(ranks, buckets, below):
            k = int(np.searchsorted(np.cumsum(low[b]), r - under, side="right"))
            picked.append(_from_key((b << 16) | k))
        return float(np.mean(np.array(picked, np.float32)))


def medians(parts: list[ChunkMedian], again: Callable[[int], Iterable[np.ndarray]],
            whole: ChunkMedian | None = None) -> list[float]:
    """The medians of several ``ChunkMedian`` (and of ``whole``, the values of all of them
    together, when given: last) from one second pass: ``again(i)`` yields part i's values
    again, each chunk's keys made once for its part's selection and the whole's.

    Arguments:
        parts: the medians, each with its values added; again: i -> part i's values.
        whole: a median of every part's values together (added too), or None.
    Returns:
        Each part's median, then the whole's where given.

    >>> parts = [np.float32([1, 2]), np.float32([7, 5, 9])]
    >>> a, b, w = ChunkMedian(), ChunkMedian(), ChunkMedian()
    >>> for m, v in ((a, parts[0]), (b, parts[1]), (w, np.concatenate(parts))):
    ...     m.add(v)
    >>> medians([a, b], lambda i: parts[i:i + 1], w)
    [1.5, 7.0, 5.0]
    """
    plans = [m._plan() for m in parts]
    top_plan = whole._plan() if whole is not None else None
    for i, plan in enumerate(plans):
        lows = [x[3] for x in (plan, top_plan) if x is not None]
        wanted = sorted({b for low in lows for b in low})
        if not wanted or parts[i].count == 0:
            continue
        for chunk in again(i):
            v = np.asarray(chunk, np.float32).reshape(-1)
            if parts[i].plain:  # (its keys: the bits with the sign bit set)
                keys = v.view(np.uint32)
                top = (keys >> np.uint32(16)) | np.uint32(_SIGN)
            else:
                keys = float32_keys(v[~np.isnan(v)])
                top = keys >> np.uint32(16)
            for b in wanted:
                counts = np.bincount((keys[top == b] & np.uint32(0xFFFF)).astype(np.int64),
                                     minlength=_HIGH)
                for low in lows:
                    if b in low:
                        low[b] += counts
    out = [m._picked(plan) for m, plan in zip(parts, plans)]
    return out + ([whole._picked(top_plan)] if whole is not None else [])
