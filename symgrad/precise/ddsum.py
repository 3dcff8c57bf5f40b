"""The double-double table's sum over axes: a pairwise tree of DD additions per output entry,
a large operand reduced in blocks of a kept axis.

Each output entry's tree depends only on the number of terms summed, so summing a block of
kept entries alone gives the same bits as the whole array at once; a block holds its own
transposed copy and tree only (a GPT's logits at 1024 tokens, 1024 x 50257, are 0.8 GB of
double-double per copy, and the first level of the tree adds halves of it).

>>> import numpy as np
>>> from symgrad.precise.dd import DD
>>> x = DD(np.arange(12.0).reshape(3, 4))
>>> dd_sum(x, (1,), False).hi.tolist(), dd_sum(x, (0,), True).hi.tolist()
([6.0, 22.0, 38.0], [[12.0, 15.0, 18.0, 21.0]])
"""

from __future__ import annotations

import numpy as np

from ..parallel import each
from .dd import DD, add

SUM_BLOCK = 1 << 22  # entries of an operand reduced at once: 64 MiB a part


def dd_sum(x: DD, axes: tuple[int, ...], keepdims: bool) -> DD:
    """The sum of ``x`` over ``axes`` (sorted, non-negative, non-empty).

    Arguments:
        x: a DD array.
        axes: the axes summed.
        keepdims: keep them with size 1.
    Returns:
        The DD sum (pairwise tree, error as ``add``'s per level).
    """
    rest = [i for i in range(x.ndim) if i not in axes]
    split = _split_axis(x.shape, rest)
    if split is None:
        return _whole(x, axes, rest, keepdims)
    kept, rows = split
    out_shape = tuple(x.shape[i] for i in rest)
    at = rest.index(kept)  # the kept axis's place in the result
    hi, lo = np.empty(out_shape), np.empty(out_shape)

    def block(r0: int) -> None:  # on ``symgrad.parallel``'s threads: the same blocks, any count
        idx = [slice(None)] * x.ndim
        idx[kept] = slice(r0, min(x.shape[kept], r0 + rows))
        part = _whole(x[tuple(idx)], axes, rest, False)
        dest = [slice(None)] * len(out_shape)
        dest[at] = idx[kept]
        hi[tuple(dest)], lo[tuple(dest)] = part.hi, part.lo
    each(block, range(0, x.shape[kept], rows))
    s = DD(hi, lo)
    return s.map_arrays(lambda v: np.expand_dims(v, axes)) if keepdims else s


def _split_axis(shape: tuple, rest: list) -> tuple[int, int] | None:
    """(kept axis, rows per block) to sum an array of ``shape`` in blocks of about
    ``SUM_BLOCK`` entries, or None: small enough whole, or no kept axis longer than 1."""
    size = int(np.prod(shape))
    if size <= SUM_BLOCK:
        return None
    kept = max(rest, key=lambda i: shape[i], default=None)
    if kept is None or shape[kept] < 2:
        return None
    rows = max(1, SUM_BLOCK // max(1, size // shape[kept]))
    return (kept, rows) if rows < shape[kept] else None


def _whole(x: DD, axes: tuple, rest: list, keepdims: bool) -> DD:
    """The sum at once: the summed axes moved first and flattened, then the pairwise tree."""
    moved = x.map_arrays(lambda v: np.transpose(v, tuple(axes) + tuple(rest)))
    n = int(np.prod([x.shape[i] for i in axes]))
    flat = moved.map_arrays(lambda v: v.reshape((n,) + tuple(x.shape[i] for i in rest)))
    s = _pairwise_sum(flat) if n else DD(np.zeros(tuple(x.shape[i] for i in rest)))
    if keepdims:
        s = s.map_arrays(lambda v: np.expand_dims(v, axes))
    return s


def _pairwise_sum(x: DD) -> DD:
    """Sum over axis 0 by a pairwise tree of DD additions."""
    while x.shape[0] > 1:
        n = x.shape[0]
        h = n // 2
        s = add(x[:h], x[h:2 * h])
        if n % 2:
            s = DD(np.concatenate([s.hi, x.hi[2 * h:]]), np.concatenate([s.lo, x.lo[2 * h:]]))
        x = s
    return x[0] if x.shape[0] == 1 else DD(np.zeros(x.shape[1:]))
