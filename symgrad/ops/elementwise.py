"""The elementwise ops of ``sg.ops``, built from the op table (``symgrad.optable``).

Each entry becomes one function ``op(x, *, label=None)`` (a family's also takes its option,
``gelu(x, approximate="tanh")``) that applies the form symgrad's own programs compute to a
scalar or, entry by entry, to a matrix. A step whose backward the table writes from the
output (sigmoid: s (1 - s), tanh: 1 - t^2, exp: e^x) gets it as its local derivative, as
torch computes it; an op's named ``stages`` (GPT-2's tanh-GELU: the cubic, the tanh) become
steps of their own.

>>> import sympy as sp
>>> z = sp.Symbol("z")
>>> FUNCTIONS["tanh"](z).definition
tanh(z)
"""

from __future__ import annotations

from typing import Callable

import sympy as sp

from ..graph import define
from ..logistic import sigma
from ..optable import OPS, S, X0, Y, Elementwise, families, function
from .basic import _as_matrix, _elementwise, _operand, element_label


def _stage_partials(kind: str, expr: sp.Expr, values: dict):
    """The local derivative of a stage that applies an output-form op to one operand."""
    op = OPS.get(kind)
    if op is None or not op.output_form or len(expr.free_symbols) != 1:
        return None
    (a,) = expr.free_symbols
    if op.computed.xreplace({X0: a}) != expr:
        return None
    return lambda out: {a: op.backward.xreplace({Y: out})}


def apply(entry: Elementwise, z, label: str | None = None):
    """One step ``entry(z)`` (and its stages) on a scalar sympy expression ``z``."""
    z = sp.sympify(z)
    form = entry.computed if not entry.stages else entry.textbook
    if entry.output_form or sum(1 for t in sp.preorder_traversal(entry.computed) if t == X0) > 1:
        z = _operand(z, "z")  # read the operand once, by name
    values = {X0: z}
    for i, (kind, e) in enumerate(entry.stages):
        expr = e.xreplace(values)
        values[S[i]] = define(expr, kind=kind, partials=_stage_partials(kind, expr, values))
    partials = None
    if entry.output_form:
        partials = lambda out: {z: entry.backward.xreplace({Y: out})}  # noqa: E731
    out = define(form.xreplace(values), kind=entry.public, label=label, partials=partials)
    if entry.named:
        out.shown = entry.applied(z)  # explain and the reports write mish(z)
    if entry.name == "sigmoid":  # BCE of a sigmoid is computed from its logit (ops.bce)
        out.logit = z
        out.shown = sigma(z)
    return out


def _on(entry: Elementwise, x, label: str | None):
    """``entry`` on a scalar, or entry by entry on a matrix."""
    if not entry.block:
        return _elementwise(lambda e, label=None: apply(entry, e, label), x, label=label,
                            op=entry.public)
    X = _as_matrix(x, f"{entry.public} input")
    name = label or entry.public
    return sp.ImmutableMatrix(*X.shape, [apply(entry, X[i, j], element_label(name, X.shape, i, j))
                                         for i in range(X.shape[0]) for j in range(X.shape[1])])


FUNCTIONS: dict[str, Callable] = {
    name: function(name, lambda e, x, label=None: _on(e, x, label), keywords=("label",))
    for name in families()}
