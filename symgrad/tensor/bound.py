"""The tensor-level first-order rounding-error bound E (units of the unit roundoff u).

Walks the same program as the numpy view, in float64, carrying beside each value an array E
with |fl(v) - v| <~ u * E entrywise. One rule per op (``RULES``):

    leaf, const, onehot         0 (values are rounded to the dtype when drawn; masks are 0/1)
    map f(x_1..x_k)             the scalar running bound of f (symgrad.bounds.error_source):
                                sum |df/dx_i| E_i + the rounding of f's own operations
    einsum of k operands,       sum_i einsum(|x_1|..E_i..|x_k|) + (n - 1 + k - 1) einsum(|x_1|..|x_k|)
      n terms per output        (any summation order: recursive, pairwise or blocked BLAS)
    sum of n entries            sum E + (n - 1) sum |x|
    max                         max E (a max rounds nothing)
    stop (a softmax shift)      0: the result does not depend on the shift, nor on its error
    layout, take                the same op applied to E
    scatter_add (T rows)        scatter_add(E) + (T - 1) scatter_add(|x|)

``symgrad.compare`` multiplies E by the tolerance's safety factor; the bound is evaluated on the
gradient program, so a gradient entry that is tiny through cancellation gets the allowance of
the terms that cancelled, and a well-conditioned one a few ULPs times the contraction length.

>>> import numpy as np, symgrad.tensor as st
>>> a, b = st.param("a", (3,)), st.param("b", (3,))
>>> E = evaluate_bound([st.sum_(a * b)], {"a": np.ones((1, 3)), "b": np.ones((1, 3))})[0]
>>> float(E[0])  # each product rounds once (3 x |1|), then two additions of 3 terms
9.0
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import sympy as sp

from ..bounds import error_source
from ..codegen import Printer, build
from .interpret import RULES as VALUE_RULES
from .program import X, Node, topological
from .tables import NumpyOps

_T = NumpyOps("float64")
_CACHE: dict = {}


def _map_bound_fn(expr: sp.Expr, k: int) -> Callable:
    """``f(values..., errors...) -> E`` of one map expression, compiled once."""
    key = (expr, k)
    fn = _CACHE.get(key)
    if fn is None:
        from ..backends.numpy import target
        names = {X[i]: f"a{i}" for i in range(k)}
        pr = Printer(target("float64"), names)
        err = {X[i]: f"e{i}" for i in range(k)}
        src = error_source(expr, pr, err)
        args = ", ".join([f"a{i}" for i in range(k)] + [f"e{i}" for i in range(k)])
        lines = [f"def mapbound({args}):", f"    return {src}"]
        fn = build(lines, pr.t, pr, "mapbound")
        _CACHE[key] = fn
    return fn


def _einsum_terms(node: Node) -> int:
    ins, out = node.attrs["spec"].split("->")
    sizes = {}
    for sub, a in zip(ins.split(","), node.args):
        sizes.update(zip(sub, a.shape))
    return int(np.prod([n for c, n in sizes.items() if c not in out], dtype=np.int64))


def _b_map(node, vals, errs, value):
    k = len(vals)
    with np.errstate(all="ignore"):
        E = _map_bound_fn(node.attrs["expr"], k)(*vals, *errs)
    E = np.broadcast_to(np.asarray(E, dtype=np.float64), np.shape(value))
    return np.where(np.isnan(E), np.inf, E)


def _b_einsum(node, vals, errs, value):
    absv = [np.abs(v) for v in vals]
    count = _einsum_terms(node) - 1 + len(vals) - 1
    total = VALUE_RULES["einsum"](node, _T, absv, None) * count if count else 0.0
    for i, e in enumerate(errs):
        if np.any(e):
            total = total + VALUE_RULES["einsum"](node, _T, absv[:i] + [e] + absv[i + 1:], None)
    return np.broadcast_to(total, np.shape(value))


def _b_sum(node, vals, errs, value):
    axes = tuple(a + 1 for a in node.attrs["axes"])
    n = int(np.prod([node.args[0].shape[a - 1] for a in axes], dtype=np.int64))
    return np.sum(errs[0], axis=axes) + (n - 1) * np.sum(np.abs(vals[0]), axis=axes)


def _b_max(node, vals, errs, value):
    return np.max(errs[0], axis=tuple(a + 1 for a in node.attrs["axes"]))


def _zeros(node: Node) -> np.ndarray:
    return np.broadcast_to(np.zeros(()), (1,) + node.shape)  # no memory


def _b_zero(node, vals, errs, value):
    return _zeros(node)


def _b_same(node, vals, errs, value):
    """Layout ops and take: the op itself applied to E (integer operands pass unchanged)."""
    args = [e if not a.integer else v for a, v, e in zip(node.args, vals, errs)]
    return VALUE_RULES[node.op](node, _T, args, None)


def _b_scatter(node, vals, errs, value):
    rows, ids = vals
    t = max(int(np.prod(node.args[1].shape)) - 1, 0)
    e = VALUE_RULES["scatter_add"](node, _T, [errs[0], ids], None)
    if t:
        e = e + t * VALUE_RULES["scatter_add"](node, _T, [np.abs(rows), ids], None)
    return e


RULES: dict[str, Callable] = {
    "map": _b_map, "einsum": _b_einsum, "sum": _b_sum, "max": _b_max, "stop": _b_zero,
    "onehot": _b_zero, "reshape": _b_same, "transpose": _b_same, "broadcast": _b_same,
    "take": _b_same, "scatter_add": _b_scatter,
}


def evaluate_bound(outputs: Iterable[Node], leaves: Mapping[str, np.ndarray], *,
                   progress=None) -> list[np.ndarray]:
    """E of each output (float64, with the batch axis), from float64 values of ``leaves``.

    Arguments:
        outputs: nodes (typically the loss and its gradient nodes).
        leaves: block name -> array (N, *shape).
        progress: optional callable(done, total).
    Returns:
        One array per output, broadcast to (N, *shape).
    """
    outputs = list(outputs)
    order = topological(outputs)
    last = {a.id: i for i, n in enumerate(order) for a in n.args}
    for o in outputs:
        last[o.id] = len(order)
    vals: dict[int, np.ndarray] = {}
    errs: dict[int, np.ndarray] = {}
    n = max(np.shape(v)[0] for v in leaves.values())
    for i, node in enumerate(order):
        if node.op in ("param", "input"):
            v = np.asarray(leaves[node.name])
            vals[node.id] = v.astype(np.int64) if node.integer else v.astype(np.float64)
            errs[node.id] = _zeros(node)
        elif node.op == "const":
            vals[node.id] = node.attrs["value"][None]
            errs[node.id] = _zeros(node)
        else:
            args = [vals[a.id] for a in node.args]
            with np.errstate(all="ignore"):
                vals[node.id] = VALUE_RULES[node.op](node, _T, args, None)
                errs[node.id] = RULES[node.op](node, args, [errs[a.id] for a in node.args],
                                               vals[node.id])
        for a in node.args:
            if last.get(a.id) == i:
                vals.pop(a.id, None)
                errs.pop(a.id, None)
        if progress is not None:
            progress(i + 1, len(order))
    return [np.broadcast_to(errs[o.id], (n,) + o.shape) for o in outputs]

