"""The reports' histogram of errors in ULPs (``entries.ulp_counts``) by a table of each value's
bin, looked up from the upper 20 bits of its float32 or float64 pattern: one lookup and one
count per entry instead of a float64 copy, a log10 and numpy's binning (GPT-2 at 163M entries a
backend: the largest share of the summary's pass after the figures themselves). A table entry
holds the bin of every value its bits cover; where they may straddle an edge, the entries are
binned as before (``direct``), so the counts are numpy's, bit for bit.

Why the table is exact: numpy's equal-width binning puts t = log10(max(x, 1e-3)) in the bin i
with edge_i <= t < edge_i+1 (the last bin closed; outside the range: none), exactly as
``np.searchsorted`` of the edges, and so does ``_bins``. The values x that share their upper 20
bits lie within 2^-11 (float32) or 2^-8 (float64) of each other relatively; their computed t lie
between their lowest's and highest's computed t, to within a few units of the last place of t
(a log10 is monotone to within its rounding), so they share the bin of both ends unless an end
is within 1e-12 |edge| of an edge (such tables entries are ``AMBIGUOUS``: binned directly). At
the edge 0 (x = 1) the sign of log10 decides, which any log10 gets right.

>>> import numpy as np
>>> u = np.array([0.0, 1.0, 1.5, 3.1622776601683795, 9.99, 1e25, np.inf, np.nan])
>>> bool((binned(u) == direct(u)).all()) and bool((binned(u.astype(np.float32)) ==
...                                              direct(u.astype(np.float32))).all())
True
"""

from __future__ import annotations

import numpy as np

ULP_BINS = np.arange(-3, 20.5, 0.5)  # log10 of the error in ULPs: the reports' histogram bins
assert np.array_equal(ULP_BINS, np.linspace(ULP_BINS[0], ULP_BINS[-1], len(ULP_BINS))), \
    "ulp_counts bins by equal widths: ULP_BINS must be evenly spaced"
BINS = len(ULP_BINS) - 1
NOT_COUNTED, AMBIGUOUS = BINS, BINS + 1  # table codes beside the bins 0..BINS-1
_BITS = 20  # the upper bits of a value's pattern that index the table
_TABLES: dict = {}


def direct(u: np.ndarray) -> np.ndarray:
    """The histogram of the finite ``u`` over ``ULP_BINS`` of log10(max(u, 1e-3)), as numpy
    bins it (in float64: float32's log10(1e-3) is -3.0000002, below the first bin)."""
    u = u[np.isfinite(u)].astype(np.float64)
    return np.histogram(np.log10(np.maximum(u, 1e-3)), bins=BINS,
                        range=(ULP_BINS[0], ULP_BINS[-1]))[0]


def _bins(x: np.ndarray) -> np.ndarray:
    """Each float64 ``x``'s bin as ``direct`` counts it (``NOT_COUNTED``: not finite, or
    beyond the last edge), and whether its log10 lies within 1e-12 |edge| of a nonzero edge."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t = np.log10(np.maximum(x, 1e-3))
        at = np.searchsorted(ULP_BINS, t, side="right") - 1
        at[t == ULP_BINS[-1]] = BINS - 1
        at[~np.isfinite(x) | (t < ULP_BINS[0]) | (t > ULP_BINS[-1])] = NOT_COUNTED
        near = np.zeros(x.shape, bool)
        for edge in ULP_BINS[ULP_BINS != 0]:
            near |= np.abs(t - edge) < 1e-12 * abs(edge)
    return at, near


def _table(dtype: np.dtype) -> tuple[np.ndarray, int, type]:
    """The lookup table of ``dtype`` (float32 or float64): uint8 code per upper-bits pattern."""
    if dtype not in _TABLES:
        width = dtype.itemsize * 8
        uint = np.uint32 if width == 32 else np.uint64
        shift = width - _BITS
        j = np.arange(1 << _BITS, dtype=uint)
        with np.errstate(invalid="ignore"):  # (the NaN patterns)
            low = (j << uint(shift)).view(dtype).astype(np.float64)
            high = ((j << uint(shift)) | uint((1 << shift) - 1)).view(dtype).astype(np.float64)
        (b_low, n_low), (b_high, n_high) = _bins(low), _bins(high)
        same = np.maximum(low, 1e-3) == np.maximum(high, 1e-3)  # (clamped alike: one value)
        table = np.where(same | ((b_low == b_high) & ~n_low & ~n_high), b_low, AMBIGUOUS)
        _TABLES[dtype] = (table.astype(np.uint8), shift, uint)
    return _TABLES[dtype]


def binned(u: np.ndarray) -> np.ndarray:
    """``direct(u)`` for a float32 or float64 array by the table (any other: ``direct``).

    Arguments:
        u: errors in ULPs, any shape.
    Returns:
        int64 counts, one per bin."""
    u = np.asarray(u)
    if u.dtype not in (np.float32, np.float64):
        return direct(u)
    table, shift, uint = _table(u.dtype)
    flat = np.ascontiguousarray(u).reshape(-1)
    codes = table[flat.view(uint) >> uint(shift)]
    counts = np.bincount(codes, minlength=AMBIGUOUS + 1)
    out = counts[:BINS].astype(np.int64)
    if counts[AMBIGUOUS]:
        out += direct(flat[codes == AMBIGUOUS])
    return out
