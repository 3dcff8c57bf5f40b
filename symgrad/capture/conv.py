"""Rows of the ATen table for convolutional networks: convolution, batch norm, pooling.

A convolution is an einsum over a gathered (im2col) view: along each spatial axis a 0/1
selection tensor S (out, kernel, in) with ``S[i, k, i*stride + k*dilation - padding] = 1``
picks each window's entries (zero padding is a missing 1), which is exact (one term per
entry); one contraction with the weight then gives the output. A transposed convolution
contracts the same S over its other axis (input position i scattered to output position p)
before the weight (the adjoint of the gather). Max pooling (fixed or adaptive windows) picks
each window's entries inside the input, grouped by how many they are (``grouped_max``), and
takes a max reduction.

>>> S = _windows(5, 3, stride=2, padding=1, dilation=1, out=3)
>>> S.shape, int(S.sum())
((3, 3, 5), 7)
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import sympy as sp
import torch

from ..errors import SymgradError
from ..tensor import ops as st_ops
from ..tensor.program import X, Node, add_all, const, einsum, max_, reshape
from .values import elementwise, named, node, number

aten = torch.ops.aten
_SP = "pqrs"  # spatial output axes; the kernel axes are "uvwx", the input axes "PQRS"
_K = "uvwx"
_IN = "PQRS"
_L = "abcdefghijklmnopqrstuvwx"  # axis letters; "y", "z" are a window tensor's own


def _windows(size: int, kernel: int, *, stride: int, padding: int, dilation: int,
             out: int) -> np.ndarray:
    """S (out, kernel, size): 1 where output i's window entry k reads input position p
    (outside the input: nothing)."""
    S = np.zeros((out, kernel, size))
    for i in range(out):
        for k in range(kernel):
            p = i * stride + k * dilation - padding
            if 0 <= p < size:
                S[i, k, p] = 1
    return S


def _per_axis(v, n: int) -> list[int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * n if len(v) == 1 else v


def _patches(x: Node, kernel: list[int], stride, padding, dilation, out: list[int],
             transposed: bool = False) -> Node:
    """(N, C, *out, *kernel) windows of x (N, C, *spatial), axis by axis (each step exact).
    ``transposed``: a transposed convolution's scatter instead, the adjoint: input entry i
    times kernel entry k lands on output position ``i*stride + k*dilation - padding`` (the
    same 0/1 tensor, contracted over its other axis)."""
    k = len(kernel)
    stride, padding, dilation = (_per_axis(v, k) for v in (stride, padding, dilation))
    y = x
    done_out, done_k = "", ""
    for a in range(k):
        if transposed:  # (in, kernel, out), read from the output's side
            S = _windows(out[a], kernel[a], stride=stride[a], padding=padding[a],
                         dilation=dilation[a], out=x.shape[2 + a])
            spec, name = _IN[a] + _K[a] + _SP[a], "scatter"
        else:  # (out, kernel, in)
            S = _windows(x.shape[2 + a], kernel[a], stride=stride[a], padding=padding[a],
                         dilation=dilation[a], out=out[a])
            spec, name = _SP[a] + _K[a] + _IN[a], "window"
        rest = _IN[a + 1:k]
        src = "nc" + done_out + _IN[a] + rest + done_k
        dst = "nc" + done_out + _SP[a] + rest + done_k + _K[a]
        y = einsum(f"{src},{spec}->{dst}", y, const(S, name))
        done_out, done_k = done_out + _SP[a], done_k + _K[a]
    return y


def _convolution(a: dict, shape) -> Node:
    """einsum of the weight with im2col windows, or a scatter (transposed); 0/1 einsums, exact

    Transposed (ConvTranspose): the input scattered onto the output positions (``_scatter``),
    the weight (C_in, C_out/groups, *kernel).
    """
    x, W = node(a["input"], "convolution"), node(a["weight"], "convolution")
    k, g = W.ndim - 2, int(a["groups"])
    if x.ndim != k + 2:
        raise SymgradError(f"capture: convolution of an unbatched input {x.shape}")
    out, transposed = list(shape[2:]), bool(a["transposed"])
    n, C, O = x.shape[0], x.shape[1], int(shape[1]) if transposed else W.shape[0]
    sp_, kk = _SP[:k], _K[:k]
    P = reshape(_patches(x, list(W.shape[2:]), a["stride"], a["padding"], a["dilation"], out,
                         transposed=transposed), (n, g, C // g, *out, *W.shape[2:]))
    # the weight's groups: (C_in, C_out/g, *kernel) transposed, else (C_out, C_in/g, *kernel)
    w = f"gco{kk}" if transposed else f"goc{kk}"
    Wg = reshape(W, (g, *((C // g, O // g) if transposed else (O // g, C // g)), *W.shape[2:]))
    y = reshape(einsum(f"ngc{sp_}{kk},{w}->ngo{sp_}", P, Wg), (n, O, *out))
    return _bias(y, a, O, k)


def _bias(y: Node, a: dict, O: int, k: int) -> Node:
    """y plus the convolution's bias (O,) over its channel axis, if it has one."""
    if a.get("bias") is None:
        return y
    return elementwise(X[0] + X[1], y, reshape(node(a["bias"], "convolution"),
                                               (1, O) + (1,) * k))


