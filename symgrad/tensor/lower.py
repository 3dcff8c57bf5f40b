"""The second lowering: a tensor model as today's scalar ``sg.Model`` (small shapes only).

The same interpreter walks the program with a table of numpy object arrays of sympy
intermediates (one ``define``d step per entry), so ``explain``, the scalar derivation and the
mpmath oracle of the scalar program all run on the one description. Leaves become
``sg.matrix`` blocks of the same names; integer inputs select entries with one ``Eq`` branch
per value (``symgrad.ops.transformer.lookup``). A stopped shift (``stop_gradient`` of a max)
lowers to 0: the shifted expressions are invariant to it, so the function and its derivative
are the same.

>>> import symgrad.tensor as st
>>> W, x = st.param("W", (2, 2)), st.input("x", (2,))
>>> from symgrad.tensor.model import TensorModel
>>> to_scalar_model(TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))).entries
['W[0,0]', 'W[0,1]', 'W[1,0]', 'W[1,1]']
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import SymgradError
from ..graph import define
from ..model import Model, matrix
from ..ops.transformer import lookup
from .interpret import RULES
from .model import TensorModel
from .program import Node, topological
from .tables import NumpyLayout

MAX_ENTRIES = 200_000  # scalar steps beyond this take minutes: lower small shapes only


def _obj(a) -> np.ndarray:
    return np.asarray(a, dtype=object)


def _each(arr: np.ndarray, f, kind: str) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = define(f(v), kind=kind)
    return out


class SympyOps(NumpyLayout):
    """The array-ops table of object arrays of sympy expressions (values only, no batch > 1)."""

    name = "sympy"
    symbolic = True  # map constants stay symbolic (sqrt(2/pi), not a rational near it)

    def asarray(self, x):
        return _obj(x)

    def constant(self, c, shape=()):
        out = np.empty(shape, dtype=object)
        out.fill(sp.sympify(c))
        return out

    def map(self, expr, args):
        syms = sorted(args, key=lambda s: s.name)
        arrays = np.broadcast_arrays(*[_obj(args[s]) for s in syms])
        out = np.empty(arrays[0].shape, dtype=object)
        for idx in np.ndindex(*out.shape):
            out[idx] = define(expr.xreplace({s: a[idx] for s, a in zip(syms, arrays)}),
                              kind="map")
        return out

    def einsum(self, spec, *ops):
        raw = np.einsum(spec, *[_obj(o) for o in ops], optimize=False)
        return _each(_obj(raw), lambda v: v, "einsum")

    def sum(self, x, axis, keepdims=False):
        return _each(_obj(np.sum(x, axis=axis, keepdims=keepdims)), lambda v: v, "sum")

    def amax(self, x, axis, keepdims=False):
        moved = np.moveaxis(_obj(x), axis, tuple(range(-len(axis), 0)))
        flat = moved.reshape(moved.shape[:moved.ndim - len(axis)] + (-1,))
        out = np.empty(flat.shape[:-1], dtype=object)
        for idx in np.ndindex(*out.shape):
            out[idx] = sp.Max(*flat[idx])
        return out

    def shape(self, x):
        return tuple(np.shape(x))


def _leaf(node: Node):
    """The sg.matrix block (or symbol) of a leaf and its object array."""
    if node.ndim == 0:
        s = sp.Symbol(node.name, real=True)
        return s, _obj(s).reshape(())
    if node.ndim == 1:
        m = matrix(node.name, node.shape[0])
        return m, _obj(list(m)).reshape(node.shape)
    if node.ndim == 2:
        m = matrix(node.name, *node.shape)
        return m, _obj(list(m)).reshape(node.shape)
    raise SymgradError(f"lowering to the scalar program: block {node.name!r} has rank "
                       f"{node.ndim}; only scalars, vectors and matrices lower")


def to_scalar_model(model: TensorModel, *, name: str | None = None) -> Model:
    """The same model as a scalar ``sg.Model`` (blocks of the same names and domains).

    Raises ``SymgradError`` when the program has more than ``MAX_ENTRIES`` entries.
    """
    order = topological([model.loss])
    entries = sum(n.size for n in order)
    if entries > MAX_ENTRIES:
        raise SymgradError(f"model {model.name!r}: {entries} entries are too many to lower to "
                           f"the scalar program (limit {MAX_ENTRIES}); use a smaller config")
    t = SympyOps()
    values: dict[int, np.ndarray] = {}
    blocks = {}
    for node in order:
        if node.op in ("param", "input"):
            key, arr = _leaf(node)
            blocks[node.name] = (key, node)
            values[node.id] = arr[None]
        elif node.op == "const":
            values[node.id] = _obj([[sp.nsimplify(float(v)) for v in node.attrs["value"].ravel()]]
                                   ).reshape((1,) + node.shape)
        elif node.op == "stop":
            values[node.id] = t.constant(0, (1,) + node.shape)
        elif node.op == "take":
            table, ids = (values[a.id][0] for a in node.args)
            out = np.empty(node.shape, dtype=object)
            for idx in np.ndindex(*node.shape):
                i, rest = idx[:ids.ndim], idx[ids.ndim:]
                column = [table[(v,) + rest] for v in range(table.shape[0])]
                out[idx] = define(lookup(column, ids[i]), kind="take")
            values[node.id] = out[None]
        elif node.op == "onehot":
            ids = values[node.args[0].id][0]
            out = np.empty(node.shape, dtype=object)
            for idx in np.ndindex(*node.shape):
                out[idx] = sp.Piecewise((1, sp.Eq(ids[idx[:-1]], idx[-1])), (0, True))
            values[node.id] = out[None]
        else:
            values[node.id] = RULES[node.op](node, t, [values[a.id] for a in node.args], None)
    loss = values[model.loss.id].reshape(-1)[0]
    params = {blocks[b.name][0]: b.domain for b in model.param_blocks}
    inputs = {blocks[b.name][0]: b.domain for b in model.input_blocks}
    return Model(name or f"{model.name}_scalar", loss, params=params, inputs=inputs,
                 description=f"{model.description} (lowered to the scalar program)",
                 reference=model.reference)

