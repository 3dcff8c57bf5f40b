"""The 0/1-selector fast path of DD products, and the same for walks stacked on the batch axis.

A plain ``sg.Model`` becomes a tensor program that picks and spreads entries with one-hot
constants (``symgrad.tensor.front``): a product (Bt, M, K) @ (Bt, K, N) whose one factor only
selects is one entry of the other factor or 0, exactly (``select``). The kinks' sides run
several walks of one sample stacked on the batch axis (``interpret.evaluate_walks``); each
walk's product must be the one a walk alone computes, and whether a factor selects is decided
on the whole batch: ``apart`` decides it walk by walk (the same checks on each walk's part),
takes one pass where every walk decides alike, else multiplies each walk alone.

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> x, hot = DD(np.array([[[2.0, 3.0]]])), DD(np.array([[[0.0], [1.0]]]))
    >>> float(select(x, hot).hi[0, 0, 0])
    3.0
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SymgradError
from .dd import DD, two_sum


def selector(x: DD, axis: int) -> np.ndarray | None:
    """Where ``x`` (Bt, ., .) only selects along ``axis`` (its K axis): exact 0 / 1 entries with
    at most one 1 per line along K, the K index of each line's 1 (-1: none); else None. A
    look at its first entries turns a dense factor away before any full pass."""
    h = x.hi
    head = h.flat[:64]  # the first entries in C order, as reshape(-1)[:64], without the whole
    #                     copy reshape makes of a transposed operand (GPT-2's weights: ~0.9 CPU s)
    if h.size == 0 or not np.all((head == 0) | (head == 1)):
        return None
    if not (x.lo_is_zero_view or not np.any(x.lo)) or not np.all((h == 0) | (h == 1)):
        return None
    count = h.sum(axis=axis)
    if np.any(count > 1):
        return None
    return np.where(count > 0, np.argmax(h, axis=axis), -1)


_SIDES = ((1, 1), (0, 2))  # (the selecting factor: b, a; its K axis), in the order tried


def select(a: DD, b: DD) -> DD | None:
    """The product (Bt, M, K) @ (Bt, K, N) when one factor only selects (``selector``: the
    one-hot picks and spreads of a model built from scalar steps) and the other is finite:
    each entry is one entry of the other factor or 0, exactly as every sum of exact products
    by 0 and 1 (``dd_matmul`` is exact there too), as a canonical (hi, lo) pair. None: not such
    a product."""
    for which, k_axis in _SIDES:
        got = _take(a, b, which, k_axis)
        if got is not None:
            return got
    return None


def _take(a: DD, b: DD, which: int, k_axis: int) -> DD | None:
    """``select`` with factor ``which`` (1: b, 0: a) as the selector, or None."""
    sel, other = (b, a) if which else (a, b)
    at = selector(sel, k_axis)
    if at is None or not (np.isfinite(other.hi).all() and np.isfinite(other.lo).all()):
        return None
    idx = np.maximum(at, 0)
    if k_axis == 1:  # b selects: c[t, i, j] = a[t, i, at[t, j]]
        where_, take = (at >= 0)[:, None, :], (lambda v: np.take_along_axis(
            v, np.broadcast_to(idx[:, None, :], (v.shape[0], v.shape[1], idx.shape[1])), 2))
    else:  # a selects: c[t, i, j] = b[t, at[t, i], j]
        where_, take = (at >= 0)[:, :, None], (lambda v: np.take_along_axis(
            v, np.broadcast_to(idx[:, :, None], (v.shape[0], idx.shape[1], v.shape[2])), 1))
    hi, lo = two_sum(np.where(where_, take(other.hi), 0.0),  # the canonical pair, as a
                     np.where(where_, take(other.lo), 0.0))  # DD sum leaves it
    return DD(hi, lo)


def _selects(a: DD, b: DD, which: int, k_axis: int, walks: int) -> np.ndarray:
    """Per walk (the batch's ``walks`` equal parts, walk-major) whether ``_take`` of that walk's
    part alone with these sides would select: ``selector``'s and the finiteness checks, each
    over one walk's part."""
    sel, other = (b, a) if which else (a, b)
    h = sel.hi
    if h.size == 0:
        return np.zeros(walks, bool)
    per = lambda v: v.reshape(walks, -1)  # noqa: E731 - a walk's part of the batch, flat
    ok = per((h == 0) | (h == 1)).all(axis=1)
    if not sel.lo_is_zero_view:
        ok &= ~per(sel.lo != 0).any(axis=1)
    ok &= per(h.sum(axis=k_axis) <= 1).all(axis=1)
    ok &= per(np.isfinite(other.hi)).all(axis=1) & per(np.isfinite(other.lo)).all(axis=1)
    return ok


def apart(a: DD, b: DD, walks: int, alone: Callable[[DD, DD], DD]) -> DD:
    """The product (Bt, M, K) @ (Bt, K, N) of ``walks`` walks stacked walk-major on Bt, each
    walk's part as ``alone`` (the table's product of one walk: ``select``, else Ozaki's)
    computes it alone: where every walk selects with the same factor, one ``_take`` of the
    whole batch (each entry is its own line's pick, whatever the batch); otherwise each walk's
    part through ``alone``.

    >>> import numpy as np
    >>> x = DD(np.array([[[2.0, 3.0]], [[5.0, 7.0]]]))
    >>> hot = DD(np.array([[[0.0], [1.0]], [[1.0], [0.0]]]))
    >>> apart(x, hot, 2, select).hi.ravel().tolist()
    [3.0, 5.0]
    """
    bt = a.shape[0]
    if walks < 1 or bt % walks or b.shape[0] != bt:
        raise SymgradError(f"a product of {walks} stacked walks needs a batch of whole walks, "
                           f"not {a.shape} @ {b.shape}")
    for which, k_axis in _SIDES:  # the first side a walk alone would take, if all take it
        ok = _selects(a, b, which, k_axis, walks)
        got = _take(a, b, which, k_axis) if ok.all() else None
        if got is not None:
            return got
        if ok.any():  # some walks select with this factor and some do not: walk by walk
            break
    per = bt // walks
    parts = [alone(a[i:i + per], b[i:i + per]) for i in range(0, bt, per)]
    return DD(np.concatenate([c.hi for c in parts]), np.concatenate([c.lo for c in parts]))
