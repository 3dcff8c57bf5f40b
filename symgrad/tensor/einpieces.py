"""A bound product on one BLAS thread formed in pieces on ``symgrad.parallel``'s pool
(``in_pieces``; ``symgrad.tensor.operands.OneSampleOps.einsum`` asks for it): the bound's
einsums below ``operands.THREADS_FROM`` entries or of at most ``THREAD_K`` terms (GPT-2's
attention scores and their gradients, its MLP products and weight gradients at 1024 tokens)
ran on the walk's own thread, one core, while the large ones went to the pool in row blocks;
those with a batch letter (GPT-2's attention, per head) are now cut on it.

>>> import numpy as np
>>> a, b = np.arange(12.0).reshape(4, 3), np.ones((3, 2))
>>> in_pieces("ik,kj->ij", [a, b], np.einsum) is None  # a small product: formed whole
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..parallel import each
from ..precise import blas_threads

PIECES_FROM = 1 << 20  # output entries above which a product on one BLAS thread is formed in
#   pieces (``in_pieces``): GPT-2's attention scores (12 x 1024 x 1024) and their
#   gradients; not one of ``Operands.rows_pair``'s blocks (``operands.ROW_BLOCK`` entries at
#   most: already on the pool)
PIECE = 1 << 19  # output entries of one piece (4 MiB)


def in_pieces(spec: str, ops: list, einsum: Callable) -> np.ndarray | None:
    """``einsum(spec, *ops)`` of two operands in pieces of its first batch letter (one in
    both operands and the output: GPT-2's heads), on the pool's threads, where numpy's BLAS
    runs on one thread (``operands.gemm_threads``) and the output has more than
    ``PIECES_FROM`` entries: each piece is the same GEMMs of the same batch entries (numpy's
    matmul calls one per entry), cut at fixed places whatever the thread count; the whole is
    laid out in memory as its first piece is (an einsum's transposed output stays
    transposed: a later sum reads it in memory order). A GEMM's own rows are not cut: small
    pieces of them may take other BLAS kernels and round otherwise (4 rows of a 30 x 50
    product, tests/test_parallel.py).

    Arguments:
        spec: the einsum; ops: its two operands; einsum: the plain einsum of a piece.
    Returns:
        the product, or None: formed whole by the caller (fewer entries, BLAS on threads,
        another operand count, a repeated or absent output letter).
    """
    ins, out = spec.split("->")
    subs = ins.split(",")
    if len(ops) != 2 or not out or blas_threads.current() != 1:
        return None
    sizes: dict = {}
    for sub, o in zip(subs, ops):
        if len(sub) != np.ndim(o) or len(set(sub)) != len(sub):
            return None
        for c, k in zip(sub, np.shape(o)):
            sizes[c] = max(sizes.get(c, 1), k)
    shape = tuple(sizes[c] for c in out)
    size = int(np.prod(shape, dtype=np.int64))
    axis = next((k for k, c in enumerate(out)  # a batch letter: each piece the same GEMMs
                 if shape[k] >= 2 and all(c in sub for sub in subs)), None)
    if size <= PIECES_FROM or axis is None:
        return None
    letter, whole = out[axis], shape[axis]
    rows = max(2, PIECE // max(1, size // whole))
    starts = list(range(0, whole, rows))
    if whole - starts[-1] < 2:  # the last piece at least two as well
        starts.pop()
    if len(starts) < 2:
        return None
    cuts = [slice(a, b) for a, b in zip(starts, starts[1:] + [whole])]

    def piece(cut: slice) -> np.ndarray:
        return einsum(spec, *[o[(slice(None),) * sub.index(letter) + (cut,)]
                              if letter in sub and np.shape(o)[sub.index(letter)] > 1 else o
                              for sub, o in zip(subs, ops)])
    first = piece(cuts[0])
    order = sorted(range(len(shape)), key=lambda k: (first.shape[k] > 1, -first.strides[k]))
    got = np.empty([shape[k] for k in order], first.dtype).transpose(np.argsort(order))
    at = (slice(None),) * axis
    got[at + (cuts[0],)] = first
    del first

    def rest(cut: slice) -> None:  # on the pool's threads, each writing its own piece
        got[at + (cut,)] = piece(cut)
    each(rest, cuts[1:])
    return got
