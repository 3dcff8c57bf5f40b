"""The one interpreter: walks a tensor program and calls an array-ops table, node by node.

Every value carries a leading batch axis (size N, or 1 for constants, broadcast on use), so
numpy and torch run a whole batch of samples per op; the oracle runs N = 1 at a time. Integer
inputs stay numpy integer arrays (N, ...). The rule of each op is one row of ``RULES``.

>>> import numpy as np, symgrad.tensor as st
>>> from symgrad.tensor.tables import NumpyOps
>>> W, x = st.param("W", (2, 2)), st.input("x", (2,))
>>> y = st.sum_(st.einsum("ij,j->i", W, x))
>>> evaluate([y], NumpyOps(), {"W": np.ones((3, 2, 2)), "x": np.ones((3, 2))})[0].tolist()
[4.0, 4.0, 4.0]
"""

from __future__ import annotations

import string
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import sympy as sp

from ..errors import SymgradError
from .program import X, Node
from .recompute import AUTO, plan


def _batch(t, v) -> int:
    return t.shape(v)[0]


def _full(t, v, n: int):
    s = t.shape(v)
    return v if s[0] == n else t.broadcast_to(v, (n,) + tuple(s[1:]))


def _einsum(node, t, vals, ctx):
    spec = node.attrs["spec"]
    b = next(c for c in string.ascii_letters if c not in spec)
    n = max(_batch(t, v) for v in vals)
    ins, out = spec.split("->")
    batched = ",".join(b + s for s in ins.split(",")) + "->" + b + out
    return t.einsum(batched, *[_full(t, v, n) for v in vals])


_RATIONAL: dict = {}


def _rational_constants(expr):
    """``expr`` with each irrational constant (sqrt(2/pi), 1/sqrt(2)...) replaced by a
    rational within 1e-120 of it: every table then converts its constants as numbers (a
    float table rounds both to the same double; a high-precision table keeps ~1e-120)."""
    got = _RATIONAL.get(expr)
    if got is None:
        found: dict = {}

        def visit(e):
            if e.is_number and not e.is_Rational and not isinstance(e, sp.Piecewise):
                value = sp.N(e, 130)
                if value.is_real and value.is_finite:
                    found[e] = sp.Rational(value)
                return
            for a in e.args:
                if isinstance(a, sp.Expr):
                    visit(a)
        visit(expr)
        got = expr.xreplace(found) if found else expr
        _RATIONAL[expr] = got
    return got


def _map(node, t, vals, ctx):
    expr = node.attrs["expr"]
    if not getattr(t, "symbolic", False):
        expr = _rational_constants(expr)
    return t.map(expr, {X[i]: v for i, v in enumerate(vals)})


def _shift(axes):
    return tuple(a + 1 for a in axes)


def _sum(node, t, vals, ctx):
    return t.sum(vals[0], _shift(node.attrs["axes"]))


def _max(node, t, vals, ctx):
    return t.amax(vals[0], _shift(node.attrs["axes"]))


def _reshape(node, t, vals, ctx):
    return t.reshape(vals[0], (_batch(t, vals[0]),) + node.shape)


def _transpose(node, t, vals, ctx):
    return t.transpose(vals[0], (0,) + _shift(node.attrs["perm"]))


def _broadcast(node, t, vals, ctx):
    return t.broadcast_to(vals[0], (_batch(t, vals[0]),) + node.shape)


def _flat_ids(ids: np.ndarray, size: int, n_table: int, what: str) -> np.ndarray:
    """Per-sample ids (N, ...) as row numbers of the batch-flattened table (N_table*size, ...)."""
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        bad = ids[(ids < 0) | (ids >= size)][0]
        raise SymgradError(f"{what}: id {bad} is outside 0..{size - 1}")
    offsets = np.arange(ids.shape[0]) * size if n_table > 1 else np.zeros(ids.shape[0], int)
    return (ids + offsets.reshape((-1,) + (1,) * (ids.ndim - 1))).reshape(-1)


