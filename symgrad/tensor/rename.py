"""Renaming the symbols of a map body without re-evaluating its ``Max`` / ``Min``.

``expr.xreplace({a: b})`` rebuilds every changed node through its constructor, and sympy's
``Max`` / ``Min`` constructor compares each pair of its arguments under assumptions
(``_find_localzeros``: O(n^2) queries): renaming a softmax's ``Max`` of 16 entries costs
milliseconds, and a scalar model's program renames thousands of bodies (the front, the local
derivatives, operand folding). A one-to-one renaming of symbols to symbols cannot make two
arguments comparable that were not (the body was already evaluated with at least the facts
the new symbols carry: all are real), so ``rename`` rebuilds ``Max`` / ``Min`` unevaluated
(the same arguments, in sympy's canonical order: equal and hash-equal to the evaluated
result) and everything else as ``xreplace`` does.

>>> import sympy as sp
>>> a, b, c, x, y, z = sp.symbols("a b c x y z", real=True)
>>> e = sp.Max(a, b + c, 0) * a
>>> rename(e, {a: x, b: y, c: z}) == e.xreplace({a: x, b: y, c: z})
True
"""

from __future__ import annotations

from typing import Mapping

import sympy as sp

_MINMAX = (sp.Max, sp.Min)


def rename(expr: sp.Expr, mapping: Mapping[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """``expr`` with its symbols renamed by ``mapping``.

    Arguments:
        expr: a sympy expression.
        mapping: distinct symbols to distinct symbols (one-to-one); every value a ``Symbol``
            (a renaming to numbers or expressions needs ``xreplace``: it may evaluate).
    Returns:
        The same expression as ``expr.xreplace(mapping)`` (equal, hash-equal).
    """
    memo: dict = {}

    def go(e):
        got = mapping.get(e)
        if got is not None:
            return got
        if not e.args:
            return e
        got = memo.get(e)
        if got is None:
            args = tuple(go(a) for a in e.args)
            if all(a is b for a, b in zip(args, e.args)):
                got = e
            elif isinstance(e, _MINMAX):
                got = e.func(*args, evaluate=False)
            else:
                got = e.func(*args)
            memo[e] = got
        return got
    return go(expr)
