"""The Ozaki product's elementwise work as compiled kernels (``symgrad.jit``): each entry in one pass.

``ozaki`` slices each operand tile and sums each output sub-tile's level products in double-double;
in numpy those were 12-13 passes over every operand entry (the K-contiguous copy, the scaling, the
row maximum, then per slice the rounding to its grid, the residual and its TwoSum or FastTwoSum)
and ~20 over every output entry (per level the FastTwoSums of the pair product into hi and lo), each
a pass over memory. The kernels below do the very same IEEE operations in the same order per entry,
one row (one output entry) at a time, so the bits are numpy's (``tests/test_ozaki_kernels.py``
checks them against the numpy it replaced); only the transposing reads and the sums' loops fuse.
Only + - and comparisons, ``frexp`` and ``ldexp`` (exact, or correctly rounded into the subnormal
range, in numpy and numba alike): no transcendental, nothing for FMA contraction to fuse (fastmath
is off besides).

Each kernel has one explicit signature (any layout, read-only inputs), compiled on first use and
then loaded from numba's cache: one compile per machine, not one per operand layout.

>>> import numpy as np
>>> hi = np.array([[[3.0, 2.0**-40]]])
>>> q = np.empty((1, 1, 3 * 2)); r = np.empty((1, 1, 4 * 2))
>>> cut(hi, None, None, 3, 20, q, [0, 2, 4], r, [6, 4, 2], 0)
>>> float(q[0, 0, 0] + q[0, 0, 2] + q[0, 0, 4] + r[0, 0, 6]), float(q[0, 0, 1]), float(r[0, 0, 1])
(3.0, 0.0, 9.094947017729282e-13)
"""

from __future__ import annotations

import math
import threading
from functools import cache

import numpy as np
from numba import types as nt

from ..jit import kernel

_IN3 = nt.Array(nt.float64, 3, "A", readonly=True)
_OUT3 = nt.Array(nt.float64, 3, "A")
_SHIFT = nt.Array(nt.int32, 1, "A", readonly=True)
_OFFS = nt.Array(nt.int64, 1, "A", readonly=True)
_NO_SHIFT = np.zeros(1, np.int32)


_GROUP = 8  # rows read together: a column of B is a row here, strided in memory, and 8 of them
#            share each cache line (one float64 each), so a group reads each line once


def _cut(hi, lo, has_lo, shift, has_shift, n, tau, qcat, qoff, rcat, roff, boff):  # pragma: no cover
    #  (compiled: coverage cannot see inside). A group of rows at a time read (and scaled) into
    #  contiguous buffers, then per row and slice one branch-free loop over them, then its copies out
    bt, rows, kk = hi.shape
    hg = np.empty((_GROUP, kk))  # per row: the running residual's high part (rh), first hi
    lg = np.zeros((_GROUP, kk))  # its low part (rl)
    q = np.empty(kk)
    res = np.empty(kk)
    for b in range(bt):
        for r0 in range(0, rows, _GROUP):
            g = min(_GROUP, rows - r0)
            for k in range(kk):  # the group's rows scaled by 2**shift (``np.ldexp``)
                for j in range(g):
                    x = hi[b, r0 + j, k]
                    hg[j, k] = math.ldexp(x, shift[k]) if has_shift else x
                if has_lo:
                    for j in range(g):
                        x = lo[b, r0 + j, k]
                        lg[j, k] = math.ldexp(x, shift[k]) if has_shift else x
            for j in range(g):
                r = r0 + j
                h = hg[j]
                el = lg[j]
                # m = max(max h, -min h) as numpy's np.maximum of the two reductions: NaN
                # wins, else the largest |h|
                mx = -np.inf
                mn = np.inf
                nan = False
                for k in range(kk):
                    x = h[k]
                    if x != x:
                        nan = True
                    mx = max(mx, x)
                    mn = min(mn, x)
                if boff >= 0:
                    for k in range(kk):
                        rcat[b, r, boff + k] = h[k]
                m = np.nan if nan else max(mx, -mn)
                e = math.frexp(m)[1] if m == m and abs(m) != np.inf else 0  # numpy: 0 (nan, inf)
                for i in range(n):
                    sig = math.ldexp(0.75, e - i * tau + 53 - tau)  # rounds to 2**(e-(i+1)tau)
                    if not has_lo:
                        for k in range(kk):
                            qk = (h[k] + sig) - sig
                            q[k] = qk
                            h[k] = h[k] - qk  # exact
                            res[k] = h[k]
                    elif i == 0:  # TwoSum(rh - q, rl) as ``ozaki``'s passes wrote it
                        for k in range(kk):
                            qk = (h[k] + sig) - sig
                            q[k] = qk
                            d = h[k] - qk
                            sh = d + el[k]
                            t1 = sh - d
                            t2 = d - (sh - t1)
                            e2 = t2 + (el[k] - t1)
                            res[k] = sh + e2
                            h[k] = sh
                            el[k] = e2
                    else:  # FastTwoSum(rh - q, rl), exact here (``ozaki``'s docstring)
                        for k in range(kk):
                            qk = (h[k] + sig) - sig
                            q[k] = qk
                            d = h[k] - qk
                            sh = d + el[k]
                            e2 = el[k] - (sh - d)
                            res[k] = sh + e2
                            h[k] = sh
                            el[k] = e2
                    o = qoff[i]
                    for k in range(kk):
                        qcat[b, r, o + k] = q[k]
                    o = roff[i]
                    if o >= 0:
                        for k in range(kk):
                            rcat[b, r, o + k] = res[k]


