"""A bound product on one BLAS thread formed in pieces on ``symgrad.parallel``'s pool
(``in_pieces``; ``symgrad.tensor.operands.OneSampleOps.einsum`` asks for it): the bound's
einsums below ``operands.THREADS_FROM`` entries or of at most ``THREAD_K`` terms (GPT-2's
attention scores and their gradients, its MLP products and weight gradients at 1024 tokens)
ran on the walk's own thread, one core, while the large ones went to the pool in row blocks;
those with a batch letter (GPT-2's attention, per head) are cut on it, and a plain GEMM whose
extents are all multiples of ``ALIGN`` (GPT-2's MLP and projection products and their weight
gradients) in columns of its second operand (``_columns``).

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
GEMM_FROM = 1 << 27  # multiply-adds from which a plain GEMM on one BLAS thread is formed in
#   columns (``_columns``): GPT-2's 1024 x 768 x 768 projection and above, 0.1 s and more
ALIGN = 64  # a plain GEMM is cut only where its M, N and K are multiples of this
WIDTH = 192  # columns of one piece: a multiple of OpenBLAS's x86 column unrolls (8, 24)


def in_pieces(spec: str, ops: list, einsum: Callable) -> np.ndarray | None:
    """``einsum(spec, *ops)`` of two operands in pieces of its first batch letter (one in
    both operands and the output: GPT-2's heads), on the pool's threads, where numpy's BLAS
    runs on one thread (``operands.gemm_threads``) and the output has more than
    ``PIECES_FROM`` entries: each piece is the same GEMMs of the same batch entries (numpy's
    matmul calls one per entry), cut at fixed places whatever the thread count; the whole is
    laid out in memory as its first piece is (an einsum's transposed output stays
    transposed: a later sum reads it in memory order). Without a batch letter, a large GEMM
    with aligned extents in columns (``_columns``); a GEMM's own rows are not cut: pieces of
    them may take other BLAS kernels and round otherwise (4 rows of a 30 x 50 product, 300
    rows of 1024, tests/test_parallel.py).

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
    if axis is None:
        return _columns(spec, ops, einsum, sizes)
    if size <= PIECES_FROM:
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
    return _assembled(shape, axis, cuts, piece)


def _assembled(shape: tuple, axis: int, cuts: list, piece: Callable) -> np.ndarray:
    """The whole of ``shape`` from its pieces along ``axis`` (``piece(cut)`` for each of
    ``cuts``): the first formed here, the rest on the pool's threads, each writing its own
    piece; laid out in memory as the first piece is (its axes of one entry last)."""
    first = piece(cuts[0])
    order = sorted(range(len(shape)), key=lambda k: (first.shape[k] > 1, -first.strides[k]))
    got = np.empty([shape[k] for k in order], first.dtype).transpose(np.argsort(order))
    at = (slice(None),) * axis
    got[at + (cuts[0],)] = first
    del first

    def rest(cut: slice) -> None:
        got[at + (cut,)] = piece(cut)
    each(rest, cuts[1:])
    return got


def _columns(spec: str, ops: list, einsum: Callable, sizes: dict) -> np.ndarray | None:
    """A GEMM with a 2-d second operand (one letter kept, one contracted with the first
    operand, whose other letters all stay: a plain GEMM, or the bound's stacked terms,
    ``operands._stacked``) of at least ``GEMM_FROM`` multiply-adds, in pieces of ``WIDTH``
    columns of the letter the second operand keeps, on the pool's threads; or None (formed
    whole). numpy's einsum calls the GEMM with its operands swapped (``matmul(B', A')``), so
    these columns are OpenBLAS's N: each piece keeps the whole's M and K blocking and its
    column tiles start where the whole's do, and its entries are summed as the whole's are.
    That held bit for bit on every GEMM whose M, N and K are multiples of ``ALIGN`` (GPT-2's
    1024 x 768 x 3072 and alike, tests/test_parallel.py), but not on all others (a remainder
    of rows beside a piece's last columns rounded otherwise, 1419 x 768 x 881): those, and
    the rows (a GEMM's M: 300-row pieces of 1024 rounded otherwise), stay whole.
    """
    ins, out = spec.split("->")
    first_sub, second = ins.split(",")
    if len(second) != 2 or len(set(first_sub)) != len(first_sub) or len(set(out)) != len(out):
        return None
    kept = [c for c in second if c in out and c not in first_sub]
    summed = [c for c in second if c in first_sub and c not in out]
    rows = [c for c in first_sub if c not in summed]
    if (len(kept) != 1 or len(summed) != 1 or set(out) != set(rows) | set(kept)
            or any(sizes[c] < 2 for c in sizes)):
        return None
    letter = kept[0]
    m = int(np.prod([sizes[c] for c in rows], dtype=np.int64))
    n, k = sizes[letter], sizes[summed[0]]
    if m % ALIGN or n % ALIGN or k % ALIGN or n < 2 * WIDTH or m * n * k < GEMM_FROM:
        return None
    axis, at = out.index(letter), second.index(letter)
    cuts = [slice(a, a + WIDTH) for a in range(0, n, WIDTH)]

    def piece(cut: slice) -> np.ndarray:
        return einsum(spec, ops[0], ops[1][(slice(None),) * at + (cut,)])
    return _assembled(tuple(sizes[c] for c in out), axis, cuts, piece)
