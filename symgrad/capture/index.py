"""Rows of the ATen table that pick entries: embedding, index_select, gather, x[index], slice,
select, split, cat. Each is an einsum with a 0/1 matrix (one term per output entry: exact); an index
must be known (an integer input or a constant, held at its value).

>>> picks(torch.tensor([2, 0]), 3).tolist()
[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import SymgradError
from ..tensor.program import Node, add_all, const, einsum, reshape, take, transpose
from .values import node

aten = torch.ops.aten
_L = "abcdefghijklmnopqrstuvw"  # axis letters; "y", "z" are the selection matrices' own


def along(x: Node, axis: int, S: np.ndarray | Node) -> Node:
    """The matrix ``S`` (m, n) applied along ``axis`` of ``x`` (a 0/1 one is exact: one term
    per entry; a node: a held weight matrix); a vector ``S`` (n,) picks one index and drops
    the axis."""
    axis %= x.ndim
    sub = _L[:x.ndim]
    xs = sub[:axis] + "z" + sub[axis + 1:]
    S = S if isinstance(S, Node) else const(S, "select")
    if S.ndim == 1:
        return einsum(f"{xs},z->{sub[:axis] + sub[axis + 1:]}", x, S)
    return einsum(f"{xs},yz->{sub[:axis] + 'y' + sub[axis + 1:]}", x, S)


def picks(index: torch.Tensor, n: int) -> np.ndarray:
    """One-hot rows (*index.shape, n) of a known integer index (negative ids wrap)."""
    ids = index.detach().cpu().numpy().astype(np.int64) % n
    return (ids[..., None] == np.arange(n)).astype(np.float64)


def known_index(v: Any, op: str) -> torch.Tensor:
    """``v`` itself when it is a known tensor (an integer input, a constant); a node (an
    index computed from a parameter or a float input): refused in one line naming ``op``."""
    if not isinstance(v, torch.Tensor):
        raise SymgradError(f"capture: {op} with an index computed from a parameter or float "
                           "input is not supported; the index must be an integer input or a "
                           "constant")
    return v


def _embedding(a, shape) -> Node:
    """take (integer-input ids), or an einsum with the one-hot rows of known ids"""
    W = node(a["weight"], "embedding")
    if isinstance(a["indices"], Node):  # an integer input block
        return take(W, a["indices"])
    rows = picks(known_index(a["indices"], "embedding"), W.shape[0])
    sub = _L[:rows.ndim - 1]
    return einsum(f"{sub}z,zc->{sub}c", const(rows, "ids"), W)


def _index_select(a, shape) -> Node:
    """einsum with a 0/1 selection matrix of the known index"""
    x = node(a["self"], "index_select")
    ids = known_index(a["index"], "index_select").reshape(-1)
    return along(x, a["dim"], picks(ids, x.shape[a["dim"] % x.ndim]))


def _gather(a, shape) -> Node:
    """einsum with the one-hot picks of the known index"""
    x = node(a["self"], "gather")
    index = known_index(a["index"], "gather")
    d = a["dim"] % x.ndim
    if any(index.shape[i] != x.shape[i] for i in range(x.ndim) if i != d):
        raise SymgradError(f"capture: gather of {x.shape} by an index of shape "
                           f"{tuple(index.shape)}: other axes must match")
    sub = _L[:x.ndim]
    xs = sub[:d] + "z" + sub[d + 1:]
    return einsum(f"{xs},{sub}z->{sub}", x, const(picks(index, x.shape[d]), "picks"))


def _slice(a, shape) -> Node:
    """einsum with a 0/1 selection matrix"""
    x = node(a["self"], "slice")
    d = a["dim"] % x.ndim
    rows = range(x.shape[d])[slice(a.get("start"), a.get("end"), a.get("step", 1))]
    return along(x, d, picks(torch.tensor(list(rows), dtype=torch.long), x.shape[d]))


def _select(a, shape) -> Node:
    """einsum with a one-hot vector (the axis dropped)"""
    x = node(a["self"], "select")
    d = a["dim"] % x.ndim
    return along(x, d, np.eye(x.shape[d])[a["index"] % x.shape[d]])


PICKS_MAX = 1 << 24  # entries of an advanced index's dense 0/1 matrix (128 MB in float64)


def _index(a, shape) -> Node:
    """einsum with the 0/1 picks of the indexed axes (flattened); axes that are not adjacent
    moved to the front first (transpose), as numpy and torch place their result

    The known index tensors are applied by torch itself to the axes' flat ids."""
    x = node(a["self"], "index")
    given = [i for i, t in enumerate(a["indices"]) if t is not None]
    tensors = [known_index(a["indices"][i], "x[index]") for i in given]
    if given != list(range(given[0], given[-1] + 1)):  # x[i, :, j]: the picks lead the result
        x = transpose(x, given + [d for d in range(x.ndim) if d not in given])
        given = list(range(len(given)))
    k, m = given[0], len(given)
    n = int(np.prod(x.shape[k:k + m], dtype=np.int64))
    ids = torch.arange(n).reshape(x.shape[k:k + m])[tuple(tensors)].reshape(-1)
    if ids.numel() * n > PICKS_MAX:
        raise SymgradError(f"capture: x[index] picking {ids.numel()} of {n} entries needs a "
                           f"{ids.numel()} x {n} selection matrix, over {PICKS_MAX} entries; "
                           "index a smaller tensor")
    flat = reshape(x, x.shape[:k] + (n,) + x.shape[k + m:])
    return reshape(along(flat, k, picks(ids, n)), shape)


def _cat(a, shape) -> Node:
    """each part placed by a 0/1 matrix (einsum), then added (exact)"""
    parts = [node(t, "cat") for t in a["tensors"] if not (isinstance(t, torch.Tensor)
                                                          and t.numel() == 0)]
    d = a.get("dim", 0) % len(shape)
    start, out = 0, []
    for p in parts:
        place = np.zeros((shape[d], p.shape[d]))
        place[start + np.arange(p.shape[d]), np.arange(p.shape[d])] = 1
        out.append(along(p, d, place))
        start += p.shape[d]
    return add_all(out)


def _split(a, shape) -> tuple:
    """slices (einsum with 0/1 selection matrices), one per part"""
    x = node(a["self"], "split")
    d, start, out = a.get("dim", 0) % x.ndim, 0, []
    for size in a["split_sizes"]:
        out.append(_slice({"self": x, "dim": d, "start": start, "end": start + size}, ()))
        start += size
    return tuple(out)


def _unbind(a, shape) -> tuple:
    """one select per index"""
    x = node(a["self"], "unbind")
    d = a.get("dim", 0) % x.ndim
    return tuple(_select({"self": x, "dim": d, "index": i}, ()) for i in range(x.shape[d]))


INDEX_ROWS: dict[Any, Callable] = {
    aten.embedding.default: _embedding, aten.index_select.default: _index_select,
    aten.gather.default: _gather, aten.index.Tensor: _index,
    aten.slice.Tensor: _slice, aten.select.int: _select, aten.cat.default: _cat,
    aten.split_with_sizes.default: _split, aten.unbind.int: _unbind,
}
