"""The flat (N, 1 + K) float64 array a backend writes its value and gradient into, one array
handed from backend to backend inside ``reused_flat``: the torch view's array, once its
comparison is reduced and nothing holds it any more, is the one torch_fn writes into next.

Why: GPT-2's flat array is 1.3 GB at 12 layers. Each backend took a fresh one (glibc maps an
array that large apart and unmaps it when freed), so every backend's gradient copy faulted
1.3 GB of fresh pages in, each zeroed by the kernel (bound64: ``torch_grads.take``'s ``copy_``,
1.6 CPU s for two backends at 1 layer, mostly those faults). A backend writes every entry of
its array (column 0 and every parameter's span, zeros where the loss does not reach it) before
anything reads it, so a reused array gives the same bits.

An array is reused only when this module's reference is the last one (``sys.getrefcount``): a
comparison kept whole (a small model's, one kept for the confirmation), a view of it, or a
tensor made from it keeps it from reuse, and the next backend gets a fresh array.

>>> with reused_flat():
...     a = flat_empty((1, 3)); a[:] = 1.0
...     b = flat_empty((1, 3))  # ``a`` is still held: a fresh one
...     fresh, where = b is not a, b.ctypes.data
...     del a, b  # ``b``'s last reference is the block's
...     fresh, flat_empty((1, 3)).ctypes.data == where  # ``b`` again
(True, True)
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

import numpy as np

_OPEN = threading.local()  # .kept: the open ``reused_flat`` blocks' last arrays (a stack)
_HELD_BY_US = 3  # sys.getrefcount of a kept array nobody else holds: the block's list slot,
#                  the local name in ``flat_empty`` and getrefcount's own argument


@contextlib.contextmanager
def reused_flat() -> Iterator[None]:
    """Inside the block, ``flat_empty`` hands back the last array it gave when nothing else
    holds it any more and the shape asked for is its shape; the block keeps that one array
    (no more) until it ends. Outside it, ``flat_empty`` is ``np.empty``. Nested blocks each keep
    their own.

    Returns:
        A context manager (nothing to bind).

    >>> with reused_flat():
    ...     a = flat_empty((2, 5)); a[:] = 0.0; del a
    ...     flat_empty((2, 5)).shape
    (2, 5)
    """
    stack = _OPEN.__dict__.setdefault("kept", [])
    stack.append([None])
    try:
        yield
    finally:
        stack.pop()


def flat_empty(shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array of ``shape`` whose entries the caller writes before they are read:
    inside ``reused_flat`` the block's last array when it is free and of that shape, else a
    fresh ``np.empty`` (kept by the block in its place).

    Arguments:
        shape: the array's shape, (N, 1 + K) for a backend's value and gradient.
    Returns:
        An uninitialised C-contiguous float64 array.

    >>> flat_empty((2, 3)).shape
    (2, 3)
    """
    shape = tuple(int(s) for s in shape)
    stack = getattr(_OPEN, "kept", None)
    if not stack:
        return np.empty(shape)
    slot = stack[-1]
    last = slot[0]
    if last is not None and last.shape == shape and sys.getrefcount(last) == _HELD_BY_US:
        return last
    del last
    slot[0] = None  # the one kept before is dropped first: never two held here
    slot[0] = out = np.empty(shape)
    return out
