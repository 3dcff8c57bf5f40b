"""Rows of the ATen table that move or resample entries along axes: repeat (a broadcast and a
reshape), constant padding, nearest and (bi/tri)linear upsampling, and embedding bags. Each is
a reshape / broadcast of the operand, or an einsum with a constant matrix along one axis at a
time (nearest and padding: 0/1 entries, one term per output entry, exact; linear: two weights
per output entry, the exact values of torch's interpolation formula; a bag's max: a max
reduction over its rows).

>>> _linear_weights(2, 4, align_corners=False, scale=2.0).tolist()
[[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
>>> _nearest_picks(2, (1, 1, 2), aten.upsample_nearest1d.vec, None, [2.0]).tolist()
[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import numpy as np
import torch

from ..errors import SymgradError
from ..tensor.program import X, Node, broadcast, const, einsum, max_, reshape
from .index import along, known_index, picks
from .values import elementwise, holds_float64, named, node

aten = torch.ops.aten


def _repeat(a, shape) -> Node:
    """reshape to (1, s0, 1, s1, ...), broadcast to (r0, s0, r1, s1, ...), reshape (a tile)"""
    x, reps = node(a["self"], "repeat"), [int(r) for r in a["repeats"]]
    if len(reps) < x.ndim:
        raise SymgradError(f"capture: repeat of a {x.ndim}-d tensor needs at least {x.ndim} "
                           f"repeats, got {reps}")
    sizes = (1,) * (len(reps) - x.ndim) + x.shape
    if 0 in reps:
        raise SymgradError("capture: repeat with a 0 count makes an empty tensor; drop it")
    pairs = [d for s in sizes for d in (1, s)]
    tiled = broadcast(reshape(x, pairs), [d for r, s in zip(reps, sizes) for d in (r, s)])
    return reshape(tiled, shape)


def _constant_pad(a, shape) -> Node:
    """each padded axis placed by a 0/1 matrix (einsum), plus the fill on the padded entries

    A negative pad crops; the fill is a known array added (none for 0)."""
    x = node(a["self"], "constant_pad_nd")
    pad, out = [int(p) for p in a["pad"]], x
    inside = np.ones((), dtype=np.float64)
    for k in range(len(pad) // 2):
        d = x.ndim - 1 - k
        lo, hi, n = pad[2 * k], pad[2 * k + 1], x.shape[d]
        m = n + lo + hi
        place = np.zeros((m, n))
        rows = np.arange(n) + lo
        keep = (rows >= 0) & (rows < m)
        place[rows[keep], np.arange(n)[keep]] = 1
        out = along(out, d, place)
        inside = np.multiply.outer(place.sum(1), inside)  # axes last to first
    value = float(a.get("value") or 0)
    if value == 0:
        return out
    fill = (1 - inside) * value  # on the last len(pad)//2 axes, broadcast over the rest
    return elementwise(X[0] + X[1], out, torch.as_tensor(
        fill.reshape((1,) * (len(shape) - fill.ndim) + fill.shape)))


def _spatial(a: dict, x: Node) -> tuple[list[int], list[float | None]]:
    """The output sizes and the scale factors (None: not given) of the spatial axes."""
    k = x.ndim - 2
    scales = a.get("scale_factors") or [None] * k
    sizes = a.get("output_size")
    if sizes is None:
        sizes = [math.floor(n * s) for n, s in zip(x.shape[2:], scales)]
    return [int(s) for s in sizes], list(scales)


def _nearest_picks(d: int, shape: tuple, op: Any, output_size: Any,
                   scale_factors: Any) -> np.ndarray:
    """The 0/1 matrix (out, in) of axis ``d`` of an input of ``shape``: torch's own nearest
    op run on the known index array (arange along ``d``; float64 holds the ids exactly), so
    that the picks are torch's by construction."""
    n = shape[d]
    probe = torch.arange(n, dtype=torch.float64).reshape(
        [n if i == d else 1 for i in range(len(shape))]).expand(
        [1 if i < 2 else shape[i] for i in range(len(shape))]).contiguous()
    ids = op(probe, output_size, scale_factors)[0, 0]
    for i in reversed(range(2, len(shape))):  # the other spatial axes: their first entry
        if i != d:
            ids = ids.select(i - 2, 0)
    return picks(ids.to(torch.long), n)


def _nearest(op: Any) -> Callable:
    def lower(a, shape) -> Node:
        x = node(a["input"], "upsample_nearest")
        out = x
        for d in range(2, x.ndim):
            out = along(out, d, _nearest_picks(d, x.shape, op, a["output_size"],
                                               a["scale_factors"]))
        return out
    return named("each spatial axis picked by torch's own nearest indices (a 0/1 einsum "
                 "per axis, exact)", lower)