def _level_sums(tail, p, dhi, dlo, accumulate):  # pragma: no cover  (compiled)
    n = p.shape[0]
    bt, rows, cols = tail.shape
    for b in range(bt):
        for r in range(rows):
            for c in range(cols):
                hi = tail[b, r, c]
                lo = 0.0
                for level in range(n - 1, -1, -1):  # smallest exact products first
                    pv = p[level, b, r, c]
                    t1 = hi + pv  # FastTwoSum(p, hi) = (t1, hi - (t1 - p)), exact
                    z = t1 - pv
                    if level == n - 1:  # lo was +0: lo = 0 + e (a -0 as +0)
                        lo = (hi - z) + 0.0
                        hi = t1 + lo
                        continue
                    lo = lo + (hi - z)
                    hi = t1 + lo  # FastTwoSum(t1, lo)
                    lo = lo - (hi - t1)
                if accumulate:  # dd.add(dest, (hi, lo)), ``_finish`` included
                    dh = dhi[b, r, c]
                    dl = dlo[b, r, c]
                    s1 = dh + hi
                    bb = s1 - dh
                    s2 = (dh - (s1 - bb)) + (hi - bb)
                    plain = s1
                    u1 = dl + lo
                    bb = u1 - dl
                    u2 = (dl - (u1 - bb)) + (lo - bb)
                    s2 = s2 + u1
                    s = s1 + s2
                    s2 = s2 - (s - s1)
                    s1 = s
                    s2 = s2 + u2
                    s = s1 + s2
                    s2 = s2 - (s - s1)
                    s1 = s
                    if abs(plain) != np.inf and plain == plain and abs(s1) != np.inf \
                            and s1 == s1:
                        hi, lo = s1, s2
                    else:
                        hi, lo = plain, 0.0
                dhi[b, r, c] = hi
                dlo[b, r, c] = lo


_LOADING = threading.Lock()  # the pool's threads ask at once: one compiles (or loads), once


def _compiled(name: str):
    """The kernel ``name``, compiled (or loaded from the cache) on first use."""
    with _LOADING:
        return _load(name)


@cache
def _load(name: str):
    if name == "cut":
        sig = nt.void(_IN3, _IN3, nt.boolean, _SHIFT, nt.boolean, nt.int64, nt.int64, _OUT3,
                      _OFFS, _OUT3, _OFFS, nt.int64)
        return kernel(signature_or_function=sig)(_cut)
    sig = nt.void(nt.Array(nt.float64, 3, "C", readonly=True),
                  nt.Array(nt.float64, 4, "C", readonly=True), _OUT3, _OUT3, nt.boolean)
    return kernel(signature_or_function=sig)(_level_sums)


def cut(hi: np.ndarray, lo: np.ndarray | None, shift: np.ndarray | None, n: int, tau: int,
        qcat: np.ndarray, qoff: list[int], rcat: np.ndarray, roff: list[int], boff: int) -> None:
    """Slice the rows of hi + lo (shape (Bt, R, K), cut along K) as ``ozaki``'s docstring says.

    Arguments:
        hi, lo: the operand's rows (any layout; lo None: zero, float64 data).
        shift: per K entry, the exponent the row is scaled by first (``ldexp``; None: none).
        n: the number of slices; tau: bits per slice.
        qcat: (Bt, R, *) where slice i goes to columns ``qoff[i]:qoff[i] + K``.
        rcat: (Bt, R, *) where the residual after slice i, rounded to float64, goes to columns
            ``roff[i]:...`` (-1: not kept); the scaled hi to ``boff:...`` (-1: not kept).
    Returns:
        None (qcat and rcat written).
    """
    _compiled("cut")(hi, hi if lo is None else lo, lo is not None,
                     _NO_SHIFT if shift is None else shift.astype(np.int32, copy=False),
                     shift is not None, n, tau, qcat, np.asarray(qoff, np.int64), rcat,
                     np.asarray(roff, np.int64), boff)


def level_sums(tail: np.ndarray, p: np.ndarray, dest_hi: np.ndarray, dest_lo: np.ndarray,
               accumulate: bool) -> None:
    """The DD sum of an output sub-tile's rounded product and its exact levels, as ``ozaki._tile``.

    Arguments:
        tail: the rounded GEMM (Bt, R, C); p: the exact level sums (S, Bt, R, C), level l at p[l].
        dest_hi, dest_lo: where the sum goes (views of the result); accumulate: added to them
            (``dd.add``) instead.
    Returns:
        None (dest written).

    >>> import numpy as np
    >>> hi, lo = np.zeros((1, 1, 1)), np.zeros((1, 1, 1))
    >>> level_sums(np.full((1, 1, 1), 2.0**-60), np.ones((2, 1, 1, 1)), hi, lo, False)
    >>> float(hi[0, 0, 0]), float(lo[0, 0, 0]) == 2.0**-60
    (2.0, True)
    """
    _compiled("level_sums")(tail, p, dest_hi, dest_lo, accumulate)
