"""Which entries of a node's value may be nonzero, for the rounding-error bound
(``symgrad.tensor.bound``: adding an exact zero rounds nothing). One rule per op
(``NONZERO_RULES``): None (any entry may be nonzero), or a float 0/1 array of the entries that
may be nonzero, or, after a contraction or a sum, the number of terms per output that may be
nonzero. Exact zeros are known structurally, the same in every backend: zeros of leaves
(dropout keep-masks), constants (causal masks) and one-hot masks, carried through layout ops,
through maps that vanish with an argument and through contractions and sums.

>>> import numpy as np, symgrad.tensor as st
>>> a = st.param("a", (3,))
>>> NONZERO_RULES["sum"](st.sum_(a), [np.array([[1.0, 0.0, 2.0]])],
...                      [np.array([[1.0, 0.0, 1.0]])]).tolist()
[2.0]
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from .interpret import RULES as VALUE_RULES
from .program import Node
from .tables import NumpyOps
from .zeros import annihilators as _annihilators

_T = NumpyOps("float64")


def _ones(node: Node) -> np.ndarray:
    return np.broadcast_to(np.ones(()), (1,) + node.shape)  # no memory


def leaf_nonzero(node: Node, v: np.ndarray) -> np.ndarray | None:
    """A leaf's (or constant's) value ``v``: where it may be nonzero (None: everywhere)."""
    if node.integer or np.all(v != 0):
        return None
    return (v != 0).astype(np.float64)


def _nz_map(node, vals, nz):
    holding = [i for i, n in enumerate(nz) if n is not None]  # arguments that hold a zero
    keep = [nz[i] for i in _annihilators(node.attrs["expr"], len(nz), among=holding)]
    if not keep:
        return None
    out = functools.reduce(lambda a, b: a * b, keep)
    return np.broadcast_to(out, out.shape[:1] + node.shape)  # an argument may broadcast


def _nz_count(node, vals, nz):
    """einsum / sum: the number of terms per output that may be nonzero (None: all)."""
    if all(n is None for n in nz):
        return None
    if node.op == "sum":
        return np.sum(nz[0], axis=tuple(a + 1 for a in node.attrs["axes"]))
    args = [n if n is not None else _ones(a) for a, n in zip(node.args, nz)]
    return VALUE_RULES["einsum"](node, _T, args, None)


def _nz_same(node, vals, nz):
    if all(n is None for a, n in zip(node.args, nz) if not a.integer):
        return None
    args = [v if a.integer else (n if n is not None else _ones(a))
            for a, v, n in zip(node.args, vals, nz)]
    return VALUE_RULES[node.op](node, _T, args, None)


def _nz_none(node, vals, nz):
    return None


NONZERO_RULES: dict[str, Callable] = {
    "map": _nz_map, "einsum": _nz_count, "sum": _nz_count, "max": _nz_none, "stop": _nz_none,
    "onehot": lambda node, vals, nz: None, "reshape": _nz_same, "transpose": _nz_same,
    "broadcast": _nz_same, "take": _nz_same, "scatter_add": _nz_none,
}


