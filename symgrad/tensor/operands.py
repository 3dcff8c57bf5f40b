"""What both rules of the tensor bound (``symgrad.tensor.bound``: the worst case E and the
probabilistic sigma) read of a node's operands, formed once per node: |x| of each operand,
their squares, the contraction, sum or scatter of the |x|, and the contractions with one
operand's |x| replaced by its E or sigma (``Operands.term``); and an in-place sum of the
terms a rule adds up.

A two-operand contraction against a large operand (GPT-2's logits and their gradient against
the 50257 x 768 token matrix) forms its terms that share that operand - the |A||B| product,
E_A |B| and, beyond n0 terms, sigma_A |B| - as one einsum of the stacked A-side arrays (a
GEMM with 2-3x the rows): |B| is read, and transposed for BLAS, once instead of once per term.
Each row of a GEMM is the same dot products whatever the rows beside it (OpenBLAS's kernels
sum each entry in the same order; E bit-identical to the terms formed one by one in the
checked runs, ``reports/benchmarks.md``).

>>> total = plus(0.0, np.ones(2))  # a scalar start: a new array
>>> plus(total, np.ones(2)) is total  # then in place
True
"""

from __future__ import annotations

import string
from typing import Callable, Iterable

import numpy as np

from .interpret import RULES as VALUE_RULES
from .program import Node
from .tables import NumpyOps

_T = NumpyOps("float64")
STACK_FROM = 1 << 20  # entries of the shared operand from which a GEMM's terms are stacked


class Operands(list):
    """A node's operand values (a list, as every rule reads them) that forms what both the
    worst-case and the probabilistic rule read at most once per node: |x| of each operand,
    their squares, and the contraction (or sum, or scatter) of the |x| (GPT-2's logits and
    their gradient: the |A||B| GEMM once, not once per rule).

    >>> import symgrad.tensor as st
    >>> a = st.param("a", (2,))
    >>> ops = Operands(st.sum_(a), [np.array([[1.0, -2.0]])])
    >>> ops.magnitudes[0].tolist(), ops.once("k", lambda: 3) + ops.once("k", lambda: 4)
    ([[1.0, 2.0]], 6)
    """

    def __init__(self, node: Node, values: Iterable[np.ndarray], *,
                 errors: list | None = None, sigmas: list | None = None, long: bool = False,
                 shared: dict | None = None):
        """``errors``, ``sigmas``: each operand's E and sigma (None: not known, no stacking);
        ``long``: whether the probabilistic rule asks for sigma_i |x_j| terms (beyond n0);
        ``shared``: |x| and |x|^2 of leaf operands across the nodes of one walk, by (what,
        leaf node id) (GPT-2's 50257 x 768 token matrix is read by the logits and by their
        gradient: its |x| and square formed once)."""
        super().__init__(values)
        self.node = node
        self._errors, self._sigmas, self._long = errors, sigmas, long
        self._memo: dict = {}
        self._shared = shared

    def once(self, key, make: Callable):
        """``make()`` the first time ``key`` is asked for on this node, the same object after."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def magnitudes(self) -> list[np.ndarray]:
        """|x| of each operand."""
        return self.once("abs", lambda: [self._leaf("abs", j, lambda v=v: np.abs(v))
                                         for j, v in enumerate(self)])

    @property
    def squares(self) -> list[np.ndarray]:
        """|x|^2 of each operand."""
        return self.once("squares", lambda: [self._leaf("squares", j, lambda v=v: v * v)
                                             for j, v in enumerate(self.magnitudes)])

    def _leaf(self, what: str, j: int, make: Callable) -> np.ndarray:
        """``make()`` of operand j, shared by the walk's nodes where it is a leaf."""
        arg = self.node.args[j]
        if self._shared is None or arg.op not in ("param", "input", "const"):
            return make()
        key = (what, arg.id)
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def contraction(self) -> np.ndarray:
        """The node's einsum of |x_1| .. |x_k|."""
        return self.term(None, "abs")

    def term(self, i: int | None, which: str) -> np.ndarray:
        """The node's einsum of |x_1| .. |x_k| with |x_i| replaced by x_i's E (``which`` =
        "error") or sigma ("sigma"); ``i`` None: none replaced (the contraction). Formed
        with the terms stacked beside it, if any (module docstring)."""
        key = (i, which)
        if key in self._memo:
            return self._memo[key]
        slot, keys = self._stack()
        if key in keys:
            arrays = [self._operand(slot if j is None else j, w) for j, w in keys]
            self._memo.update(zip(keys, _stacked(self.node, self.magnitudes, slot, arrays)))
            return self._memo[key]
        mags = self.magnitudes
        ops = mags if i is None else mags[:i] + [self._operand(i, which)] + mags[i + 1:]
        got = VALUE_RULES["einsum"](self.node, _T, ops, None)
        if i is None:  # both rules read the contraction; a replaced term is read once
            self._memo[key] = got
        return got

    def _operand(self, j: int, which: str) -> np.ndarray:
        return {"abs": self.magnitudes, "error": self._errors, "sigma": self._sigmas}[which][j]

    def _stack(self) -> tuple[int | None, list]:
        """The slot whose terms are formed as one stacked einsum, and their keys: a GEMM's
        operand i, when the other is large (``STACK_FROM`` entries) and no smaller than the
        output, and both have >= 2 free entries (a GEMM, not a GEMV, either way)."""
        def make():
            if (self.node.op != "einsum" or len(self) != 2 or self._errors is None):
                return None, []
            n = max(np.shape(v)[0] for v in self)
            out = n * int(np.prod(self.node.shape, dtype=np.int64))
            for i in (0, 1):
                other = self[1 - i]
                keys = [(None, "abs")]
                if np.any(self._errors[i]):
                    keys.append((i, "error"))
                if self._long and self._sigmas is not None and np.any(self._sigmas[i]):
                    keys.append((i, "sigma"))
                if (len(keys) > 1 and np.size(other) >= max(STACK_FROM, out)
                        and _free(self.node, i) >= 2 and _free(self.node, 1 - i) >= 2):
                    return i, keys
            return None, []
        return self.once("stack", make)


