"""What a captured ATen value becomes while the graph is walked.

- a ``Node`` of the tensor program: anything that depends on a parameter or an input block;
- a concrete ``torch.Tensor`` (*known*): constants, integer inputs, bool buffers and whatever is
  computed from them alone (the walk runs such ops in torch, so any op folds);
- a ``Pred``: a comparison of a node (``x > 0``), consumed by ``where`` as a Piecewise branch;
- a ``Masked``: a node with entries set to -inf by a known mask (``masked_fill(mask, -inf)``),
  consumed by softmax, which leaves those entries out;
- a ``Selection``: the indices ``topk`` picks, as one-hot rows (a piecewise-constant node),
  consumed by ``scatter`` (dense gates of a mixture of experts).

A known float array becomes a ``const`` node when it is exactly representable in float32 (a
mask, a float32 table). A float64 array that is not (a RoPE cos/sin table the forward computes
from ``torch.arange`` in a float64 run) is exact data at the run's dtype: in a float64 capture
it becomes an input block held at its value, as a float64 buffer is (``Held``, collected
while ``holding`` is active); elsewhere it is refused in one line saying which dtype.

``operands`` turns a mix of them into ``map_`` operands (Python numbers become exact sympy
numbers: the binary value torch computes with).

>>> import sympy as sp
>>> number(0.5), number(3)
(1/2, 3)
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, const, input as leaf_input, map_


@dataclass(frozen=True)
class Pred:
    """A comparison ``expr`` (a sympy relational of ``X[0..]``) of ``operands``."""

    expr: sp.Basic
    operands: tuple


@dataclass(frozen=True)
class Masked:
    """``node`` where ``keep`` (a 0/1 const node, broadcastable) is 1, -inf elsewhere."""

    node: Node
    keep: Node


@dataclass(frozen=True)
class Selection:
    """The indices of ``topk`` along the last axis: ``onehot`` (..., k, n), 1 where rank r
    picks entry i (piecewise constant in the ranked values: derivative 0, ties are kinks);
    ``op`` the op that made them (``topk``, or ``sort``: topk of all entries); read by
    ``scatter`` and ``gather`` (``take_along_dim``)."""

    onehot: Node
    op: str = "topk"
    dim: int | None = None  # the axis of the ranked tensor the indices run along (None: the
    #   last; another one lies last in ``onehot``, moved there: ``sort(dim=d)``)

    @property
    def shape(self) -> tuple[int, ...]:
        """The indices' own shape (the ranked tensor's, k along ``dim``)."""
        moved = tuple(self.onehot.shape[:-1])
        if self.dim is None:
            return moved
        return moved[:self.dim] + moved[-1:] + moved[self.dim:-1]


def number(v: Any) -> sp.Expr:
    """A Python / 0-dim torch number as the exact sympy number of its binary value.

    Arguments:
        v: an int, bool, float or a one-entry tensor.
    Returns:
        ``sp.Integer`` for integral values, else the exact ``sp.Rational`` of the float.
    """
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, bool):
        return sp.Integer(int(v))
    if isinstance(v, int):
        return sp.Integer(v)
    v = float(v)
    if not math.isfinite(v):
        raise SymgradError(f"capture: the constant {v} is not finite; only a -inf fill before "
                           "softmax (masked_fill(mask, -inf)) is supported")
    return sp.Integer(int(v)) if v.is_integer() else sp.Rational(v)


def named(what: str, fn: Callable) -> Callable:
    """``fn`` (a lowering of the ATen table) with the line ``aten.describe`` reports for it."""
    fn.what = what
    return fn


def is_known(v: Any) -> bool:
    """Concrete: a tensor, a number, or a list / tuple of them (no node in it)."""
    if isinstance(v, (list, tuple)):
        return all(is_known(x) for x in v)
    return not isinstance(v, (Node, Pred, Masked, Selection))


@dataclass
class Held:
    """The float64 constant arrays a capture holds as input blocks (see the module docstring).

    ``exact`` says whether this capture may hold them (every float block is float64: the
    held values are then exact in the run's dtype); ``taken``: block names already used.
    ``blocks`` maps ``id`` of the torch tensor to (the tensor itself, kept so that its id is
    never reused by another during the walk; its block node; its float64 values).
    """

    exact: bool
    taken: frozenset[str] = frozenset()
    blocks: dict[int, tuple[torch.Tensor, Node, np.ndarray]] = field(default_factory=dict)

    def hold(self, v: torch.Tensor, value: np.ndarray) -> Node:
        """``v`` as an input block (the same tensor used twice is one block)."""
        if id(v) not in self.blocks:
            used = self.taken | {n.name for _, n, _ in self.blocks.values()}
            name = next(f"constant{k}" for k in range(len(used) + 1)
                        if f"constant{k}" not in used)
            self.blocks[id(v)] = (v, leaf_input(name, value.shape), value)
        return self.blocks[id(v)][1]

    def values(self) -> dict[str, np.ndarray]:
        """Block name -> its held float64 values."""
        return {n.name: value for _, n, value in self.blocks.values()}


_HELD: ContextVar[Held | None] = ContextVar("symgrad_capture_held", default=None)


@contextmanager
def holding(held: Held) -> Iterator[Held]:
    """While active, ``to_node`` holds float64 constant arrays in ``held`` (reset on exit)."""
    token = _HELD.set(held)
    try:
        yield held
    finally:
        _HELD.reset(token)


def holds_float64() -> bool:
    """Whether the active capture is a float64 one (``holding``, ``Held.exact``): a float64
    constant array that float32 cannot hold is then exact data of the run."""
    held = _HELD.get()
    return held is not None and held.exact


def to_node(v: Any, what: str = "constant") -> Node | sp.Expr:
    """A ``map_`` operand: a node stays, a number becomes a sympy number, a known array a
    ``const`` node when exactly representable in float32, else (float64, in a float64
    capture: ``holding``) an input block held at its value."""
    if isinstance(v, Node):
        return v
    if isinstance(v, Selection):
        raise SymgradError(f"capture: {v.op}'s indices are used by {what}; symgrad captures them "
                           "only as scatter's index (dense gates: torch.zeros_like(logits)"
                           ".scatter(-1, indices, weights))")
    if isinstance(v, (Pred, Masked)):
        raise SymgradError(f"capture: a {type(v).__name__.lower()} value is used by {what}; "
                           "only where() reads a comparison and only softmax a -inf fill")
    if not isinstance(v, torch.Tensor) or v.dim() == 0:
        return number(v)
    value = v.detach().to(torch.float64).cpu().numpy()
    if not np.isfinite(value).all():
        raise SymgradError(f"capture: a constant array with inf / nan is used by {what}; only a "
                           "-inf fill before softmax (masked_fill(mask, -inf)) is supported")
    if np.array_equal(value.astype(np.float32).astype(np.float64), value):
        return const(value)
    held = _HELD.get()
    if held is not None and held.exact and v.dtype == torch.float64:
        return held.hold(v, value)
    dtype = str(v.dtype).removeprefix("torch.")
    why = ("with tensors of another dtype (it is exact only in a float64 run)"
           if held is not None else "outside a capture (only a float64 capture holds it)")
    raise SymgradError(f"capture: a constant array computed in {dtype}, not exactly "
                       f"representable in float32, is used by {what} {why}; compute it in the "
                       "inputs' dtype (dtype=x.dtype) or register it as a buffer "
                       "(self.register_buffer)")


def node(v: Any, what: str) -> Node:
    """``v`` as a node (a known array: its const node; a number: refused)."""
    out = to_node(v, what)
    if not isinstance(out, Node):
        raise SymgradError(f"capture: {what} needs a tensor, got the number {v!r}")
    return out


def elementwise(expr: sp.Expr, *values: Any, what: str = "map") -> Node:
    """``map_(expr, ...)`` over captured values (nodes, numbers, known arrays)."""
    return map_(expr, *[to_node(v, what) for v in values])


MASK_FILL = -1e30  # an additive fill at or below this is a mask (Hugging Face: finfo.min)


def _masked_out(v: Any) -> torch.Tensor | None:
    """Where ``v`` masks: when it is a known float array holding -inf entries (an additive
    attention mask, as scaled_dot_product_attention's is_causal builds) or entries <=
    ``MASK_FILL`` (Hugging Face's finfo(dtype).min: exp of a logit plus it underflows to
    exactly 0 in every float dtype, as with -inf), those entries; else None."""
    if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0:
        out = torch.isneginf(v) | (v <= MASK_FILL)
        if bool(out.any()):
            return out
    return None


def add(a: Any, b: Any, alpha: Any) -> Node | Masked:
    """``a + alpha * b``; a node plus an additive -inf (or <= ``MASK_FILL``) mask is a
    ``Masked`` value."""
    for x, bias in ((a, b), (b, a)):
        out = _masked_out(bias)
        if out is not None and isinstance(x, Node) and number(alpha) == 1:
            finite = torch.where(out, torch.zeros_like(bias), bias)
            y = x if not bool(finite.any()) else elementwise(X[0] + X[1], x, finite, what="add")
            return Masked(y, node(1 - out.to(torch.float64), "add"))
    return elementwise(X[0] + number(alpha) * X[1], a, b, what="add")


def where(cond: Any, a: Any, b: Any) -> Node | Masked:
    """``torch.where(cond, a, b)``: a comparison of a node is a Piecewise, a known mask an
    exact 0/1 blend, a -inf branch a ``Masked`` value for softmax."""
    if isinstance(cond, Pred):
        k = len(cond.operands)
        return elementwise(sp.Piecewise((X[k], cond.expr), (X[k + 1], True)), *cond.operands,
                           a, b, what="where")
    known = torch.as_tensor(cond)
    for all_of, chosen in ((~known, b), (known, a)):  # one branch everywhere: that branch
        if bool(all_of.all()) and _shape(chosen) == _where_shape(known, a, b):
            return chosen  # (kl_div's where(isnan(target), nan, ...) never takes the nan)
    mask = known.to(torch.float64)
    for fill, other, keep in ((a, b, 1 - mask), (b, a, mask)):
        if isinstance(fill, torch.Tensor) and fill.dim() == 0 and fill.item() == -math.inf:
            return Masked(node(other, "where"), node(keep, "where"))
    return elementwise(X[0] * X[1] + (1 - X[0]) * X[2], mask, a, b, what="where")


def _shape(v: Any) -> tuple:
    """The shape of a captured value (a Python number: ())."""
    if isinstance(v, Masked):
        return tuple(v.node.shape)
    return tuple(getattr(v, "shape", ()))


def _where_shape(cond: torch.Tensor, a: Any, b: Any) -> tuple:
    """The broadcast shape of ``torch.where(cond, a, b)``."""
    return tuple(torch.broadcast_shapes(tuple(cond.shape), _shape(a), _shape(b)))
