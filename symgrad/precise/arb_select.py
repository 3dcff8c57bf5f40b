"""The 0/1-selector fast path of ARB einsums: a product whose one factor only picks entries.

A plain ``sg.Model`` becomes a tensor program that picks each entry of a block with
``einsum("i,i->", flat block, constant one-hot)`` (``symgrad.tensor.front``). In ball
arithmetic x * 1 is x (rounded to the precision as any product is), x * 0 is an exact 0 for a
finite x, and adding exact zeros changes nothing, so such a product is the chosen ball itself:
``selection`` finds the chosen entries with float einsums of indices and counts, the same
balls as the general product, without one arb product per term.

Example:
    >>> import numpy as np
    >>> from flint import arb, arb_mat
    >>> x = np.array([[arb(2), arb(3)]], dtype=object)
    >>> hot = np.array([[arb(0), arb(1)]], dtype=object)
    >>> picked, mask, shape = selection("bi,bi->b", [x, hot])
    >>> place(picked, mask, shape).tolist()
    [3.00000000000000]
"""

from __future__ import annotations

import numpy as np
from flint import arb, arb_mat


def _ufunc(f, nin: int = 1):
    return np.frompyfunc(f, nin, 1)


_is01 = _ufunc(lambda v: v.is_exact() and (v.is_zero() or v == 1))
_is1 = _ufunc(lambda v: v == 1)
_finite = _ufunc(lambda v: v.is_finite())


def times_one(values: np.ndarray) -> np.ndarray:
    """Each ball times an exact 1 as the general product computes its one nonzero term: one
    column through ``arb_mat``'s classical product (``arb_dot`` per entry), so the midpoint is
    rounded to the context's precision and the radius bounded exactly as there (``+v`` would
    give a radius a few 2^-30 narrower than ``arb_dot``'s upward-rounded one).

    Arguments:
        values: a 1-D object array of ``arb``.
    Returns:
        The 1-D object array of the products.
    """
    if values.size == 0:
        return np.asarray(values, dtype=object)
    col = arb_mat([[v] for v in values]) * arb_mat([[1]])
    return np.array(col.entries(), dtype=object)


def stored_entries(x: np.ndarray) -> np.ndarray:
    """``x`` without its broadcast axes (stride 0, size > 1 -> size 1): each stored entry once."""
    return x[tuple(slice(0, 1) if st == 0 and n > 1 else slice(None)
                   for st, n in zip(x.strides, x.shape))]


def selection(spec: str, operands, *, finite_results: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Where a two-operand einsum of balls only selects: one operand holds exact 0 / 1 balls
    with at most one 1 among the terms of each output entry, and the other is finite
    everywhere. Each output entry is then x * 1 plus exact zeros (or only exact zeros): the
    chosen entry ``x`` of the other operand, exactly as the general product gives it.

    Arguments:
        spec: the einsum spec ('bi,bi->b').
        operands: two object arrays of ``arb`` of the spec's (equal or broadcast) shapes.
        finite_results: the other operand may hold non-finite balls (an intermediate beyond
            the dtype's range, ``rigorous``'s rounded walk): its 0 * inf terms are NaN in the
            dtype, a non-finite result, so the entry's *finite* results are those of the
            finite terms (the rounded product's own rule, ``rigorous.balls.Rounding.rprod``):
            the chosen ball, or an exact 0 where none is chosen. False (the oracle's exact
            values): a non-finite ball turns the selection away (the general product).
    Returns:
        (picked, mask, shape): the selected entries (unrounded, in output order where
        ``mask``), the output entries that hold one (the others are exact 0), the output
        shape; None when neither operand selects (the general product is needed).
    """
    if len(operands) != 2:
        return None
    for si in (1, 0):
        sel, x = operands[si], operands[1 - si]
        core = stored_entries(sel)
        if core.size == 0 or not all(_is01(core.reshape(-1)[:8])):
            continue  # a look at the first entries turns a dense factor away
        if not all(_is01(core.reshape(-1))):
            continue
        ones = np.broadcast_to(np.asarray(_is1(core), dtype=float), sel.shape)
        pair = [None, None]
        pair[si] = ones
        pair[1 - si] = np.ones(x.shape)
        count = np.asarray(np.einsum(spec, *pair))
        if count.size and count.max() > 1:
            continue
        if not finite_results and not all(_finite(stored_entries(x).reshape(-1))):
            return None  # 0 * inf is NaN in the general product
        pair[1 - si] = np.arange(1, x.size + 1, dtype=float).reshape(x.shape)
        at = np.asarray(np.einsum(spec, *pair)).astype(np.int64)  # 1 + flat index of the chosen entry
        mask = count > 0
        picked = np.asarray(x, dtype=object).reshape(-1)[at[mask] - 1]
        return picked, mask, count.shape
    return None


def place(values: np.ndarray, mask: np.ndarray, shape: tuple, zero=None) -> np.ndarray:
    """An object array of ``shape``: ``values`` (in order) where ``mask``, ``zero`` (default an
    exact 0) elsewhere."""
    out = np.empty(shape, dtype=object)
    out[...] = arb(0) if zero is None else zero
    out[mask] = values
    return out
