"""The bound's elementwise chains fused into one pass (numba kernels, ``symgrad.jit``), each
with the bits of the numpy steps it replaces.

- ``live(x)``: ``np.any(x)`` of a float64 array, stopping at its first nonzero entry, and over
  one entry of each broadcast (stride-0) axis: the walk asks whether an operand's E or sigma
  is zero once per rule and node (a leaf's E is a whole-shape broadcast 0: GPT-2's head,
  38.6M entries read for each ask), while a formed E is nonzero from its first entry on.
- ``einsum_total``: a GEMM's E or sigma from its products, ``a A + R_1 + R_2`` in the order
  ``symgrad.tensor.bound``'s rules add them (``operands.times``, ``operands.plus``; a sigma
  term R_i = sqrt(Q_i) of its quadrature, ``quadrature.root_or_linear``): one pass over the
  output instead of 3 (E) or 9 (sigma: a root, a comparison and its ``np.any`` per term).
  Each step is an IEEE * + sqrt with the operands in numpy's order, so every entry keeps its
  bits; the output is laid out as the contraction is (a later sum reads it in memory order).
  Where a quadrature falls below ``quadrature.LOW`` (its squares underflowed), or the
  arrays are not all laid out alike, None: the rule's numpy steps form it.
- ``map_pair``: a map block's E and sigma from its stacked running bound (``mapbound``'s
  ``both``): the worst case plus torch's form, and the sigma terms' ``quadrature.hypot`` plus
  the own roundings, NaN as inf, in one pass.

>>> import numpy as np
>>> live(np.zeros((3, 4))), live(np.array([0.0, -0.0, np.nan]))
(False, True)
>>> A = np.ones(1 << 16)
>>> einsum_total(A, 2.0, [A, A], None, 0.0)[:2].tolist()  # 2 A + R_1 + R_2
[4.0, 4.0]
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import kernel
from ..parallel import each
from .quadrature import LOW, SCALE, UNSCALE

PIECE = 1 << 18  # output entries of one piece on the pool's threads (2 MiB of each array)
FUSE_FROM = 1 << 16  # output entries from which ``einsum_total`` fuses (below: numpy's)


@kernel
def _any_nonzero(a):  # pragma: no cover - compiled
    for i in range(a.size):
        if a[i] != 0.0:  # NaN != 0: True, as np.any
            return True
    return False


def live(x) -> bool:
    """Whether any entry of ``x`` is nonzero (NaN counts), as ``bool(np.any(x))``.

    Arguments:
        x: an array or a scalar.
    Returns:
        the same answer as ``np.any``; a float64 array is read up to its first nonzero entry,
        each broadcast axis at one entry.

    >>> live(np.broadcast_to(np.zeros(()), (2, 3))), live(np.eye(2)[:, ::-1])
    (False, True)
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64 or x.size == 0:
        return bool(np.any(x))
    x = x[tuple(slice(0, 1) if s == 0 else slice(None) for s in x.strides)]
    flat = _flat(x) if x.size >= FUSE_FROM else None  # a small one: numpy's (and no kernel
    return bool(np.any(x)) if flat is None else bool(_any_nonzero(flat))  # in a small run)


def _flat(x: np.ndarray) -> np.ndarray | None:
    """``x``'s entries in memory order as a 1-d view, or None (not one contiguous run)."""
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        return None
    flat = x.ravel(order="K")
    return flat if np.shares_memory(flat, x) or x.size <= 1 else None


@kernel
def _two(A, a, sa, R0, R1, quad, out):  # pragma: no cover - compiled
    # one piece, every array its slice: ``range(out.size)`` (numba proves the index
    # nonnegative; a loop from an offset keeps wraparound checks and does not vectorize);
    # straight loops LLVM vectorizes: an underflowed quadrature is flagged, not left early
    low = False
    if quad and sa == 0:
        a0 = a[0]
        for i in range(out.size):
            q0, q1 = R0[i], R1[i]
            low |= (q0 < LOW) | (q1 < LOW)
            out[i] = (A[i] * a0 + math.sqrt(q0)) + math.sqrt(q1)
    elif quad:
        for i in range(out.size):
            q0, q1 = R0[i], R1[i]
            low |= (q0 < LOW) | (q1 < LOW)
            out[i] = (A[i] * a[i] + math.sqrt(q0)) + math.sqrt(q1)
    elif sa == 0:
        a0 = a[0]
        for i in range(out.size):
            out[i] = (A[i] * a0 + R0[i]) + R1[i]
    else:
        for i in range(out.size):
            out[i] = (A[i] * a[i] + R0[i]) + R1[i]
    return not low


def fuses(A, ones: list, b) -> bool:
    """Whether ``einsum_total`` may take an einsum: its contraction ``A`` added (not None),
    two live terms (``ones``: their operands), no |v| term (``b`` 0), ``FUSE_FROM`` entries;
    the rule forms its terms for it then, else one at a time (its memory as before).

    >>> fuses(np.ones(1 << 16), [0, 1], 0.0), fuses(np.ones(1 << 16), [0, 1], 2.0)
    (True, False)
    """
    return A is not None and len(ones) == 2 and A.size >= FUSE_FROM and not live(b)


