"""``sympy.diff(expr, x)`` of a map body, the same expression, without sympy's per-node cost.

``sympy.diff`` enters ``Derivative.__new__`` once per subexpression, and each entry walks that
subexpression's free symbols, asks ``is_zero`` of its derivative (an assumption query over the
whole result) and walks the result again to make any unevaluated ``Derivative`` in it
canonical: on the fuzz's map bodies most of ``derive.gradient``'s time. ``diff`` here runs the
same rules - each node class's own ``_eval_derivative`` (``Mul``'s
``_eval_derivative_n_times`` for n = 1), mirrored line for line with the recursion calling
``diff`` instead of ``.diff`` - and skips only what cannot change the result:

- a subexpression without ``x`` is 0 (what ``Derivative.__new__`` returns; decided by one
  memoised walk per call instead of one ``free_symbols`` walk per node);
- ``obj.is_zero`` after each node: sympy returns ``obj`` either way (it only skips the
  canonicalisation below);
- the canonicalisation of unevaluated ``Derivative`` objects: there are none in a result
  built from these rules unless a class's ``fdiff`` makes one, in which case (and for any node
  class without a mirrored rule, or any exception) the node is left to ``sympy.diff`` itself.

The function-rule's own ``da.is_zero`` test (which drops a term) is kept: it can decide. The
result is compared with ``sympy.diff``'s structurally (``==``) and at 40 digits over every map
body of the fuzz, the op catalogue and the zoo (``tests/test_localdiff.py``).

>>> import sympy as sp
>>> x, y = sp.symbols("x y", real=True)
>>> e = sp.tanh(x * y) ** 2 + sp.Max(x, 0) * sp.exp(-x)
>>> diff(e, x) == sp.diff(e, x)
True
"""

from __future__ import annotations

import sympy as sp
from sympy.core.basic import Basic
from sympy.core.function import ArgumentIndexError, Function
from sympy.core.relational import Relational
from sympy.functions.elementary.complexes import Abs, sign
from sympy.functions.elementary.miscellaneous import MinMaxBase
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.ntheory.multinomial import multinomial_coefficients_iterator

_FUNCTION_RULE = Function._eval_derivative
_MINMAX_RULE = MinMaxBase._eval_derivative
_BASIC_N_TIMES = Basic._eval_derivative_n_times
# node classes whose free symbols are their arguments' (no bound symbols): "has x" recurses
_PLAIN = (sp.Add, sp.Mul, sp.Pow, Function, sp.Piecewise, ExprCondPair, MinMaxBase, Relational,
          sp.And, sp.Or, sp.Not)


def diff(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """``sympy.diff(expr, x)`` for a symbol ``x``: the same expression, cheaper.

    Arguments:
        expr: a sympy expression (a map body).
        x: the symbol to differentiate by.
    Returns:
        The derivative, equal (``==``) to ``sympy.diff(expr, x)``.

    >>> import sympy as sp
    >>> x = sp.Symbol("x", real=True)
    >>> diff(sp.log(1 + sp.exp(x)), x)
    exp(x)/(exp(x) + 1)
    """
    if not isinstance(x, sp.Symbol):
        raise TypeError(f"localdiff.diff: differentiate by a Symbol, got {x!r} "
                        f"({type(x).__name__}); use sympy.diff for anything else")
    has: dict[int, bool] = {}
    memo: dict[int, sp.Expr] = {}
    out = _d(sp.sympify(expr), x, has, memo)
    if out.has(sp.Derivative, sp.Subs):  # sympy would make these canonical: let it
        return sp.diff(expr, x)
    return out


def _has(e: Basic, x: sp.Symbol, has: dict) -> bool:
    """Is ``x`` free in ``e``? (one walk per call, memoised by node)"""
    got = has.get(id(e))
    if got is None:
        if e.is_Symbol:
            got = e == x
        elif e.is_Atom:
            got = x in e.free_symbols
        elif not _plain(e):
            got = x in e.free_symbols
        else:
            got = any(_has(a, x, has) for a in e.args)
        has[id(e)] = got
    return got


def _plain(e: Basic) -> bool:
    """Are ``e``'s free symbols the union of its arguments' (no bound symbols)?"""
    return isinstance(e, _PLAIN)


def _d(e: Basic, x: sp.Symbol, has: dict, memo: dict) -> sp.Expr:
    if not _has(e, x, has):
        return sp.S.Zero
    got = memo.get(id(e))
    if got is None:
        try:
            got = _rule(e, x, has, memo)
        except ArgumentIndexError:
            got = None
        if got is None:
            got = e.diff(x)
        memo[id(e)] = got
    return got


def _rule(e: Basic, x: sp.Symbol, has: dict, memo: dict) -> sp.Expr | None:
    """The node's own derivative rule with ``_d`` for ``.diff``; None: no mirrored rule."""
    cls = type(e)
    if e.is_Symbol:
        return sp.S.One if e == x else sp.S.Zero
    if cls is sp.Mul:  # Mul._eval_derivative_n_times(x, 1): the Leibniz rule's terms
        args = e.args
        terms = []
        for kvals, c in multinomial_coefficients_iterator(len(args), 1):
            p = sp.Mul(*[_d(a, x, has, memo) if k else a for k, a in zip(kvals, args)])
            terms.append(c * p)
        return sp.Add(*terms)
    if cls._eval_derivative_n_times is not _BASIC_N_TIMES:
        return None
    if cls is sp.Add:
        return e.func(*[_d(a, x, has, memo) for a in e.args])
    if cls is sp.Pow:
        dbase = _d(e.base, x, has, memo)
        dexp = _d(e.exp, x, has, memo)
        return e * (dexp * sp.log(e.base) + dbase * e.exp / e.base)
    if cls is sp.Piecewise:
        return e.func(*[(_d(v, x, has, memo), c) for v, c in e.args])
    rule = cls._eval_derivative
    if rule is _FUNCTION_RULE or rule is _MINMAX_RULE:
        terms = []
        for i, a in enumerate(e.args, 1):
            da = _d(a, x, has, memo)
            if da.is_zero:
                continue
            terms.append(e.fdiff(i) * da)  # ArgumentIndexError: sympy's own fallback
        return sp.Add(*terms)
    if cls is Abs and (e.args[0].is_extended_real or e.args[0].is_imaginary):
        return _d(e.args[0], x, has, memo) * sign(sp.conjugate(e.args[0]))
    return None
