"""What both rules of the tensor bound (``symgrad.tensor.bound``: the worst case E and the
probabilistic sigma) read of a node's operands, formed once per node: |x| of each operand,
their squares, the contraction, sum or scatter of the |x|; and an in-place sum of the terms
a rule adds up.

>>> total = plus(0.0, np.ones(2))  # a scalar start: a new array
>>> plus(total, np.ones(2)) is total  # then in place
True
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .interpret import RULES as VALUE_RULES
from .program import Node
from .tables import NumpyOps

_T = NumpyOps("float64")


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

    def __init__(self, node: Node, values: Iterable[np.ndarray]):
        super().__init__(values)
        self.node = node
        self._memo: dict = {}

    def once(self, key: str, make: Callable):
        """``make()`` the first time ``key`` is asked for on this node, the same object after."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def magnitudes(self) -> list[np.ndarray]:
        """|x| of each operand."""
        return self.once("abs", lambda: [np.abs(v) for v in self])

    @property
    def squares(self) -> list[np.ndarray]:
        """|x|^2 of each operand."""
        return self.once("squares", lambda: [v * v for v in self.magnitudes])

    def contraction(self) -> np.ndarray:
        """The node's einsum of |x_1| .. |x_k|."""
        return self.once("contraction", lambda: VALUE_RULES["einsum"](
            self.node, _T, self.magnitudes, None))


def plus(total, term: np.ndarray):
    """total + term, in place once ``total`` is an array this rule made (not a scalar 0)."""
    if isinstance(total, np.ndarray) and total.shape == np.broadcast_shapes(total.shape,
                                                                             term.shape):
        return np.add(total, term, out=total)
    return total + term
