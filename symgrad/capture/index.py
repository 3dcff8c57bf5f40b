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
from ..tensor.program import (X, Node, add_all, broadcast, const, einsum, reshape, take,
                              transpose)
from .values import Pred, Selection, elementwise, node, where

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
    if isinstance(v, Pred):  # x[x > 0] (newuser10: "'Pred' object has no attribute 'dtype'")
        raise SymgradError(f"capture: {op} with a bool mask computed from a parameter or float "
                           "input (x[x > 0]: which entries it keeps, and its shape, depend on "
                           "the values) is not supported; keep the shape: torch.where(mask, x, "
                           "0) (then .sum()), the kink at the mask's edge placed")
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
    """einsum with the one-hot picks of the known index (or of sort's / topk's one-hot rows)"""
    x = node(a["self"], "gather")
    d = a["dim"] % x.ndim
    if isinstance(a["index"], Selection):
        return _gather_ranked(x, d, a["index"])
    index = known_index(a["index"], "gather")
    if any(index.shape[i] != x.shape[i] for i in range(x.ndim) if i != d):
        raise SymgradError(f"capture: gather of {x.shape} by an index of shape "
                           f"{tuple(index.shape)}: other axes must match")
    sub = _L[:x.ndim]
    xs = sub[:d] + "z" + sub[d + 1:]
    return einsum(f"{xs},{sub}z->{sub}", x, const(picks(index, x.shape[d]), "picks"))


def _gather_ranked(x: Node, d: int, sel: Selection) -> Node:
    """gather(x, d, indices of sort / topk along d) (take_along_dim): the einsum of their
    one-hot rows (piecewise constant in the ranked values, ties kinks) with x along d; x may
    be another tensor than the one ranked, of its shape."""
    rank_dim = x.ndim - 1 if sel.dim is None else sel.dim
    if d != rank_dim or len(sel.shape) != x.ndim:
        raise SymgradError(f"capture: gather along dim {d} of {sel.op}'s indices, taken along "
                           f"dim {rank_dim} of a {len(sel.shape)}-dim tensor, is not supported; "
                           "gather along the axis they rank")
    want = sel.shape[:d] + (sel.onehot.shape[-1],) + sel.shape[d + 1:]
    if tuple(x.shape) != want:
        raise SymgradError(f"capture: gather of a tensor of shape {tuple(x.shape)} by "
                           f"{sel.op}'s indices of a tensor of shape {want} is not supported; "
                           "gather from a tensor of the ranked tensor's shape")
    perm = [i for i in range(x.ndim) if i != d] + [d]
    moved = x if d == x.ndim - 1 else transpose(x, perm)
    sub = _L[:x.ndim - 1]
    out = einsum(f"{sub}ri,{sub}i->{sub}r", sel.onehot, moved)
    return out if d == x.ndim - 1 else transpose(out, [perm.index(i) for i in range(x.ndim)])


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


def _flat_ids(x: Node, indices: list, op: str) -> tuple[Node, int, int, int, torch.Tensor,
                                                       list[int] | None]:
    """``x`` with the axes of the known index tensors adjacent (moved to the front where they
    are not, as numpy and torch place the picks: ``perm``, else None), the first such axis k,
    how many m, their flat size n and the flat ids picked (the index tensors' broadcast
    shape)."""
    indices = [part for t in indices for part in (  # a bool mask over d axes: d id tensors
        known_index(t, op).nonzero().unbind(1) if t is not None and known_index(
            t, op).dtype == torch.bool
        else (t,))]
    given = [i for i, t in enumerate(indices) if t is not None]
    tensors = [known_index(indices[i], op) for i in given]
    perm = None
    if given != list(range(given[0], given[-1] + 1)):  # x[i, :, j]: the picks lead the result
        perm = given + [d for d in range(x.ndim) if d not in given]
        x, given = transpose(x, perm), list(range(len(given)))
    k, m = given[0], len(given)
    n = int(np.prod(x.shape[k:k + m], dtype=np.int64))
    ids = torch.arange(n).reshape(x.shape[k:k + m])[tuple(tensors)]
    if ids.numel() * n > PICKS_MAX:
        raise SymgradError(f"capture: {op} picking {ids.numel()} of {n} entries needs a "
                           f"{ids.numel()} x {n} selection matrix, over {PICKS_MAX} entries; "
                           "index a smaller tensor")
    return x, k, m, n, ids, perm


def _index(a, shape) -> Node:
    """einsum with the 0/1 picks of the indexed axes (flattened; non-adjacent ones moved first)

    Axes that are not adjacent are moved to the front (transpose), where numpy and torch place
    their result. The known index tensors are applied by torch itself to the axes' flat ids."""
    x = node(a["self"], "index")
    x, k, m, n, ids, _ = _flat_ids(x, a["indices"], "x[index]")
    flat = reshape(x, x.shape[:k] + (n,) + x.shape[k + m:])
    return reshape(along(flat, k, picks(ids.reshape(-1), n)),  # (x[mask]: export's shape
                   x.shape[:k] + tuple(ids.shape) + x.shape[k + m:])  # is symbolic)