def _take(node, t, vals, ctx):
    table, ids = vals
    shape = t.shape(table)
    n_tab, V = shape[0], shape[1]
    n = max(n_tab, ids.shape[0])
    ids = np.broadcast_to(ids, (n,) + ids.shape[1:])
    rows = t.reshape(table, (n_tab * V,) + tuple(shape[2:]))
    flat = _flat_ids(ids, V, n_tab, f"take from {node.args[0].name or 'table'} "
                                    f"by {node.args[1].name!r}")
    return t.reshape(t.take(rows, flat, 0), (n,) + node.shape)


def _scatter_add(node, t, vals, ctx):
    rows, ids = vals
    size = node.attrs["size"]
    n = max(_batch(t, rows), ids.shape[0])
    ids = np.broadcast_to(ids, (n,) + ids.shape[1:])
    rows = _full(t, rows, n)
    rest = node.shape[1:]
    flat_rows = t.reshape(rows, (int(np.prod(ids.shape)),) + rest)
    flat = _flat_ids(ids, size, n, f"scatter_add by {node.args[1].name!r}")
    return t.reshape(t.scatter_add(flat_rows, flat, 0, n * size), (n,) + node.shape)


def _onehot(node, t, vals, ctx):
    ids = vals[0]
    size = node.attrs["size"]
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        raise SymgradError(f"onehot of {node.args[0].name!r}: an id is outside 0..{size - 1}")
    return t.asarray((ids[..., None] == np.arange(size)).astype(np.float64))


def _stop(node, t, vals, ctx):
    """The value; a table with autograd cuts the gradient here (``t.stop``: torch's detach),
    as the derived program does. Letting it flow through a softmax's max shift adds
    (1 - sum p) ~ sqrt(n) u of rounding noise at the argmax: zero in exact arithmetic,
    outside a tight bound where p_max is small (a 7000-way softmax: 1e-12 relative)."""
    stop = getattr(t, "stop", None)
    return stop(vals[0]) if stop is not None else vals[0]


RULES: dict[str, Callable] = {
    "einsum": _einsum, "map": _map, "sum": _sum, "max": _max, "stop": _stop,
    "reshape": _reshape, "transpose": _transpose, "broadcast": _broadcast, "take": _take,
    "scatter_add": _scatter_add, "onehot": _onehot,
}


def _one_walk(v, i: int):
    """Walk ``i``'s part of a value of stacked walks (a value of one: the same for all)."""
    return v if v.shape[0] == 1 else v[i:i + 1]


def _stack(parts: list):
    """The values of one node in each walk, stacked on the batch axis (a double-double whose
    parts all have a zero low part keeps its zero view)."""
    kind = type(parts[0])
    if any(type(p) is not kind for p in parts):
        raise SymgradError(f"stacked walks gave one node values of types {kind.__name__} "
                           f"and {next(type(p) for p in parts if type(p) is not kind).__name__}")
    if kind is np.ndarray:
        return np.concatenate(parts)
    if isinstance(getattr(parts[0], "hi", None), np.ndarray):  # a double-double (hi, lo)
        hi = np.concatenate([p.hi for p in parts])
        if all(p.lo_is_zero_view for p in parts):
            return kind(hi)
        return kind(hi, np.concatenate([p.lo for p in parts]))
    raise SymgradError(f"stacked walks need double-double or numpy values, not {kind.__name__}")


def _einsum_apart(node, t, vals, ctx):
    """``einsum`` over a batch that stacks separate walks (``evaluate_walks``): each walk's
    product as the walk alone computes it (a double-double product's Ozaki split and its exact
    one-hot selection look at the whole batch): in one call under a table that keeps the walks
    apart in its products (``t.apart``: ``DDOps``), else walk by walk."""
    n = max(_batch(t, v) for v in vals)
    if n == 1:
        return _einsum(node, t, vals, ctx)
    apart = getattr(t, "apart", None)
    if apart is not None:
        return _einsum(node, apart(n), vals, ctx)
    return _stack([_einsum(node, t, [_one_walk(v, i) for v in vals], ctx) for i in range(n)])


_WALKS = {"einsum": _einsum_apart}  # the rules of ``evaluate_walks``


