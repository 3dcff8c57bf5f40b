"""The tensor program: a DAG of whole-array operations, the representation a model is held in.

Every node has a shape (one sample; the views add a leading batch axis) and one op:

    param, input      leaves: a named block; an input may hold integers (token ids, targets)
    const             a constant float array (causal mask), exactly representable
    einsum            a contraction ``spec`` of its operands (matmul, transpose, sums, products)
    map               elementwise: ``expr``, a sympy expression of the symbols ``X[0..k-1]``,
                      one per operand; operands have the node's rank and broadcast over size-1 axes
    sum, max          a reduction over ``axes``
    stop              ``stop_gradient``: the value of its operand, derivative exactly zero. Used for
                      the shift of a stable softmax / logsumexp (``x - max x``): the result does not
                      depend on the shift, so its derivative is exactly zero, and so is the effect
                      of its rounding (the bound gives it no error). Lowerings may replace a
                      stopped shift by 0 (same function). A user's stop-gradient (a captured
                      ``.detach()``, ``.data``, ``torch.no_grad()`` block: attrs ``user``) is
                      read for its value, so its operand's rounding error carries through it.
    reshape, transpose, broadcast   layout
    take              rows of operand 0 (V, ...) picked by integer input operand 1: (T, ...)
    scatter_add       the adjoint of take: rows of operand 0 (T, ...) added into (size, ...)
    onehot            0/1 float array (..., size) from an integer input: constant w.r.t. params

A program's cost follows its operations: GPT-2 124M is a few hundred nodes.

>>> import symgrad.tensor as st
>>> W, x = st.param("W", (3, 2)), st.input("x", (2,))
>>> y = st.einsum("ij,j->i", W, x)
>>> y.shape, len(topological([y]))
((3,), 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import sympy as sp

from ..domains import Domain, Normal, as_domain
from ..errors import SymgradError
from ..freesyms import free_symbols
from .ids import node_ids as _ids
from .rename import rename

X = sp.symbols("x0:16", real=True)  # the argument symbols of every map expression


OPS = ("param", "input", "const", "einsum", "map", "sum", "max", "stop", "reshape",
       "transpose", "broadcast", "take", "scatter_add", "onehot")


@dataclass(eq=False, repr=False)
class Node:
    """One tensor-valued step. Compared and hashed by identity."""

    op: str
    args: tuple["Node", ...]
    shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    name: str = ""  # a leaf's block name, or a label for messages
    id: int = field(default_factory=lambda: _ids())

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _ids.past(self.id)

    def __post_init__(self) -> None:
        assert self.op in OPS, self.op
        self.shape = tuple(int(s) for s in self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def is_leaf(self) -> bool:
        return self.op in ("param", "input", "const")

    @property
    def integer(self) -> bool:
        """Integer-valued (token ids): no derivative flows into or out of it."""
        return bool(self.attrs.get("integer"))

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<{self.op}{label} {self.shape}>"

    # arithmetic reads like numpy: each operator is one map node
    def __add__(self, other):
        return map_(X[0] + X[1], self, other)

    __radd__ = __add__

    def __sub__(self, other):
        return map_(X[0] - X[1], self, other)

    def __rsub__(self, other):
        return map_(X[1] - X[0], self, other)

    def __mul__(self, other):
        return map_(X[0] * X[1], self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return map_(X[0] / X[1], self, other)

    def __rtruediv__(self, other):
        return map_(X[1] / X[0], self, other)

    def __neg__(self):
        return map_(-X[0], self)

    def __pow__(self, k):
        return map_(X[0] ** sp.sympify(k), self)

    def __matmul__(self, other):
        return matmul(self, other)


# ------------------------------------------------------------------------------------ leaves
def param(name: str, shape: Sequence[int], domain: Domain | None = None) -> Node:
    """A parameter block (differentiated with respect to).

    >>> param("W", (2, 3)).shape
    (2, 3)
    """
    return Node("param", (), _shape(name, shape), {"domain": as_domain(domain or Normal(),
                                                     what=f"param {name!r}")}, _name(name))


def input(name: str, shape: Sequence[int], domain: Domain | None = None, *,  # noqa: A001
          integer: bool = False) -> Node:
    """An input block; ``integer=True`` for token ids / targets (used by take / onehot). Given no
    domain, an integer input draws ids in the range its take / onehot index (0..V-1)."""
    d = as_domain(domain or Normal(), what=f"input {name!r}")
    if integer and domain is not None and not d.integer:
        raise SymgradError(f"input {name!r}: integer=True with the non-integer domain {domain!r}; "
                           "give an integer domain, e.g. sg.Integers(0, V - 1)")
    open_range = bool(integer and domain is None)  # the model derives it from take / onehot
    return Node("input", (), _shape(name, shape), {"domain": None if open_range else d,
                "integer": bool(integer or d.integer), "open_range": open_range}, _name(name))


def const(value, name: str = "const") -> Node:
    """A constant array (e.g. the causal mask). Must be exactly representable in float32."""
    value = np.asarray(value, dtype=np.float64)
    if not np.array_equal(value.astype(np.float32).astype(np.float64), value):
        raise SymgradError(f"const {name!r}: values must be exactly representable in float32")
    return Node("const", (), value.shape, {"value": value}, name)


def _name(name: str) -> str:
    if not (isinstance(name, str) and name.isidentifier()):
        raise SymgradError(f"block name {name!r} must be a Python identifier (e.g. 'W1')")
    return name


def _shape(name: str, shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise SymgradError(f"block {name!r}: shape {shape} must be positive integers")
    return tuple(int(s) for s in shape)


# ------------------------------------------------------------------------------ operations
def _node(x) -> Node:
    if isinstance(x, Node):
        return x
    raise SymgradError(f"expected a tensor node, got {type(x).__name__} {x!r}")


def _check_float(op: str, *args: Node) -> None:
    for a in args:
        if a.integer:
            raise SymgradError(f"{op}: {a.name!r} holds integers (token ids); use it in "
                               "take / onehot / cross_entropy only")


def einsum(spec: str, *operands: Node, name: str = "") -> Node:
    """A contraction in einsum notation (explicit ``->``, no repeated letter in an operand).

    >>> import symgrad.tensor as st
    >>> st.einsum("tc,oc->to", st.param("X", (4, 3)), st.param("W", (5, 3))).shape
    (4, 5)
    """
    operands = tuple(_node(o) for o in operands)
    _check_float("einsum", *operands)
    if "->" not in spec:
        raise SymgradError(f"einsum {spec!r}: write the output explicitly, e.g. 'ij,jk->ik'")
    ins, out = spec.replace(" ", "").split("->")
    ins = ins.split(",")
    if len(ins) != len(operands):
        raise SymgradError(f"einsum {spec!r}: {len(ins)} subscripts for {len(operands)} operands")
    sizes: dict[str, int] = {}
    for sub, o in zip(ins, operands):
        if len(sub) != o.ndim or len(set(sub)) != len(sub):
            raise SymgradError(f"einsum {spec!r}: subscripts {sub!r} do not fit operand "
                               f"{o.name or o.op} of shape {o.shape} (one distinct letter per "
                               "axis)")
        for letter, n in zip(sub, o.shape):
            if sizes.setdefault(letter, n) != n:
                raise SymgradError(f"einsum {spec!r}: axis {letter!r} has sizes {sizes[letter]} "
                                   f"and {n}")
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        raise SymgradError(f"einsum {spec!r}: every output letter must appear once in an input")
    return Node("einsum", operands, tuple(sizes[c] for c in out),
                {"spec": ",".join(ins) + "->" + out}, name)


def matmul(a: Node, b: Node) -> Node:
    """``a @ b`` for 1-d / 2-d operands."""
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        raise SymgradError(f"matmul: operands of rank 1 or 2 only, got {a.shape} @ {b.shape}")
    sa, sb = "ij"[2 - a.ndim:], "jk"[:b.ndim]
    out = sa.replace("j", "") + sb.replace("j", "")
    return einsum(f"{sa},{sb}->{out}", a, b)


def map_(expr: sp.Expr, *operands, name: str = "") -> Node:
    """Elementwise ``expr`` of ``X[0], X[1], ...`` (one per operand) with numpy broadcasting;
    Python / sympy numbers among the operands are folded into the expression.

    >>> import symgrad.tensor as st
    >>> st.map_(st.X[0] * 2 + st.X[1], st.param("a", (2, 3)), st.param("b", (3,))).shape
    (2, 3)
    """
    expr = sp.sympify(expr)
    if len(operands) > len(X):
        raise SymgradError(f"map {expr}: {len(operands)} operands, at most {len(X)} (st.X has "
                           f"{len(X)} symbols); add many nodes with st.add_all")
    nodes, subs = [], {}
    for i, o in enumerate(operands):
        if isinstance(o, Node):
            subs[X[i]] = X[len(nodes)]
            nodes.append(o)
        else:
            subs[X[i]] = sp.nsimplify(o) if isinstance(o, float) else sp.sympify(o)
    if any(v is not k for k, v in subs.items()):  # rebuilding with nothing renamed: no-op
        renaming = all(isinstance(v, sp.Symbol) for v in subs.values())
        expr = rename(expr, subs) if renaming else expr.xreplace(subs)
    _check_float("map", *nodes)
    if not nodes:
        raise SymgradError(f"map {expr}: needs at least one tensor operand")
    extra = free_symbols(expr) - set(X[:len(nodes)])
    if extra:
        raise SymgradError(f"map {expr}: symbols {sorted(map(str, extra))} are not operands; "
                           "write the expression in st.X[0], st.X[1], ...")
    ndim = max(o.ndim for o in nodes)
    nodes = [o if o.ndim == ndim else reshape(o, (1,) * (ndim - o.ndim) + o.shape)
             for o in nodes]
    shape = []
    for axis in range(ndim):
        sizes = {o.shape[axis] for o in nodes} - {1}
        if len(sizes) > 1:
            raise SymgradError(f"map {expr}: shapes {[o.shape for o in nodes]} do not broadcast")
        shape.append(sizes.pop() if sizes else 1)
    return Node("map", tuple(nodes), tuple(shape), {"expr": expr}, name)


ADD_WIDTH = len(X) - 1  # operands of one addition map (its VJP map may read one more)


def add_all(parts: Sequence[Node]) -> Node:
    """The sum of ``parts`` (broadcast), any number of them: maps of at most ``ADD_WIDTH``
    operands in a balanced tree, so each addition is one rounded step of some map.

    Arguments:
        parts: one or more nodes whose shapes broadcast.
    Returns:
        The node itself for one part, else a map (of maps, past ``ADD_WIDTH`` parts).
    """
    parts = list(parts)
    if not parts:
        raise SymgradError("add_all: needs at least one node")
    while len(parts) > 1:
        k = -(-len(parts) // ADD_WIDTH)  # chunks in this level, of near-equal sizes
        chunks = [parts[i * len(parts) // k:(i + 1) * len(parts) // k] for i in range(k)]
        parts = [c[0] if len(c) == 1 else map_(sp.Add(*X[:len(c)]), *c) for c in chunks]
    return parts[0]


def _axes(x: Node, axes) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = tuple(sorted(a % x.ndim for a in axes)) if x.ndim else ()
    if len(set(out)) != len(out) or any(not -x.ndim <= a < x.ndim for a in axes):
        raise SymgradError(f"axes {axes} out of range for shape {x.shape}")
    return out


def sum_(x: Node, axes=None, *, keepdims: bool = False) -> Node:
    """Sum over ``axes`` (default: all)."""
    _check_float("sum", x)
    return _reduce("sum", x, tuple(range(x.ndim)) if axes is None else _axes(x, axes), keepdims)


def max_(x: Node, axes, *, keepdims: bool = False) -> Node:
    """Max over ``axes`` (its derivative: the maximal entry; a tie is a kink, decided by the
    oracle's sides, ``symgrad.tensor.kinks``)."""
    return _reduce("max", x, _axes(x, axes), keepdims)


def _reduce(op: str, x: Node, axes: tuple[int, ...], keepdims: bool) -> Node:
    out = Node(op, (x,), tuple(s for i, s in enumerate(x.shape) if i not in axes),
               {"axes": axes})
    return reshape(out, tuple(1 if i in axes else s for i, s in enumerate(x.shape))) \
        if keepdims else out


def stop_gradient(x: Node, *, user: bool = False) -> Node:
    """The value of ``x`` with an exactly zero derivative: the shift of a stable softmax, or
    with ``user`` a user's stop-gradient (torch's ``.detach()``), whose value is used as it
    is, rounding error included (``bound``: the operand's error carries, ``sided``: its kinks
    are sites)."""
    return Node("stop", (x,), x.shape, {"user": True} if user else {})


def reshape(x: Node, shape: Sequence[int]) -> Node:
    shape = tuple(int(s) for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise SymgradError(f"reshape: cannot reshape {x.shape} to {shape}")
    if shape == x.shape:
        return x
    if x.integer:
        raise SymgradError(f"reshape of the integer input {x.name!r} is not supported")
    return Node("reshape", (x,), shape, {"shape": shape})


def transpose(x: Node, perm: Sequence[int]) -> Node:
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        raise SymgradError(f"transpose: {perm} is not a permutation of the axes of {x.shape}")
    if perm == tuple(range(x.ndim)):
        return x
    return Node("transpose", (x,), tuple(x.shape[p] for p in perm), {"perm": perm})


def broadcast(x: Node, shape: Sequence[int]) -> Node:
    """Repeat ``x`` along its size-1 axes (same rank) to ``shape``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != x.ndim or any(a not in (1, b) for a, b in zip(x.shape, shape)):
        raise SymgradError(f"broadcast: {x.shape} does not broadcast to {shape}")
    if shape == x.shape:
        return x
    return Node("broadcast", (x,), shape, {"shape": shape})


def take(table: Node, ids: Node) -> Node:
    """Rows of ``table`` (V, ...) selected by the integer input ``ids`` (T,): (T, ...)."""
    if not ids.integer or ids.op != "input":
        raise SymgradError(f"take: the index {ids.name or ids.op!r} must be an integer input "
                           "(st.input(name, shape, integer=True))")
    _check_float("take", table)
    return Node("take", (table, ids), ids.shape + table.shape[1:])


def scatter_add(rows: Node, ids: Node, size: int) -> Node:
    """The adjoint of take: rows (T, ...) added into a zero array (size, ...) at ``ids``."""
    return Node("scatter_add", (rows, ids), (size,) + rows.shape[ids.ndim:], {"size": size})


def onehot(ids: Node, size: int) -> Node:
    """(..., size) array with 1 at each id and 0 elsewhere; no derivative."""
    if not ids.integer or ids.op != "input":
        raise SymgradError(f"onehot: {ids.name or ids.op!r} must be an integer input")
    return Node("onehot", (ids,), ids.shape + (size,), {"size": size})


# ------------------------------------------------------------------------------ traversal
def topological(outputs: Iterable[Node], *, within: set[int] | None = None,
                seen: set[int] | None = None) -> list[Node]:
    """Every node reachable from ``outputs``, operands before users, each once; ``within``:
    only through operands with these ids; ``seen``: ids skipped (it gains each node listed)."""
    order: list[Node] = []
    seen = set() if seen is None else seen
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node.id in seen:
                continue
            seen.add(node.id)
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if a.id not in seen
                         and (within is None or a.id in within))
    return order


def leaves(outputs: Iterable[Node], op: str) -> list[Node]:
    """The ``param`` or ``input`` leaves reachable from ``outputs``, in order of first use."""
    return [n for n in topological(outputs) if n.op == op]
