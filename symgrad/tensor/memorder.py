"""A map's operands in their memory order: the order of axes every operand runs in, an
operand viewed in that order, and one block of an operand broadcast to the map's shape without
broadcasting it (``symgrad.tensor.mapbound``'s blocked bound reads its operands this way, so a
transposed operand is cut along the axes it is laid out in).

>>> import numpy as np
>>> a = np.zeros((3, 4)).T  # laid out with axis 1 outermost
>>> memory_order([a], (4, 3))
(1, 0)
>>> cut(np.ones((1, 4)), (slice(0, 2), slice(1, 3)), (5, 4)).shape
(1, 2)
"""

from __future__ import annotations

import numpy as np


def strides_of(a) -> list[int]:
    """The strides of ``a``'s axes of more than one entry (none for a scalar)."""
    return [] if np.ndim(a) == 0 else [t for n, t in zip(np.shape(a), np.asarray(a).strides)
                                       if n > 1]


def memory_order(arrays: list, shape: tuple) -> tuple | None:
    """The order of ``shape``'s axes in memory, outermost first, that every array runs its
    axes of more than one entry in (broadcast ones aside): C order where one fits, else the
    order of the first array of ``shape``'s; None where the arrays disagree."""
    nd = len(shape)
    orders = [tuple(range(nd))]
    for a in arrays:
        if np.ndim(a) == nd and np.shape(a) == shape and 0 not in strides_of(a):
            st = np.asarray(a).strides
            orders.append(tuple(sorted(range(nd), key=lambda i: (shape[i] > 1, -abs(st[i])))))
            break
    for order in orders:
        if all(runs_in(a, order, nd) for a in arrays):
            return order
    return None


def runs_in(a, order: tuple, nd: int) -> bool:
    """Whether ``a``'s axes of more than one entry, broadcast ones aside, run in ``order``."""
    if np.ndim(a) == 0:
        return True
    a = np.asarray(a)
    full = (1,) * (nd - a.ndim)
    shape, st = full + a.shape, (0,) * (nd - a.ndim) + a.strides
    seen = [abs(st[i]) for i in order if shape[i] > 1 and st[i] != 0]
    return all(x >= y for x, y in zip(seen, seen[1:]))


def in_order(a, order: tuple, nd: int):
    """``a`` (broadcastable to an ``nd``-axis shape) with its axes in ``order``: a view."""
    if np.ndim(a) == 0:
        return a
    a = np.asarray(a)
    return a.reshape((1,) * (nd - a.ndim) + a.shape).transpose(order)


def cut(a, idx: tuple, shape: tuple):
    """Block ``idx`` of ``a`` broadcast to ``shape``, without broadcasting ``a``: an axis where
    ``a`` has size 1 is kept whole (or dropped where the block drops it)."""
    if np.ndim(a) == 0:
        return a
    a = np.asarray(a)
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    return a[tuple(i if a.shape[d] == shape[d] else 0 if isinstance(i, (int, np.integer))
                   else slice(None) for d, i in enumerate(idx))]
