"""A map's VJP body as torch's autograd computes it: every op-table op in the body differentiated
by torch's own backward formula (``optable.TORCH_BACKWARD``: sigmoid' as s (1 - s) from the
rounded output, tanh' as 1 - y^2, SiLU, mish, expm1' as y + 1, ELU's y + alpha), the rest by
the chain rule as symgrad's own VJP.

``tensor/derive`` tags each VJP map with it (``attrs["torch_vjp"]``, a body of the VJP map's own
operands, g first, searched for on first read: ``derive.torch_body``) wherever the map's body
holds such an op: the whole body being the op
(``torch.sigmoid`` captured), or the op fused with other arithmetic (a plain-sympy
``1/(1 + exp(-w x))``'s textbook program, a captured ``x * sigmoid(x)``). The allowance
(``tensor/mapbound.torch_form``) and the rigorous enclosure (``rigorous/torch_forms``) then hold
what either way of computing the local derivative rounds. An op is found by its formula as a
sympy pattern of one argument (the body's subexpressions that are the op applied to anything),
and kept only where putting the op back reproduces the body exactly.

>>> import sympy as sp
>>> from symgrad.optable import OPS, X0
>>> from symgrad.tensor.program import X
>>> body = torch_vjp(1 / (1 + sp.exp(-X[0] * X[1])), 0, (0, 1))  # operands (g, x0, x1)
>>> s = OPS["sigmoid"].torch_backward.args[1]  # torch's sigmoid, as its backward reads it
>>> body == X[0] * X[2] * s.xreplace({X0: X[1] * X[2]}) * (1 - s.xreplace({X0: X[1] * X[2]}))
True
>>> torch_vjp(X[0] * X[1], 0, (1,)) is None  # no op of the table in it
True
"""

from __future__ import annotations

import functools
from typing import Callable

import sympy as sp

from ..optable import ENTRIES, TORCH_BACKWARD, X0
from .localdiff import diff
from .program import X
from .rename import rename
from .ties import linear_ties

_W = sp.Wild("w")
_OPS: list = []  # (pattern of _W, its opaque function, the op as a function of one argument,
# the functions the pattern holds, whether it is an order-2 product key)


def _opaque(i: int, key: sp.Expr, form: sp.Expr) -> type:
    """A sympy function standing for the op ``key`` whose derivative is torch's ``form``."""
    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return form.xreplace({X0: self.args[0]})
    return type(f"torch_op{i}", (sp.Function,), {"nargs": 1, "fdiff": fdiff})


def _ops() -> list:
    """(pattern, opaque function, op, the functions the pattern holds) per op, the largest
    first: silu's x sigmoid(x) is taken whole before sigmoid alone could take its inside."""
    if not _OPS:
        second = second_order_rows()
        keys = sorted({**TORCH_BACKWARD, **second}.items(),
                      key=lambda kv: -sp.count_ops(kv[0]))
        for i, (key, form) in enumerate(keys):
            pattern = key.xreplace({X0: _W})
            heads = tuple({type(a) for a in pattern.atoms(sp.Function)})
            fn = _opaque(i, key, form)
            # sigmoid' e^-x / (1 + e^-x)^2 is a product: sympy's pattern matches it only whole,
            # not among g's factors; ``_factors_replaced`` finds it there
            _OPS.append((pattern, fn, key, heads, key in second and key.is_Mul))
    return _OPS


def second_order_rows() -> dict[sp.Expr, sp.Expr]:
    """An op's first derivative as ``derive`` writes it in a VJP body (``localdiff.diff`` of
    the body symgrad computes, ties linear) -> the op's second derivative as torch's double
    backward computes it (``optable.Elementwise.torch_second``: softplus' (1 - s) s,
    logsigmoid's (s - 1) s, from a computed sigmoid s): where an order-2 program
    differentiates that VJP map again, its allowance and enclosure hold torch's rounding too.

    >>> rows = second_order_rows()
    >>> from symgrad.optable import OPS
    >>> rows[diff(OPS["logsigmoid"].computed, X0)] == OPS["logsigmoid"].torch_second
    True
    """
    return {linear_ties(diff(e.computed, X0)): e.torch_second for e in ENTRIES
            if e.torch_second is not None}


def marked(expr: sp.Expr) -> tuple[sp.Expr, dict]:
    """``expr`` with each op-table op that has a torch backward formula replaced by an opaque
    function whose derivative is that formula, and the map back (opaque class -> the op's
    formula of X0); an op is kept only where putting it back gives ``expr`` exactly."""
    out, back = expr, {}
    for pattern, fn, key, heads, replacement in _ops():
        if (not all(out.has(h) for h in heads) or not _may_hold(expr, key)
                or not _may_match(out, pattern)):
            continue
        try:
            tried = (_factors_replaced(out, key, fn) if replacement
                     else out.replace(pattern, fn(_W), exact=True))
        except (TypeError, ValueError, AttributeError, RecursionError):
            continue
        if tried == out or not tried.has(fn) or _restore(tried, {**back, fn: key}) != expr:
            continue
        out, back = tried, {**back, fn: key}
    return out, back