def _free(node: Node, i: int) -> int:
    """Entries of operand i per batch that are neither contracted nor shared (GEMM's M or N)."""
    ins, out = node.attrs["spec"].split("->")
    subs = ins.split(",")
    others = set("".join(s for j, s in enumerate(subs) if j != i))
    return int(np.prod([n for c, n in zip(subs[i], node.args[i].shape)
                        if c in out and c not in others], dtype=np.int64))


def _stacked(node: Node, mags: list, slot: int, arrays: list) -> list[np.ndarray]:
    """The node's einsum of ``mags`` with operand ``slot`` replaced by each of ``arrays``,
    as one einsum over a new leading stack axis (each result a view of the stacked one)."""
    spec = node.attrs["spec"]
    b, z = [c for c in string.ascii_letters if c not in spec][:2]
    ins, out = spec.split("->")
    subs = [(z if j == slot else "") + b + sub for j, sub in enumerate(ins.split(","))]
    n = max(max(np.shape(v)[0] for v in mags), max(np.shape(a)[0] for a in arrays))

    def full(v):
        return v if v.shape[0] == n else np.broadcast_to(v, (n,) + v.shape[1:])
    ops = [np.stack([full(a) for a in arrays]) if j == slot else full(v)
           for j, v in enumerate(mags)]
    return list(np.einsum(",".join(subs) + "->" + z + b + out, *ops, optimize=True))


def plus(total, term: np.ndarray):
    """total + term, in place once ``total`` is an array this rule made (not a scalar 0)."""
    if isinstance(total, np.ndarray) and total.shape == np.broadcast_shapes(total.shape,
                                                                             term.shape):
        return np.add(total, term, out=total)
    return total + term