def einsum_total(A, a, terms: list, value, b, *, quads: bool = False) -> np.ndarray | None:
    """``a A + R_1 + R_2`` in one pass (module docstring), or None where the rule's numpy
    steps form it: the case a GEMM's E and sigma take (GPT-2's weight gradients: two operand
    terms, an output no node reads, so no |v| term) from ``FUSE_FROM`` entries; anything else
    (a |v| term, L1 terms beyond n0, other counts of terms: 0.3-0.4 ms for 49k entries
    against numpy's 0.3 in a first kernel that took them all) is numpy's.

    Arguments:
        A: the contraction einsum(|x_1| .. |x_k|), or None where a is 0 (not added).
        a: its factor (a float, or an array of the output's shape).
        terms: the E terms einsum(.. E_i ..), or with ``quads`` the sigma terms' quadratures
            einsum(.. sigma_i^2 ..), each rooted.
        value: the einsum's value v; b: the factor of |v| (a float or an array).
        quads: whether ``terms`` are quadratures (sqrt taken; one below ``LOW``: None).
    Returns:
        a fresh float64 array of the output's shape, laid out as ``A``, or None.

    >>> Q = np.full(1 << 16, 16.0)
    >>> einsum_total(np.ones(1 << 16), 2.0, [Q, Q], None, 0.0, quads=True)[:2].tolist()
    [10.0, 10.0]
    """
    if A is None or len(terms) != 2 or A.size < FUSE_FROM or live(b):
        return None
    shape = A.shape
    arrays = [A, *terms] + ([a] if isinstance(a, np.ndarray) and a.ndim else [])
    if not all(isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == shape
               and _same_layout(x, A) for x in arrays):
        return None
    flats = [_flat(x) for x in arrays]
    out = np.empty_like(A)
    o = _flat(out)
    if any(f is None for f in flats) or o is None or not _same_layout(out, A):
        return None
    Af, R0, R1 = flats[:3]
    av, sa = (flats[3], 1) if len(flats) > 3 else (np.array([float(a)]), 0)
    n = o.size

    def piece(lo: int) -> bool:  # on the pool's threads: each piece its own entries
        at = slice(lo, min(lo + PIECE, n))
        return _two(Af[at], av[at] if sa else av, sa, R0[at], R1[at], quads, o[at])
    return out if all(each(piece, range(0, n, PIECE))) else None


def _same_layout(x: np.ndarray, ref: np.ndarray) -> bool:
    """Whether ``x`` runs its axes in memory as ``ref`` does (size-1 axes aside)."""
    return all(n == 1 or s == r for n, s, r in zip(x.shape, x.strides, ref.strides))


@kernel
def _pair(out, m, ex, sx, E, S):  # pragma: no cover - compiled
    for j in range(E.size):
        own = out[1, j]
        sq = 0.0
        for q in range(2, m + 2):
            d = out[q, j] - own
            sq = sq + d * d
        if sq < LOW:  # the squares underflowed: scaled by 2^600 (``quadrature.hypot``)
            sc = 0.0
            for q in range(2, m + 2):
                d = (out[q, j] - own) * SCALE
                sc = sc + d * d
            r = math.sqrt(sc) * UNSCALE
        else:
            r = math.sqrt(sq)
        x = ex[j * sx]
        s = (r + own) + x
        e = out[0, j] + x
        S[j] = np.inf if s != s else s
        E[j] = np.inf if e != e else e


def map_pair(out, m: int, extra, E: np.ndarray, S: np.ndarray) -> bool:
    """A map block's E and sigma from its stacked bound (``mapbound._in_blocks``) in one
    pass: E = out[0] + extra, sigma = hypot(out[q] - out[1], q = 2 .. m + 1) + out[1] + extra,
    NaN as inf, the steps of ``mapbound`` and ``quadrature.hypot`` entry by entry (4m + 10
    numpy passes over the block before). False (nothing written) where the arrays are not
    laid out for it: the numpy steps then.

    Arguments:
        out: the block's stacked bound, (m + 2, *block): the worst case, none, each sigma_i.
        m: the live sigmas; extra: ``torch_form``'s term (a float or an array of the block).
        E, S: the block's views of the map's E and sigma (written).
    Returns:
        whether it wrote them.

    >>> out = np.array([[1.0], [2.0], [5.0]])  # worst 1, own 2, one sigma: |5 - 2| = 3
    >>> E, S = np.empty(1), np.empty(1)
    >>> map_pair(out, 1, 0.5, E, S), E.tolist(), S.tolist()
    (True, [1.5], [5.5])
    """
    block = E.shape
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.flags.c_contiguous
            and out.shape == (m + 2,) + block and S.shape == block):
        return False
    if isinstance(extra, np.ndarray) and extra.ndim:
        if not (extra.dtype == np.float64 and extra.shape == block
                and extra.flags.c_contiguous):
            return False
        ex, sx = extra.reshape(-1), 1
    else:
        ex, sx = np.array([float(extra)]), 0
    Ef, Sf = _flat(E), _flat(S)
    if Ef is None or Sf is None or not (E.flags.c_contiguous and S.flags.c_contiguous):
        return False
    _pair(out.reshape(m + 2, -1), m, ex, sx, Ef, Sf)
    return True