def _factors_replaced(expr: sp.Expr, key: sp.Expr, fn: type) -> sp.Expr:
    """``expr`` with each product holding all the factors of ``key`` at some a (a or -a an
    exponential's argument in it) written as the rest of its factors times ``fn(a)``."""
    def sub(m: sp.Expr) -> sp.Expr:
        args = list(sp.Mul.make_args(m))
        for e in m.atoms(sp.exp):
            for a in (e.args[0], -e.args[0]):
                rest = list(args)
                for f in sp.Mul.make_args(key.xreplace({X0: a})):
                    if f not in rest:
                        break
                    rest.remove(f)
                else:
                    return sp.Mul(*rest) * fn(a)
        return m
    return expr.replace(lambda e: e.is_Mul, sub)


# where exp(a) may not stay exp(a) (exp(log y) = y, exp(x + log y) = y exp(x), exp(I pi) = -1)
_EXP_EVALUATES = (sp.log, sp.LambertW, sp.I, sp.oo, sp.zoo, sp.nan)


def _may_hold(expr: sp.Expr, key: sp.Expr) -> bool:
    """False only where ``expr`` holds no op ``key`` of a product form (silu's x sigmoid(x),
    mish's x tanh(softplus(x))) that ``marked`` could keep, so that sympy's pattern search,
    whose product matching divides every product of the body by the op built at each of its
    factors (15 CPU s for one softmax HVP body of 188 operations), need not run.

    A kept match of ``key`` at X0 = a puts ``key(a)`` back into a body equal to ``expr``, so
    the op's Piecewise, built at a, is a subexpression of ``expr`` (a product's other
    factors cannot rebuild it), and it holds ``exp(a)`` or, where its first condition is
    decided, ``exp(-a)``: a is one of ``expr``'s exponentials' arguments or its negation.
    Where that reasoning does not hold (no Piecewise left in ``key(a)``, an exponential sympy
    evaluates away), the search runs as before."""
    if not key.is_Mul or not key.has(sp.exp(X0)) or expr.has(*_EXP_EVALUATES):
        return True
    pieces = expr.atoms(sp.Piecewise)
    for e in expr.atoms(sp.exp):
        for a in (e.args[0], -e.args[0]):
            if a.is_number:
                return True
            need = key.xreplace({X0: a}).atoms(sp.Piecewise) - a.atoms(sp.Piecewise)
            if not need or need <= pieces:
                return True
    return False


def _may_match(expr: sp.Expr, pattern: sp.Expr) -> bool:
    """False only where no subexpression of ``expr`` can match ``pattern`` of the form
    ``(c + f(..))**n`` (sigmoid's ``1/(1 + exp(-w))``), so that ``replace`` would return
    ``expr`` unchanged, after a match attempt at every node (half of ``marked``'s time on the
    fuzz's and the op catalogue's bodies). sympy's ``Pow.matches`` matches the pattern's base
    against a node's ``as_base_exp()`` base and its integer exponent n by equality (else the
    node must be a Pow whose arguments match one by one: the same test), and an Add pattern
    with a number c matches b only where ``b - c`` is an ``f``: so a match needs a node
    ``b**n`` whose base is an Add holding an ``f`` among its terms (an ``exp(-1)``'s base E
    is no Add). Any other pattern: True (the search runs)."""
    base = pattern.base if pattern.is_Pow else None
    if (base is None or not pattern.exp.is_Integer or not base.is_Add or len(base.args) != 2
            or not base.args[0].is_Number or not isinstance(base.args[1], sp.Function)):
        return True
    f, n = type(base.args[1]), pattern.exp
    return any(e.is_Pow and e.exp == n and e.base.is_Add
               and any(isinstance(a, f) for a in e.base.args)
               for e in sp.preorder_traversal(expr))


MARKED_ENTRIES = 4096  # bodies whose marked form is kept: one search per body, not per argument
_marked = functools.lru_cache(maxsize=MARKED_ENTRIES)(marked)


def _restore(expr: sp.Expr, back: dict) -> sp.Expr:
    if not back:
        return expr
    return expr.replace(lambda e: type(e) in back,
                        lambda e: back[type(e)].xreplace({X0: e.args[0]}))


def torch_vjp(expr: sp.Expr, i: int, used: tuple[int, ...], *,
              finish: Callable[[sp.Expr], sp.Expr] = lambda d: d) -> sp.Expr | None:
    """``g * d expr / d X[i]`` with every op-table op differentiated by torch's formula, of the
    VJP map's operands (``X[0]`` the cotangent g, ``X[m + 1]`` the map's operand ``used[m]``);
    None where the body holds no such op, or where torch's body reads an operand symgrad's
    does not (then the VJP map has no slot for it).

    Arguments:
        expr: the map's body, of X[0..k-1].
        i: the argument differentiated.
        used: the operands symgrad's own VJP body reads (``derive._local``).
        finish: applied to the derivative before it is renamed (``derive``: the same
            ``merge_powers`` and ``linear_ties`` as its own VJP body, so that a tie reads
            the mean of its sides in both bodies).
    Returns:
        The body, or None.
    """
    body, back = _marked(expr)
    if not back:
        return None
    d = finish(_restore(diff(body, X[i]), back))  # sympy.diff's expression, cheaper
    if d == 0 or not d.free_symbols <= {X[j] for j in used}:
        return None
    return X[0] * rename(d, {X[j]: X[m + 1] for m, j in enumerate(used)})