def evaluate(outputs: Iterable[Node], table, leaves: Mapping[str, object], *,
             on_node: Callable[[Node, object], None] | None = None, progress=None,
             on_step: Callable[[Node, list, object], None] | None = None,
             rules: Mapping[str, Callable] | None = None,
             emit: Callable[[int, object], None] | None = None,
             reference: Mapping[int, object] | None = None) -> list:
    """Values of ``outputs`` (each with a leading batch axis) under ``table``.

    Arguments:
        outputs: nodes to return.
        table: an array-ops table (``symgrad.tensor.tables``, ``symgrad.precise``).
        leaves: block name -> array (N, *shape); float blocks go through ``table.asarray``
            unless already converted, integer inputs stay numpy integer arrays.
        on_node: called with every computed (node, value) (e.g. the bound's walk).
        progress: optional callable(n_done, n_total) while walking.
        on_step: called with (node, its operands' values, its value) for every computed
            non-leaf node, before operands are freed (the oracle's spot certification).
        rules: op name -> a replacement rule for that node kind (the rigorous walk's max
            reduction derivative, ``symgrad.rigorous.max_top``).
        emit: called with (index in ``outputs``, value) for each output as soon as no later
            node reads it, the value then dropped (the oracle's hi and lo written block by
            block: no whole gradient held in the table's type).
        reference: node id -> its value in an earlier walk of the same program under the same
            table (every node, e.g. kept by ``on_node``): a node whose value is bitwise that
            one (``identical``) takes the reference's value, and a node all of whose operands
            did is not computed again (the sides of the kinks, ``symgrad.tensor.sides``: each
            choice of sides changes a few selectors, and most values after them stay the
            same). The values returned are those of a walk without it.
    Returns:
        The list of output values in the table's array type (with ``emit``: None each).

    A large gradient program walks with its forward's layers computed again in its backward
    (``symgrad.tensor.recompute``: the same values, held for less long; callbacks and progress
    see each node once); not with ``reference``.
    """
    outputs = list(outputs)
    walk = plan(outputs, above=AUTO if reference is None else None)
    index: dict[int, list[int]] = {}
    for k, o in enumerate(outputs):
        index.setdefault(o.id, []).append(k)
    values: dict[int, object] = {}
    final: dict[int, object] = {}  # the outputs, once no later step reads them
    same: set[int] = set()  # nodes whose value is the reference's
    done = 0
    for i, node in enumerate(walk.steps):
        if (reference is not None and node.args and node.id in reference
                and all(a.id in same for a in node.args)):
            values[node.id] = reference[node.id]
            same.add(node.id)
        elif node.op in ("param", "input"):
            if node.name not in leaves:
                raise SymgradError(f"no values given for block {node.name!r}")
            v = leaves[node.name]
            if node.integer:
                v = np.asarray(v).astype(np.int64)
            elif isinstance(v, np.ndarray):
                v = table.asarray(v)
            values[node.id] = v
        elif node.op == "const":
            values[node.id] = table.asarray(node.attrs["value"][None])
        else:
            args = [values[a.id] for a in node.args]
            try:
                rule = rules.get(node.op) if rules else None
                values[node.id] = (rule or RULES[node.op])(node, table, args, None)
            except SymgradError:
                raise
            except Exception as exc:  # a table failed: say which op and shapes
                raise SymgradError(f"{getattr(table, 'name', type(table).__name__)}: evaluating "
                                   f"{node.op} {node.attrs.get('spec') or node.attrs.get('expr') or ''}"
                                   f" on shapes {[a.shape for a in node.args]} failed: {exc}"
                                   ) from exc
        if (reference is not None and node.id not in same and node.id in reference
                and identical(values[node.id], reference[node.id])):
            values[node.id] = reference[node.id]
            same.add(node.id)
        if not walk.again[i]:  # a recomputed value (bitwise the first) is not seen twice
            done += 1
            if on_node is not None:
                on_node(node, values[node.id])
            if on_step is not None and node.args:
                on_step(node, [values[a.id] for a in node.args], values[node.id])
        for a in walk.frees[i]:  # free what no later step reads (big programs)
            if a.id in index:  # an output, final now
                value = values.pop(a.id)
                if emit is None:
                    final[a.id] = value
                for k in index[a.id] if emit is not None else ():
                    emit(k, value)
            else:
                values.pop(a.id, None)
        if progress is not None and not walk.again[i]:
            progress(done, walk.walked)
    if emit is not None:
        return [None] * len(outputs)
    return [final[o.id] for o in outputs]


