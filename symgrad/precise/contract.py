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

from dataclasses import dataclass
from math import prod
from numbers import Integral
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


def axes(axis, ndim: int) -> tuple[int, ...]:
    """The axes the DD and ARB tables' ``sum`` and ``amax`` reduce, sorted, each once: ``axis``
    None (all), an int or a sequence, negative ones from the end; one out of range is refused."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, Integral) else tuple(axis)  # numpy's ints too
    for a in axes:
        if not -ndim <= a < ndim:
            raise SymgradError(f"axis {a} out of range for an array of {ndim} dimensions")
    return tuple(sorted({a % ndim for a in axes}))


@dataclass(frozen=True)
class _Plan:
    """The structural steps of one einsum for given operand shapes (``_make_plan``): computed
    once per (spec, shapes), replayed on any table. Steps that would not change anything
    (an identity permutation, a reshape or broadcast to the same shape) are left out."""

    operands: tuple  # per operand: (diagonal (letters, unique) or None, shape, summed axes)
    pairs: tuple  # per fold: (perm of x, shape of x, perm of y, shape of y, product's shape)
    final_axes: tuple  # axes summed after the last fold
    perm: tuple | None  # the permutation into the output order (None: already in it)


_PLANS: dict = {}


def einsum(table: Any, spec: str, operands: Sequence[Any]) -> Any:
    """einsum(spec, *operands) on `table` (see module docstring)."""
    shapes = tuple(tuple(table.shape(x)) for x in operands)
    plan = _PLANS.get((spec, shapes))
    if plan is None:
        if len(_PLANS) > 4096:  # shapes of many programs: start over rather than grow
            _PLANS.clear()
        plan = _PLANS[(spec, shapes)] = _make_plan(spec, shapes)
    items = []
    for x, shp, (diag, full, axes) in zip(operands, shapes, plan.operands):
        if diag is not None:
            x = table.diagonal(x, *diag)
        if diag is not None or shp != full:
            x = table.broadcast_to(x, full)
        items.append(table.sum(x, axis=axes) if axes else x)
    x = items[0]
    for y, (pa, sa, pb, sb, so) in zip(items[1:], plan.pairs):
        c = table.matmul3(_layout(table, x, pa, sa), _layout(table, y, pb, sb))
        x = table.reshape(c, so)
    if plan.final_axes:
        x = table.sum(x, axis=plan.final_axes)
    return x if plan.perm is None else table.transpose(x, plan.perm)


def _layout(table, x, perm: tuple | None, shape: tuple):
    if perm is not None:
        x = table.transpose(x, perm)
    return x if tuple(table.shape(x)) == shape else table.reshape(x, shape)


def _make_plan(spec: str, shapes: tuple) -> _Plan:
    """The steps of ``einsum`` (module docstring) for operands of ``shapes``."""
    terms, out = parse(spec, len(shapes), [len(s) for s in shapes])
    sizes: dict[str, int] = {}
    for t, shp in zip(terms, shapes):
        for c, n in zip(t, shp):
            if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                raise SymgradError(f"einsum {spec!r}: axis {c!r} has sizes {sizes[c]} and {n}")
    steps, letters = [], []
    for i, t in enumerate(terms):
        diag = None
        if len(set(t)) != len(t):
            u = "".join(dict.fromkeys(t))
            diag, t = (t, u), u
        full = tuple(sizes[c] for c in t)
        others = set(out).union(*[set(u) for j, u in enumerate(terms) if j != i])
        gone = [c for c in t if c not in others]
        steps.append((diag, full, tuple(t.index(c) for c in gone)))
        letters.append("".join(c for c in t if c not in gone))
    pairs = []
    t = letters[0]
    for j in range(1, len(letters)):
        u = letters[j]
        later = set(out).union(*[set(v) for v in letters[j + 1:]])
        batch = [c for c in t if c in u and c in later]
        contr = [c for c in t if c in u and c not in later]
        left = [c for c in t if c not in u]
        right = [c for c in u if c not in t]
        n = lambda cs: prod(sizes[c] for c in cs)  # noqa: E731
        pa = tuple(t.index(c) for c in batch + left + contr)
        pb = tuple(u.index(c) for c in batch + contr + right)
        t = "".join(batch + left + right)
        pairs.append((None if pa == tuple(range(len(pa))) else pa, (n(batch), n(left), n(contr)),
                      None if pb == tuple(range(len(pb))) else pb, (n(batch), n(contr), n(right)),
                      tuple(sizes[c] for c in t)))
    final = tuple(t.index(c) for c in t if c not in out)
    t = "".join(c for c in t if c in out)
    perm = tuple(t.index(c) for c in out)
    return _Plan(tuple(steps), tuple(pairs), final,
                 None if perm == tuple(range(len(perm))) else perm)