def _index_put(a, shape) -> Node:
    """x[index] = v / += v: v placed by the transposed 0/1 picks (einsum), blended in or added

    With accumulate, repeated ids add; without, the placed values replace x where picked (a
    0/1 blend, exact), and an id picked twice keeps one of its values in an order torch leaves
    undefined: refused. A mask computed from a float value (y[x > 0] = c): a Piecewise."""
    x, v = node(a["self"], "index_put"), a["values"]
    if not isinstance(v, Node):  # a known fill (y[i] = 0.5): a one-entry array broadcast
        v = torch.as_tensor(v, dtype=torch.float64 if not torch.is_tensor(v) else None)
        v = node(v.reshape(v.shape or (1,)), "index_put")
    if len(a["indices"]) == 1 and isinstance(a["indices"][0], Pred):  # y[x > 0] = c
        return _masked_put(x, a["indices"][0], v, bool(a.get("accumulate")))
    xt, k, m, n, ids, perm = _flat_ids(x, a["indices"], "index_put")
    flat_ids = ids.reshape(-1)
    accumulate = bool(a.get("accumulate"))
    if not accumulate and len(set(flat_ids.tolist())) < flat_ids.numel():
        raise SymgradError("capture: index_put (x[index] = values) with an index that names "
                           "an entry twice keeps one of its values in an order torch leaves "
                           "undefined; index each entry once, or add (x.index_put(..., "
                           "accumulate=True), x.index_add)")
    rest = xt.shape[k + m:]
    target = xt.shape[:k] + tuple(ids.shape) + rest  # x[index]'s shape: values broadcast to it
    v = broadcast(reshape(v, (1,) * (len(target) - v.ndim) + v.shape), target)
    v = reshape(v, xt.shape[:k] + (flat_ids.numel(),) + rest)
    placed = reshape(along(v, k, picks(flat_ids, n).T.copy()), xt.shape)
    if accumulate:
        out = elementwise(X[0] + X[1], xt, placed)
    else:
        hit = torch.zeros(n, dtype=torch.bool)
        hit[flat_ids] = True
        mask = hit.reshape((1,) * k + (n,) + (1,) * len(rest)).expand(
            xt.shape[:k] + (n,) + rest).reshape(xt.shape)
        out = where(mask.contiguous(), placed, xt)
    if perm is not None:
        out = transpose(out, [int(d) for d in np.argsort(perm)])
    return out


def _masked_put(x: Node, cond: Pred, v: Node, accumulate: bool) -> Node:
    """y[cond] = c (+= c): where(cond, c, y) (c + y): a Piecewise at the comparison's
    boundary; the fill must be one value (how many entries the mask holds is data)."""
    if v.shape not in ((), (1,)):
        raise SymgradError("capture: index_put with a mask computed from a parameter or float "
                           f"input and values of shape {v.shape}: only one value fills it "
                           "(y[x > 0] = 0.5); use torch.where(mask, values, y)")
    c = reshape(v, ())
    return where(cond, elementwise(X[0] + X[1], c, x) if accumulate else c, x)


def _sym_size(a, shape) -> int:
    """the size of an axis, known at capture (x[mask]'s count, which export leaves symbolic)"""
    x = a["self"]
    return int((x.shape if isinstance(x, (Node, torch.Tensor)) else ())[a["dim"]])


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


def _slice_scatter(a, shape) -> Node:
    """x[.., a:b:s, ..] = src: src placed by the transposed 0/1 picks, x kept elsewhere"""
    # (newuser10: b[1:, 2:] = v was refused; a 0/1 blend, exact)
    x = node(a["self"], "slice_scatter")
    d = a.get("dim", 0) % x.ndim
    n = x.shape[d]
    rows = torch.tensor(list(range(n)[slice(a.get("start"), a.get("end"), a.get("step", 1))]),
                        dtype=torch.long)
    src = a["src"]
    src = node(src.to(torch.float64) if isinstance(src, torch.Tensor) and src.is_floating_point()
               else src, "slice_scatter")
    hit = torch.zeros(n, dtype=torch.bool)
    hit[rows] = True
    mask = hit.reshape((1,) * d + (n,) + (1,) * (x.ndim - d - 1)).expand(x.shape)
    return where(mask.contiguous(), along(src, d, picks(rows, n).T.copy()), x)


INDEX_ROWS: dict[Any, Callable] = {
    aten.embedding.default: _embedding, aten.index_select.default: _index_select,
    aten.gather.default: _gather, aten.index.Tensor: _index,
    aten.index_put.default: _index_put, aten.sym_size.int: _sym_size,
    aten.slice.Tensor: _slice, aten.select.int: _select, aten.cat.default: _cat,
    aten.split_with_sizes.default: _split, aten.unbind.int: _unbind,
    aten.slice_scatter.default: _slice_scatter,
}
