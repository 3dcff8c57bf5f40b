"""The rows a ``scatter_add`` hits, for its rounding-error bound (``symgrad.tensor.bound``).

A scatter of T rows into a table of ``size`` rows (GPT-2's token-embedding gradient: a
sample's 64 tokens into 50257 rows) writes only the rows its ids name; every other row of the
scatter of anything is an exact 0. So the bound's scatters are formed on the hit rows only
(``scatter``), and the whole array is formed once, with its other rows left as zero pages
(``spread``): no pass over the 50257 x 768 entries, of which a 64-token sample hits <= 64 rows.

>>> import numpy as np, symgrad.tensor as st
>>> W = st.param("W", (5, 2))
>>> ids = st.input("ids", (3,), integer=True)
>>> node = st.scatter_add(st.take(W, ids), ids, 5)
>>> at = hit(node, [np.ones((1, 3, 2)), np.array([[4, 1, 4]])])
>>> at.rows.tolist(), at.place.tolist()
([1, 4], [1, 0, 1])
>>> spread(node, at, scatter(node, at, np.ones((1, 3, 2))))[0, :, 0].tolist()
[0.0, 1.0, 0.0, 0.0, 2.0]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .interpret import _flat_ids
from .program import Node


class Hit(NamedTuple):
    """The sorted distinct rows of the batch-flattened output (n * size, ...) a scatter's ids
    hit, each id's place among them, and the batch n."""
    rows: np.ndarray
    place: np.ndarray
    n: int


def hit(node: Node, values: list) -> Hit:
    """The rows the ``scatter_add`` ``node`` hits, from its operands' ``values`` (the rows,
    (N, T.., *rest), and the integer ids, (N, T..)).

    Arguments:
        node: a scatter_add node (attrs["size"]: the table's rows).
        values: its operands' values, batch axis first.
    Returns:
        A ``Hit``."""
    rows, ids = values
    n = max(np.shape(rows)[0], ids.shape[0])
    ids = np.broadcast_to(ids, (n,) + ids.shape[1:])
    flat = _flat_ids(ids, node.attrs["size"], n, f"scatter_add by {node.args[1].name!r}")
    rows_hit, place = np.unique(flat, return_inverse=True)
    return Hit(rows_hit, place.reshape(-1), n)


def scatter(node: Node, at: Hit, rows: np.ndarray) -> np.ndarray:
    """scatter_add of ``rows`` (N, T.., *rest) by the node's ids, on the hit rows only:
    (len(at.rows), *rest). The same additions in the same order as the whole scatter's
    ``np.add.at`` (each id's row added in turn), so each hit row has the same bits.

    Arguments:
        node: the scatter_add node.
        at: its ``hit``.
        rows: an array of its first operand's shape (broadcast over the batch if 1).
    Returns:
        The hit rows of the scatter, in ``at.rows``' order."""
    rest = node.shape[1:]
    rows = np.broadcast_to(rows, (at.n,) + np.shape(rows)[1:])
    out = np.zeros((len(at.rows),) + rest)
    np.add.at(out, at.place, rows.reshape((at.place.size,) + rest))
    return out


def spread(node: Node, at: Hit, hit_rows: np.ndarray) -> np.ndarray:
    """The whole (n, *shape) array whose hit rows are ``hit_rows`` and every other row 0
    (never written: zero pages until something writes them).

    Arguments:
        node: the scatter_add node.
        at: its ``hit``.
        hit_rows: (len(at.rows), *rest), in ``at.rows``' order.
    Returns:
        A new float64 array (n, *node.shape)."""
    out = np.zeros((at.n * node.attrs["size"],) + node.shape[1:])
    out[at.rows] = hit_rows
    return out.reshape((at.n,) + node.shape)


def on_rows(node: Node, at: Hit, whole: np.ndarray) -> np.ndarray:
    """The hit rows of a whole (n, *shape) array (a copy, in ``at.rows``' order).

    Arguments:
        node: the scatter_add node.
        at: its ``hit``.
        whole: an array broadcastable to (n, *node.shape).
    Returns:
        (len(at.rows), *rest)."""
    flat = (at.n * node.attrs["size"],) + node.shape[1:]
    return np.broadcast_to(whole, (at.n,) + node.shape).reshape(flat)[at.rows]
