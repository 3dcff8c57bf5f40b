"""Contractions of exact small integers: an einsum that no float computation can round.

A plain ``sg.Model`` with an integer input reads each id with
``einsum("iv,i,v->", onehot(ids), one-hot, 0..V-1)`` (``symgrad.tensor.front``): 0/1 and
small integer operands. The general rounded-ball einsum widens every result by
gamma_(n-1) sum |terms|, so the id becomes a ball around an integer, and a later
``Piecewise((tok[0, 0], Eq(id, 0)), ...)`` cannot decide its branch (a NaN enclosure).

The theorem (why such an einsum is exact in any binary float format with p significand bits,
p = digits + 1, in any evaluation order). Let every operand entry be an integer, held exactly,
and let G = max over output entries of einsum(spec, max(|op|, 1), ...) satisfy G < 2^p.

1. Whatever order a backend uses (pairwise contractions, blocked or pairwise sums, FMA, any
   association), each intermediate it forms is, for some fixed values of its free indices, a
   sum over a set S of index values of a product over a subset F of the factors.
2. Its exact value is an integer (integers are closed under + and *), and its magnitude is at
   most sum_S prod_F |f| <= sum_S prod_F max(|f|, 1) <= sum over the whole index space of the
   output entry it feeds of prod over all factors of max(|f|, 1) <= G: the factors left out
   are each >= 1 and the terms left out are each >= 0 (an intermediate that does not carry an
   output index feeds every output entry; any one bounds it).
3. An integer of magnitude < 2^p is a number of the format (p bits; far below its largest
   finite number for float16/32/64), so by induction over the operations every correctly
   rounded operation receives exact operands and returns its exact result: no rounding
   anywhere, and the computed einsum is the exact one.

G itself is computed here in float64 on nonnegative numbers with factors >= 1: if the exact G
is below 2^p (p <= 53) the same argument makes the computation exact; if it is not, rounding
is monotone, so the first operation whose exact result reaches 2^p returns >= 2^p and every
later sum or product (of terms >= 0, factors >= 1) stays >= 2^p. So a computed G < 2^p proves
the exact G < 2^p.

Example:
    >>> import numpy as np
    >>> from flint import arb
    >>> hot = np.array([[arb(0), arb(1), arb(0)]], dtype=object)   # onehot(id = 1)
    >>> ids = np.array([arb(0), arb(1), arb(2)], dtype=object)     # 0..V-1
    >>> exact_integer_einsum("iv,v->i", [hot, ids], digits=23).tolist()
    [1.00000000000000]
"""

from __future__ import annotations

import numpy as np
from flint import arb

from ..precise.arb_select import stored_entries

_is_int = np.frompyfunc(lambda v: bool(v.is_exact() and v.is_finite() and v.is_integer()), 1, 1)
_mid = np.frompyfunc(lambda v: float(v.mid()), 1, 1)
_ball = np.frompyfunc(lambda f: arb(f), 1, 1)


def _integers(op: np.ndarray) -> np.ndarray | None:
    """The operand as float64 (broadcast as it is), when every entry is an exact integer ball;
    else None. A look at the first entries turns a float operand away cheaply."""
    core = stored_entries(np.asarray(op, dtype=object))
    flat = core.reshape(-1)
    if not all(_is_int(flat[:8])) or not all(_is_int(flat)):
        return None
    return np.broadcast_to(np.asarray(_mid(core), dtype=np.float64).reshape(core.shape),
                           np.shape(op))


def exact_integer_einsum(spec: str, operands: list, *, digits: int) -> np.ndarray | None:
    """The einsum of exact integer balls with radius 0, when no float computation of it in a
    format of ``digits`` + 1 significand bits can round (the module docstring's theorem).

    Arguments:
        spec: the einsum spec ('iv,i,v->').
        operands: object arrays of ``arb``, of the spec's shapes.
        digits: the dtype's stored significand bits (52 for float64, 23 for float32).
    Returns:
        The exact result as an object array of exact ``arb``; None when an operand holds a
        non-integer or inexact ball, or the magnitude bound G reaches 2^(digits + 1).
    """
    floats = []
    for op in operands:
        f = _integers(op)
        if f is None:
            return None
        floats.append(f)
    limit = 2.0 ** (min(digits, 52) + 1)
    with np.errstate(all="ignore"):
        bound = np.asarray(np.einsum(spec, *[np.maximum(np.abs(f), 1.0) for f in floats]))
    if bound.size and not float(bound.max()) < limit:
        return None
    values = np.asarray(np.einsum(spec, *floats))  # exact: G < 2^p <= 2^53 (theorem)
    return np.asarray(_ball(values), dtype=object).reshape(values.shape)