def _linear_weights(n: int, m: int, *, align_corners: bool, scale: float | None) -> np.ndarray:
    """The (m, n) matrix of torch's linear interpolation along one axis (its
    ``area_pixel_compute_source_index``), computed in exact rationals and rounded once."""
    if align_corners:
        step = Fraction(n - 1, m - 1) if m > 1 else Fraction(0)
    else:
        step = 1 / Fraction(scale) if scale is not None and scale > 0 else Fraction(n, m)
    W = np.zeros((m, n))
    for j in range(m):
        src = step * j if align_corners else max(step * (j + Fraction(1, 2)) - Fraction(1, 2),
                                                 Fraction(0))
        i0 = min(math.floor(src), n - 1)
        i1 = i0 + (1 if i0 < n - 1 else 0)
        lam = min(max(src - i0, Fraction(0)), Fraction(1))
        W[j, i0] += float(1 - lam)
        W[j, i1] += float(lam)
    return W


def _in_run(W: np.ndarray) -> np.ndarray | Node:
    """Interpolation weights as the run holds them: exactly when float32 can (dyadic weights:
    a scale factor of 2); in a float64 capture, a held input block (float64, within half an
    ULP of the exact weight, as torch's float64 kernel computes it); else rounded to float32,
    the precision torch's float32 kernel computes them in."""
    if np.array_equal(W.astype(np.float32).astype(np.float64), W):
        return W
    if holds_float64():
        return node(torch.as_tensor(W), "upsample weights")
    return W.astype(np.float32).astype(np.float64)


def _linear(a, shape) -> Node:
    """einsum with the interpolation weights along each spatial axis (torch's formula)

    The weights in exact rationals, rounded once to the run's dtype (``_in_run``)."""
    x = node(a["input"], "upsample_linear")
    sizes, scales = _spatial(a, x)
    out = x
    for k, (m, s) in enumerate(zip(sizes, scales)):
        out = along(out, k + 2, _in_run(_linear_weights(
            x.shape[k + 2], m, scale=s, align_corners=bool(a["align_corners"]))))
    return out


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def _bag_max(rows: Node, members: list[list[int]]) -> Node:
    """Each bag's rows placed on a slot axis (a 0/1 einsum; a short bag's free slots hold its
    first row again: a tie between copies of one entry), then max over the slots; an empty
    bag's slots are all 0 (torch's empty bag: 0)."""
    place = np.zeros((len(members), max(max(map(len, members)), 1), rows.shape[0]))
    for b, rows_of in enumerate(members):
        for k in range(place.shape[1]) if rows_of else ():
            place[b, k, rows_of[k] if k < len(rows_of) else rows_of[0]] = 1
    return max_(einsum("bkn,nd->bkd", const(place, "bag slots"), rows), 1)


def _embedding_bag(a, shape) -> tuple:
    """one-hot rows picked (einsum), summed per bag (einsum), / bag size (mean), or max

    The picked rows are multiplied by per_sample_weights when given (a node or known); ids
    equal to padding_idx are left out of their bags (and of a mean's count); max:
    ``_bag_max``."""
    W = node(a["weight"], "embedding_bag")
    ids = known_index(a["indices"], "embedding_bag").reshape(-1)
    offsets = known_index(a["offsets"], "embedding_bag").reshape(-1).tolist()
    mode = _BAG_MODES[int(a["mode"])]
    pad = a.get("padding_idx")
    ends = offsets[1:] + ([] if a.get("include_last_offset") else [len(ids)])
    members = [[i for i in range(s, e) if pad is None or pad < 0 or int(ids[i]) != pad]
               for s, e in zip(offsets, ends)]
    rows = einsum("nv,vd->nd", const(picks(ids, W.shape[0]), "ids"), W)
    if mode == "max":
        return _bag_max(rows, members), None, None, None
    bags = np.zeros((len(members), len(ids)))
    for b, rows_of in enumerate(members):
        bags[b, rows_of] = 1
    weights = a.get("per_sample_weights")
    if weights is not None:  # a column (n, 1): a node (differentiated) or a known array
        column = (reshape(weights, (len(ids), 1)) if isinstance(weights, Node)
                  else weights.reshape(-1, 1))
        rows = elementwise(X[0] * X[1], rows, column)
    out = einsum("bn,nd->bd", const(bags, "bags"), rows)
    if mode == "mean":
        size = np.maximum(bags.sum(1), 1).reshape(-1, 1)
        out = elementwise(X[0] / X[1], out, torch.as_tensor(size))
    return out, None, None, None  # offset2bag, bag_size, max_indices: not captured


LAYOUT_ROWS: dict[Any, Callable] = {
    aten.repeat.default: _repeat, aten.constant_pad_nd.default: _constant_pad,
    **{getattr(aten, f"upsample_nearest{k}d").vec: _nearest(getattr(aten, f"upsample_nearest"
                                                                        f"{k}d").vec)
       for k in (1, 2, 3)},
    **{getattr(aten, f"_upsample_nearest_exact{k}d").vec: _nearest(
        getattr(aten, f"_upsample_nearest_exact{k}d").vec) for k in (1, 2, 3)},
    aten.upsample_linear1d.vec: _linear, aten.upsample_bilinear2d.vec: _linear,
    aten.upsample_trilinear3d.vec: _linear,
    aten._embedding_bag.default: _embedding_bag,
}