def _channel(v: Any, ndim: int) -> Any:
    """A per-channel vector (C,) as (1, C, 1, ...) to broadcast over (N, C, ...)."""
    if v is None or not isinstance(v, Node):
        return v
    return reshape(v, (1, v.shape[0]) + (1,) * (ndim - 2))


def moments(x: Node, axes: tuple[int, ...]) -> tuple[Node, Node]:
    """The mean and the biased variance of ``x`` over ``axes`` (kept as size-1 axes): a batch
    norm's batch statistics, a group norm's per group (``norms``)."""
    mu = st_ops.mean(x, axes, keepdims=True)
    return mu, st_ops.mean(elementwise((X[0] - X[1]) ** 2, x, mu), axes, keepdims=True)


def standardize(x: Node, mean: Node, var: Node, eps: Any) -> Node:
    """(x - mean) / sqrt(var + eps), one map."""
    return elementwise((X[0] - X[1]) / sp.sqrt(X[2] + number(eps)), x, mean, var)


def _normalize(x: Node, mean: Node, var: Node, a: dict) -> Node:
    y = standardize(x, mean, var, a["eps"])
    if a.get("weight") is not None:
        y = elementwise(X[0] * X[1], y, _channel(a["weight"], x.ndim))
    if a.get("bias") is not None:
        y = elementwise(X[0] + X[1], y, _channel(a["bias"], x.ndim))
    return y


def _batch_norm_train(a: dict, shape) -> tuple:
    """batch statistics: mean, biased variance over (N, spatial); running stats not captured"""
    x = node(a["input"], "batch_norm")
    mu, var = moments(x, (0,) + tuple(range(2, x.ndim)))
    return _normalize(x, mu, var, a), None, None, None, None


def _batch_norm_eval(a: dict, shape) -> tuple:
    """running statistics (buffers, held at their values): (x - mean)/sqrt(var + eps)"""
    x = node(a["input"], "batch_norm")
    mean = _channel(node(a["running_mean"], "batch_norm"), x.ndim)
    var = _channel(node(a["running_var"], "batch_norm"), x.ndim)
    return _normalize(x, mean, var, a), None, None


def _max_pool(a: dict, shape) -> tuple:
    """max reduction over the windows' entries inside the input (grouped; ties are kinks)

    Padding is left out, never an edge entry's copy (``by_length``)."""
    x = node(a["self"], "max_pool")
    k = x.ndim - 2
    kernel = _per_axis(a["kernel_size"], k)
    stride, padding, dilation = (_per_axis(v, k) for v in (
        a.get("stride") or kernel, a["padding"], a["dilation"]))
    return grouped_max(x, [[
        [p for j in range(kernel[d]) if 0 <= (p := i * stride[d] + j * dilation[d]
                                              - padding[d]) < x.shape[2 + d]]
        for i in range(int(shape[2 + d]))] for d in range(k)]), None


