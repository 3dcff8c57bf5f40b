"""The independent pieces of a large pass run on a few threads (issue 19: gpt2 at 1024 tokens on
both cores).

numpy lets go of the interpreter lock inside its loops over large arrays and inside BLAS, so the
blocks of a large elementwise pass (the oracle's double-double maps, the bound's map rules) and
the output sub-tiles of an Ozaki product, each already cut to stay in cache, can be computed on
as many threads as there are cores. How a pass is cut never depends on the thread count:
threads only decide who computes which piece, and the pieces come back in their own order
(``each``), so a run's bits are the same on one thread as on several.

``using(threads)`` opens a pool for a block of code (``sg.verify``: ``VerifyConfig.threads``)
and closes it after; the count lives in a context variable, so nothing global changes and a
piece runs in a copy of its caller's context (``numpy.errstate``, the bound's tie band). A
piece that itself asks for ``each`` runs its pieces in line (no pool waits on itself).

Example:
    >>> with using(2):
    ...     each(lambda x: x * x, range(5))
    [0, 1, 4, 9, 16]
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "symgrad_parallel", default=None)
_INSIDE = threading.local()  # set on a pool's threads: a piece's own pieces run in line


_SERIAL = threading.RLock()


def serial(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` run by one thread at a time: for code that sets a process-wide precision
    (mpmath's ``workprec``, flint's ``ctx``) that a piece on another thread would read.

    Arguments:
        fn: the function.
    Returns:
        the same function, behind one lock shared by every ``serial`` function.

    >>> serial(abs)(-2)
    2
    """
    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with _SERIAL:
            return fn(*args, **kwargs)
    return locked


def default_threads() -> int:
    """The thread count a run takes when none is asked for: torch's intra-op threads (by
    default the machine's cores; a process that set ``torch.set_num_threads(1)``, as this
    project's test suite does under pytest-xdist, gets one), or the usable cores without torch.

    Returns:
        a positive int.

    >>> default_threads() >= 1
    True
    """
    torch = sys.modules.get("torch")  # not imported here: read only where already loaded
    if torch is not None:
        return max(1, int(torch.get_num_threads()))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


@contextlib.contextmanager
def using(threads: int) -> Iterator[None]:
    """Inside: ``each`` spreads its pieces over ``threads`` threads (1: in line, no pool). The
    pool's threads end on leaving, also on an exception.

    Arguments:
        threads: the worker threads (>= 1).
    Returns:
        a context manager.

    >>> with using(1):
    ...     each(str, [1, 2])
    ['1', '2']
    """
    if threads <= 1:
        token = _POOL.set(None)
        try:
            yield
        finally:
            _POOL.reset(token)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="symgrad-worker",
                              initializer=_mark_inside)
    token = _POOL.set(pool)
    try:
        yield
    finally:
        _POOL.reset(token)
        pool.shutdown(wait=True, cancel_futures=True)


def _mark_inside() -> None:
    _INSIDE.on = True


def _active_pool() -> ThreadPoolExecutor | None:
    """The pool ``each`` hands pieces to here: None outside ``using`` or on a pool's thread."""
    pool = _POOL.get()
    return None if pool is None or getattr(_INSIDE, "on", False) else pool


def threads_now() -> int:
    """The threads ``each`` uses here (1 outside ``using``, or on a pool's own thread).

    >>> threads_now()
    1
    """
    pool = _active_pool()
    return 1 if pool is None else pool._max_workers


def ordered(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn`` of each item, yielded in the items' order; computed on the pool's threads where
    ``using`` opened one, at most two pieces per thread ahead of the one yielded (memory: a
    few pieces in flight, not the whole pass).

    Arguments:
        fn: the piece's work (each call independent of the others).
        items: the pieces, in order.
    Returns:
        an iterator of the results.

    >>> list(ordered(len, ["a", "bb"]))
    [1, 2]
    """
    pool = _active_pool()
    if pool is None:
        for x in items:
            yield fn(x)
        return
    ahead = 2 * pool._max_workers
    pending: deque = deque()
    try:
        for x in items:
            pending.append(pool.submit(contextvars.copy_context().run, fn, x))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:  # an exception or an abandoned iterator: the rest is not needed
            f.cancel()
        for f in pending:
            if not f.cancelled():
                f.exception()  # wait: a piece still running may write into its caller's arrays


def each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, the pieces spread over the pool's threads (``ordered``).

    Arguments:
        fn: the piece's work; items: the pieces.
    Returns:
        the results, in the items' order.

    >>> each(abs, [-1, 2])
    [1, 2]
    """
    items = list(items)
    if len(items) <= 1:  # one piece: in line (a small product's one sub-tile)
        return [fn(x) for x in items]
    return list(ordered(fn, items))


PIECE = 1 << 20  # entries of one piece of an elementwise pass (``by_pieces``): 8 MiB of float64


def by_pieces(fn: Callable[[tuple], None], out) -> None:
    """``fn(at)`` for the pieces ``at`` (index tuples) of the array ``out``'s outermost axis
    in memory, each of about ``PIECE`` entries, spread over the pool's threads (``each``):
    for an elementwise pass writing ``out``, each piece its own entries, whatever the
    operands' layouts, cut at the same places on any thread count (so the same bits).

    Arguments:
        fn: a piece's work; out: the array written (its shape, strides and size are read).
    Returns:
        None.

    >>> import numpy as np
    >>> out = np.zeros((3, 2))
    >>> by_pieces(lambda at: out.__setitem__(at, 1.0), out)
    >>> float(out.sum())
    6.0
    """
    if out.ndim == 0:
        fn(())
        return
    axis = max(range(out.ndim), key=lambda k: (out.shape[k] > 1, abs(out.strides[k])))
    rows = max(1, PIECE // max(1, out.size // max(1, out.shape[axis])))
    each(fn, [(slice(None),) * axis + (slice(r, r + rows),)
              for r in range(0, out.shape[axis], rows)])