def evaluate_walks(outputs: Iterable[Node], table, leaves: Mapping[str, object],
                   walks: Sequence[Mapping[str, np.ndarray]], *,
                   reference: Mapping[int, object] | None = None,
                   on_node: Callable[[Node, object], None] | None = None) -> list:
    """The values of ``outputs`` in several walks of one sample that differ in some leaves
    (the sides of the kinks, ``symgrad.tensor.sides``), computed as one walk with the walks
    stacked on the batch axis: walk ``i``'s values are entry ``i`` of each value, bitwise those
    of ``evaluate`` on its leaves alone, for a table that acts on each entry of the batch apart
    in every op but a product (the tables with ``per_sample``: ``DDOps``); products run one
    walk at a time (``_einsum_apart``). A node whose operands are the same in every walk is
    computed once (its value keeps a batch of one), and a leaf the walks give bitwise the same
    is not stacked.

    Arguments:
        outputs, table: as ``evaluate``.
        leaves: block name -> array (1, *shape), the same in every walk.
        walks: per walk, block name -> array (1, *shape) (each walk the same names).
        reference, on_node: as ``evaluate`` (a reference's values have a batch of one).
    Returns:
        The output values, each with a batch of ``len(walks)`` or of one (the same in all).

    >>> import numpy as np, symgrad.tensor as st
    >>> from symgrad.tensor.tables import NumpyOps
    >>> W, x = st.param("W", (2,)), st.input("x", (2,))
    >>> y = st.sum_(st.einsum("i,i->i", W, x))
    >>> walks = [{"x": np.array([[1.0, 2.0]])}, {"x": np.array([[0.0, 5.0]])}]
    >>> evaluate_walks([y], NumpyOps(), {"W": np.ones((1, 2))}, walks)[0].tolist()
    [3.0, 5.0]
    """
    stacked = dict(leaves)
    for name in walks[0] if walks else ():
        arrs = [np.asarray(w[name]) for w in walks]
        first = arrs[0]
        if first.ndim == 0 or first.shape[0] != 1:
            raise SymgradError(f"evaluate_walks: block {name!r} of walk 0 has shape "
                               f"{first.shape}; give each walk's leaves a batch of one")
        same = all(a.shape == first.shape and a.dtype == first.dtype
                   and a.tobytes() == first.tobytes() for a in arrs[1:])
        stacked[name] = first if same else np.concatenate(arrs)
    return evaluate(outputs, table, stacked, rules=_WALKS, reference=reference, on_node=on_node)


def identical(a, b) -> bool:
    """Whether two values of a table are bitwise the same: a double-double array's hi and lo
    (and whether lo is its zero view), or one array's type, shape, dtype and bits (``-0.0``
    is not ``0.0``, NaNs by payload). Anything else: False.

    >>> import numpy as np
    >>> identical(np.zeros(2), np.zeros(2)), identical(np.zeros(2), -np.zeros(2))
    (True, False)
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        size = a.dtype.itemsize
        if a.shape != b.shape or a.dtype != b.dtype or size not in (1, 2, 4, 8):
            return False
        bits = np.dtype(f"u{size}")  # same item size: a view of any strides
        return bool(np.array_equal(a.view(bits), b.view(bits)))
    hi, lo = getattr(a, "hi", None), getattr(a, "lo", None)
    if isinstance(hi, np.ndarray) and isinstance(lo, np.ndarray):
        return (getattr(a, "lo_is_zero_view", None) == getattr(b, "lo_is_zero_view", None)
                and identical(hi, b.hi) and identical(lo, b.lo))
    return False
