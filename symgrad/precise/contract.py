"""einsum on any array table, reduced to batched matrix products (Bt, M, K) @ (Bt, K, N).

Shared by the DD and ARB tables: the table supplies the exact structural operations (transpose,
reshape, diagonal), its accurate `sum` and its `matmul3`. Steps per operand: take diagonals of
repeated letters, sum letters used nowhere else; then operands are folded left to right, each
pair as one batched product (batch letters shared and kept, contracted letters shared and not
needed later); finally the remaining letters are summed and permuted into the output order.

Example:
    >>> import numpy as np
    >>> from symgrad.precise import DD_OPS
    >>> a = DD_OPS.asarray(np.arange(6.0).reshape(2, 3)); b = DD_OPS.asarray(np.ones((3, 2)))
    >>> DD_OPS.to_float64(DD_OPS.einsum("ij,jk->ik", a, b))[0].tolist()
    [[3.0, 3.0], [12.0, 12.0]]
"""

from __future__ import annotations

from math import prod
from typing import Any, Sequence

from ..errors import SymgradError


def parse(spec: str, n_operands: int, ndims: Sequence[int]) -> tuple[list[str], str]:
    """Split and validate an einsum spec ('ij,jk->ik'; implicit output: letters used once, sorted)."""
    s = spec.replace(" ", "")
    if "." in s:
        raise SymgradError(f"einsum {spec!r}: '...' is not supported; name every axis with a letter")
    if "->" in s:
        ins, out = s.split("->")
    else:
        ins = s
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = ins.split(",")
    if len(terms) != n_operands:
        raise SymgradError(f"einsum {spec!r}: {len(terms)} operand spec(s) for {n_operands} operand(s)")
    for i, (t, nd) in enumerate(zip(terms, ndims)):
        if len(t) != nd or not t.isalpha():
            raise SymgradError(f"einsum {spec!r}: operand {i} has {nd} axes but spec {t!r}")
    if len(set(out)) != len(out) or not set(out) <= set("".join(terms)):
        raise SymgradError(f"einsum {spec!r}: output {out!r} must use distinct letters of the inputs")
    return terms, out


def einsum(table: Any, spec: str, operands: Sequence[Any]) -> Any:
    """einsum(spec, *operands) on `table` (see module docstring)."""
    shapes = [table.shape(x) for x in operands]
    terms, out = parse(spec, len(operands), [len(s) for s in shapes])
    sizes: dict[str, int] = {}
    for t, shp in zip(terms, shapes):
        for c, n in zip(t, shp):
            if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                raise SymgradError(f"einsum {spec!r}: axis {c!r} has sizes {sizes[c]} and {n}")
    items = []
    for i, (x, t) in enumerate(zip(operands, terms)):
        x, t = _diagonal(table, x, t)
        x = table.broadcast_to(x, tuple(sizes[c] for c in t))
        others = set(out).union(*[set(u) for j, u in enumerate(terms) if j != i])
        x, t = _sum_letters(table, x, t, [c for c in t if c not in others])
        items.append((x, t))
    x, t = items[0]
    for j in range(1, len(items)):
        y, u = items[j]
        later = set(out).union(*[set(v) for _, v in items[j + 1:]])
        x, t = _pair(table, x, t, y, u, later, sizes)
    x, t = _sum_letters(table, x, t, [c for c in t if c not in out])
    return table.transpose(x, tuple(t.index(c) for c in out))


def _diagonal(table, x, t: str):
    if len(set(t)) == len(t):
        return x, t
    u = "".join(dict.fromkeys(t))
    return table.diagonal(x, t, u), u


def _sum_letters(table, x, t: str, letters):
    if not letters:
        return x, t
    axes = tuple(t.index(c) for c in letters)
    return table.sum(x, axis=axes), "".join(c for c in t if c not in letters)


def _pair(table, x, t: str, y, u: str, later: set, sizes: dict):
    batch = [c for c in t if c in u and c in later]
    contr = [c for c in t if c in u and c not in later]
    left = [c for c in t if c not in u]
    right = [c for c in u if c not in t]
    n = lambda cs: prod(sizes[c] for c in cs)  # noqa: E731
    a = table.reshape(table.transpose(x, tuple(t.index(c) for c in batch + left + contr)),
                      (n(batch), n(left), n(contr)))
    b = table.reshape(table.transpose(y, tuple(u.index(c) for c in batch + contr + right)),
                      (n(batch), n(contr), n(right)))
    c = table.matmul3(a, b)
    letters = batch + left + right
    return table.reshape(c, tuple(sizes[c_] for c_ in letters)), "".join(letters)
