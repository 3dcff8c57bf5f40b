"""torch's own backward formulas in the rigorous enclosure.

Where torch's backward of an op reads its rounded output (sigmoid' as s (1 - s), tanh' as
1 - y^2, SiLU and mish from a computed sigmoid, expm1' as y + 1, an in-place ELU's y + alpha:
``optable.Elementwise.torch_backward``, ``functions.Function.torch_backward``), correct torch
code computes that formula, not the derivative symgrad derives; where the output saturates its
1 - s cancels and the computed value lies far outside a ball of symgrad's own formula (sigmoid
at x = 12 in float64: 1.3e5 ULPs off, the own ball a few ULPs wide). ``tensor/derive`` tags such
a VJP map with the VJP as torch computes it (``attrs["torch_vjp"]``, ``tensor/torch_vjp``: the
op alone, or fused with other arithmetic in one body); the rigorous walk (``RULES``) encloses
that body too, under the same rounding model (``balls``: every
operation of the formula rounded, its elementary functions within ``function_ulps`` of their
computed argument), and takes the union of the two balls. By the theorem's induction the
union holds every value either way of computing the local derivative can produce, so a
failure outside it is still a proof, whichever of the two the code under test uses. Where
either ball is unbounded (a branch undecided, an overflow) the union is unbounded: no proof.
The centre walk (``exact``) is unchanged: both formulas are the same function exactly
(``tests/test_torch_form.py``).

>>> import numpy as np, sympy as sp
>>> from flint import arb
>>> from symgrad.optable import TORCH_BACKWARD, OPS
>>> from symgrad.tensor.program import X, input as input_, map_
>>> from symgrad.rigorous.tensor import RoundedArbOps
>>> from symgrad.rigorous.max_top import top_rule
>>> node = map_(X[0] * sp.exp(-X[1]) / (1 + sp.exp(-X[1])) ** 2, input_("g", (1,)),
...             input_("x", (1,)))
>>> node.attrs["torch_vjp"] = X[0] * TORCH_BACKWARD[OPS["sigmoid"].computed].xreplace(
...     {X[0]: X[1]})
>>> ops = RoundedArbOps("float64", 4.0)
>>> vals = [ops.asarray(np.array([[1.0]])), ops.asarray(np.array([[12.0]]))]
>>> s = 1 / (1 + np.exp(-12.0))  # torch's rounded output, then its s (1 - s)
>>> torch_value = arb(float(s * (1 - s)))
>>> bool(torch_value in top_rule(node, ops, vals, None)[0, 0])  # symgrad's formula alone
False
>>> bool(torch_value in RULES["map"](node, ops, vals, None)[0, 0])
True
"""

from __future__ import annotations

import numpy as np
from flint import arb, ctx

from ..backends import arb as arb_backend
from ..tensor.derive import torch_body
from ..tensor.program import X, Node
from .balls import PREC
from .max_top import count_rule, top_rule


def _union(a, b) -> arb:
    """The smallest ball holding both balls; NaN (unbounded) where either is not finite."""
    a, b = arb_backend._a(a), arb_backend._a(b)
    if not (a.is_finite() and b.is_finite()):
        return arb.nan()
    return a.union(b)


_union_u = np.frompyfunc(_union, 2, 1)


def torch_form_rule(node: Node, table, vals: list, context) -> np.ndarray:
    """The rigorous walk's ``map`` rule: the map as ``max_top.top_rule`` encloses it, and for
    a VJP map tagged with torch's way of computing it (``attrs["torch_vjp"]``, a body of the
    same operands: ``tensor/torch_vjp``), the union with that body's balls (module docstring).

    Arguments:
        node: the map node.
        table: the rounded ARB table (``tensor.RoundedArbOps``; its ``R.exact``: the centre
            walk, which needs no second formula).
        vals: the operands' balls.
        context: the interpreter's context (unused).
    Returns:
        The node's balls (an object array).
    """
    own = top_rule(node, table, vals, context)
    body = torch_body(node)
    rounding = getattr(table, "R", None)
    if body is None or rounding is None or rounding.exact:
        return own
    with ctx.workprec(getattr(table, "prec", PREC)):
        theirs = table.map(body, {X[j]: v for j, v in enumerate(vals)})
        return np.asarray(_union_u(np.asarray(own, dtype=object),
                                   np.asarray(theirs, dtype=object)), dtype=object)


RULES = {"map": torch_form_rule, "sum": count_rule}  # the rigorous walk's replacement rules