def adaptive_windows(size: int, out: int) -> list[list[int]]:
    """The input positions of each of ``out`` adaptive windows along an axis of ``size``:
    torch's [floor(i size / out), ceil((i + 1) size / out)) (overlapping where out does not
    divide size).

    >>> adaptive_windows(5, 3)
    [[0, 1], [1, 2, 3], [3, 4]]
    """
    return [list(range(i * size // out, -(-(i + 1) * size // out))) for i in range(out)]


def by_length(windows: list[list[int]], size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The windows of one axis grouped by how many entries they hold, L: (S, place) per group,
    S (n_L, L, size) 0/1 picking each window's entries, place (out, n_L) where its max goes.
    No window holds an entry twice: a copy (edge-replicated padding, a short window filled
    up) would tie with itself at the max, a kink that is none, and leave every entry behind it
    undecided.

    >>> [(S.shape, place.tolist()) for S, place in by_length([[0, 1], [1, 2, 3], [3, 4]], 5)]
    [((2, 2, 5), [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), ((1, 3, 5), [[0.0], [1.0], [0.0]])]
    """
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(len(w), []).append(i)
    out = []
    for L, rows in sorted(groups.items()):
        S, place = np.zeros((len(rows), L, size)), np.zeros((len(windows), len(rows)))
        for r, i in enumerate(rows):
            S[r, np.arange(L), windows[i]] = 1
            place[i, r] = 1
        out.append((S, place))
    return out


def grouped_max(x: Node, windows: list[list[list[int]]]) -> Node:
    """The max of ``x`` (N, C, *spatial) over each window (``windows[d][i]``: the positions
    of output i along spatial axis d): per combination of window lengths, 0/1 einsums pick
    the entries (the window axes last), a max reduction, and 0/1 einsums place the maxima
    (skipped where one group holds every window in order); the groups added (exact: their
    places are disjoint)."""
    k = len(windows)
    axes = [by_length(w, x.shape[2 + d]) for d, w in enumerate(windows)]
    parts = []
    for combo in itertools.product(*axes):  # one window length per axis
        y = x
        for d, (S, _) in enumerate(combo):  # axis 2 + d: (n_L, L), L moved last
            sub = _L[:y.ndim]
            y = einsum(f"{sub},yz{sub[2 + d]}->{sub[:2 + d]}y{sub[3 + d:]}z", y,
                       const(S, "window"))
        y = max_(y, tuple(range(2 + k, 2 + 2 * k)))
        for d, (_, place) in enumerate(combo):  # each window's max to its place
            if place.shape[0] == place.shape[1]:  # one group: every window, in order
                continue
            sub = _L[:y.ndim]
            y = einsum(f"{sub},y{sub[2 + d]}->{sub[:2 + d]}y{sub[3 + d:]}", y,
                       const(place, "place"))
        parts.append(y)
    return add_all(parts)


def _adaptive_max_pool(k: int) -> Callable:
    def lower(a: dict, shape) -> tuple:
        x = node(a["self"], "adaptive_max_pool")
        if x.ndim == k + 1:  # unbatched (C, *spatial)
            y, _ = lower({"self": reshape(x, (1,) + x.shape)}, (1,) + tuple(shape))
            return reshape(y, tuple(shape)), None
        return grouped_max(x, [adaptive_windows(x.shape[2 + d], int(shape[2 + d]))
                               for d in range(k)]), None
    return named("max reduction over torch's adaptive windows (0/1 einsums, grouped by window "
                 "length; overlapping where the sizes do not divide; ties are kinks)", lower)


def _avg_pool(a: dict, shape) -> Node:
    """mean over the zero-padded windows (count_include_pad)"""
    x = node(a["self"], "avg_pool")
    k = x.ndim - 2
    kernel = _per_axis(a["kernel_size"], k)
    if a.get("divisor_override") or (not a.get("count_include_pad", True)
                                     and any(_per_axis(a["padding"], k))):
        raise SymgradError("capture: avg_pool with divisor_override or count_include_pad=False "
                           "and padding is not supported yet")
    P = _patches(x, kernel, a.get("stride") or kernel, a["padding"], 1, list(shape[2:]))
    return st_ops.mean(P, tuple(range(2 + k, 2 + 2 * k)))


CONV_ROWS: dict[Any, Callable] = {
    aten.convolution.default: _convolution,
    aten._native_batch_norm_legit_functional.default: _batch_norm_train,
    aten._native_batch_norm_legit.default: _batch_norm_train,
    aten._native_batch_norm_legit.no_stats: _batch_norm_train,  # track_running_stats=False
    aten._native_batch_norm_legit_no_training.default: _batch_norm_eval,
    aten.max_pool2d_with_indices.default: _max_pool,
    aten.max_pool3d_with_indices.default: _max_pool,
    aten.avg_pool2d.default: _avg_pool,
    aten.adaptive_max_pool2d.default: _adaptive_max_pool(2),
    aten.adaptive_max_pool3d.default: _adaptive_max_pool(3),
}