def integer_rows(spec: str, ops: list) -> np.ndarray | None:
    """Over a batch (each operand's and the output's first letter the same, and more than one
    sample): which samples' operands are all exact integer balls, when some are (else None).
    A broadcast operand's entries are read once; a look at each sample's first entry turns
    float rows away cheaply.

    >>> x = np.array([[arb(0), arb(2)], [arb(0.5), arb(1)]], dtype=object)
    >>> hot = np.broadcast_to(np.array([[arb(1), arb(0)]], dtype=object), (2, 2))
    >>> integer_rows("bi,bi->b", [x, hot]).tolist()
    [True, False]
    """
    ins, _, out = spec.partition("->")
    terms = ins.split(",")
    n = np.shape(ops[0])[0] if np.ndim(ops[0]) else 0
    if (n < 2 or not out or any(not t or t[0] != out[0] for t in terms)
            or any(np.shape(o)[0] != n for o in ops)):
        return None
    rows = np.ones(n, bool)
    cores = [stored_entries(np.asarray(o, dtype=object)) for o in ops]
    for c in cores:
        flat = c.reshape(c.shape[0], -1)
        if flat.shape[1]:
            rows &= np.asarray(_is_int(flat[:, 0]), dtype=bool)  # (1 or n,): broadcast
        if not rows.any():
            return None
    for c in cores:
        at = np.flatnonzero(rows) if c.shape[0] == n else np.array([0])
        whole = np.asarray(_is_int(c[at].reshape(len(at), -1)), dtype=bool)
        good = whole.all(axis=1) if whole.size else np.ones(len(at), bool)
        if c.shape[0] == n:
            rows[at] = good
        elif not good[0]:
            return None
        if not rows.any():
            return None
    return rows


def exact_integer_rows(spec: str, operands: list, rows: np.ndarray, *, digits: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``exact_integer_einsum`` of some samples of a batch, each apart (the spec's first letter
    on every operand and the output; those samples' operand entries all exact integer balls):
    each sample's G checked alone, as its own walk does (every intermediate carries the batch
    letter, so it feeds only its own sample's entries: the theorem holds sample by sample).

    Arguments:
        spec, digits: as ``exact_integer_einsum``.
        operands: object arrays of ``arb``, their first axis the batch (broadcast or not).
        rows: the samples (indices on the batch axis) to take.
    Returns:
        (ok, values): per sample of ``rows`` whether its einsum is exact, and those exact
        results (an object array of exact ``arb``, the ``ok`` samples' only).

    >>> hot = np.array([[arb(0), arb(1)], [arb(1), arb(0)]], dtype=object)
    >>> big = np.array([[arb(3), arb(5)], [arb(2 ** 30), arb(7)]], dtype=object)
    >>> ok, values = exact_integer_rows("bi,bi->b", [hot, big], np.array([0, 1]), digits=23)
    >>> ok.tolist(), values.tolist()
    ([True, False], [5.00000000000000])
    """
    floats = []
    for op in operands:
        core = stored_entries(np.asarray(op, dtype=object))  # a broadcast entry read once
        f = np.asarray(_mid(core), dtype=np.float64).reshape(core.shape)
        floats.append(np.broadcast_to(f, np.shape(op))[rows])
    limit = 2.0 ** (min(digits, 52) + 1)
    with np.errstate(all="ignore"):
        bound = np.asarray(np.einsum(spec, *[np.maximum(np.abs(f), 1.0) for f in floats]))
        values = np.asarray(np.einsum(spec, *floats))
    n = values.shape[0]
    ok = bound.reshape(n, -1).max(axis=1, initial=0.0) < limit
    kept = values[ok]
    return ok, np.asarray(_ball(kept), dtype=object).reshape(kept.shape)
