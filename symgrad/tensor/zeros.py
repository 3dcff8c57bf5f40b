"""Which arguments of a map body zero it exactly: the exact zeros the tensor bound
(``symgrad.tensor.bound``) carries through maps (``x * keep``, a masked ``exp``).

Argument i *annihilates* f when f = 0 wherever x_i = 0 (f = x_i * g(...)). Decided once per
distinct body (a structural key): numerically first (a probe point where f is a clear nonzero
number with x_i = 0 rules it out), then by the substituted body being 0 as written, and only
then by ``sympy.simplify`` (the rule before, and the same answer whenever simplify is right).
The probes substitute numbers into a body once per argument; a subtree that holds no argument
fixed to 0 is substituted once per body and probe and shared by the others (``_xreplace``: the
same expression as sympy's ``xreplace``, a tenth of its time on the op catalogue's HVP bodies).

>>> from symgrad.tensor.program import X
>>> annihilators(X[0] * X[1] + X[0] ** 2, 2)
(0,)
"""

from __future__ import annotations

from typing import Iterable

import sympy as sp

from .program import X

_CACHE: dict = {}
_SHARED: list = [None, None]  # the last body asked about and its probes' shared subtrees
_SYMBOLS: list = [None, None]  # the last body asked about and its sorted free symbols

_PROBES = (  # argument j's value at each probe point: two rational ones, then small integers
    #          (an id in a lookup picks among the others) scattered by a fixed hash
    lambda j: sp.Rational(37, 100) * (1 + sp.Rational(j, 7)),
    lambda j: sp.Rational(-123, 100) + sp.Rational(j, 3),
    *[lambda j, p=p: sp.Integer((j + 1) * (2 * p + 3) * 40503 % 65521 % 5) for p in range(6)],
)


def _nonzero_somewhere(e: sp.Expr, fixed: dict) -> bool:
    """Is ``e`` with ``fixed`` substituted certainly not identically zero: a finite real value
    of magnitude > 1e-8 at one of a few probe points (every other symbol a number, so sympy
    evaluates it as numbers; 30 digits)? False means: not decided."""
    syms = [s for s in _symbols(e) if s not in fixed]  # sorted (a subset keeps the order)
    by_index = all(str(s)[1:].isdigit() for s in syms)
    for n, probe in enumerate(_PROBES):
        at = {s: probe(int(str(s)[1:]) if str(s)[1:].isdigit() else j)
              for j, s in enumerate(syms)}
        try:
            rule = {**fixed, **at}
            v = sp.N(_xreplace(e, rule, set(fixed), _shared(e, n)) if by_index
                     else e.xreplace(rule), 30)
        except (TypeError, ValueError, ArithmeticError):
            continue
        if v.is_Number and v.is_real and v.is_finite and abs(v) > 1e-8:
            return True
    return False


def _symbols(e: sp.Expr) -> list:
    """The free symbols of body ``e``, sorted; kept for the last body asked about (each body
    is asked about several arguments in a row)."""
    if _SYMBOLS[0] is not e:
        _SYMBOLS[0], _SYMBOLS[1] = e, sorted(e.free_symbols, key=sp.default_sort_key)
    return _SYMBOLS[1]


def _shared(e: sp.Expr, n: int) -> dict:
    """The substituted subtrees of body ``e`` at probe ``n`` that hold no fixed symbol: the
    same whichever argument is fixed (every symbol's probe value is set by its index), so
    kept across the arguments of one body (only the last body's: memory stays one body's)."""
    if _SHARED[0] is not e:
        _SHARED[0], _SHARED[1] = e, {}
    return _SHARED[1].setdefault(n, {})


def _xreplace(e: sp.Basic, rule: dict, fixed: set, shared: dict) -> sp.Basic:
    """``e.xreplace(rule)``, the same expression (sympy's ``Basic._xreplace`` step by step),
    with a subtree that holds none of the ``fixed`` symbols taken from ``shared`` once
    substituted (its rule is the same for every argument fixed outside it)."""
    memo: dict = {}  # this call's subtrees that hold a fixed symbol (a body is a DAG)

    def walk(a: sp.Basic) -> tuple[sp.Basic, bool, frozenset]:  # result, changed, symbols
        if a in rule:
            return rule[a], True, frozenset((a,))
        hit = shared.get(a)
        if hit is not None and not (hit[2] & fixed):
            return hit
        hit = memo.get(a)
        if hit is not None:
            return hit
        args, changed, syms = [], False, frozenset()
        for b in a.args:
            if getattr(b, "_xreplace", None) is None:
                args.append(b)
                continue
            r, c, z = walk(b)
            args.append(r)
            changed |= c
            syms |= z
        out = (a.func(*args) if changed else a), changed, syms
        (memo if syms & fixed else shared)[a] = out
        return out

    return walk(e)[0] if rule else e


def _vanishes_with(expr: sp.Expr, x: sp.Symbol) -> bool:
    """Does ``expr`` vanish identically where ``x`` = 0? Not where it is shown nonzero at a
    probe point with x = 0 (numbers only: cheap); else where the substituted expression is 0
    as written (the common case: x * g(...), sympy folds 0 * finite to 0) or
    ``sympy.simplify`` shows it 0 (the rule before: the same answer whenever simplify is
    right, in a fraction of its time)."""
    if not expr.has(x) or _nonzero_somewhere(expr, {x: sp.Integer(0)}):
        return False
    try:  # sympy cannot always substitute (a Piecewise or a lookup folds to a bad type):
        at = expr.subs(x, 0)  # then no exact zero is claimed, which only widens the bound
        return at == 0 or (not _never_zero(at) and sp.simplify(at) == 0)
    except (TypeError, ValueError, ArithmeticError):
        return False


_NOT_FINITE = (sp.S.ComplexInfinity, sp.S.Infinity, sp.S.NegativeInfinity, sp.S.NaN)


def _never_zero(e: sp.Expr) -> bool:
    """``e`` is an infinity or NaN, or a product with one as a factor (``x0/x1`` at x1 = 0 is
    ``zoo*x0``: GPT-2's bound asks about two such bodies): at every point its value is an
    infinity or NaN (zoo * 0 is NaN), never 0, so ``simplify`` (when right) does not show it 0
    either; its answer without the process's first ``simplify``, which imports
    ``sympy.physics.units``."""
    return e in _NOT_FINITE or (e.is_Mul and any(a in _NOT_FINITE for a in e.args))


def annihilators(expr: sp.Expr, k: int, *,
                 among: Iterable[int] | None = None) -> tuple[int, ...]:
    """The arguments i with f = 0 wherever x_i = 0 (f = x_i * g(...)): a zero there is exact.

    Arguments:
        expr: a map body over ``X[0..k-1]``.
        k: its number of arguments.
        among: only these arguments are asked about (default all): the bound asks only about
            arguments that hold a zero, so a body whose arguments hold none costs nothing.
    Returns:
        The annihilating arguments among those asked about, ascending. Decided once per
        distinct body and argument (structural key), shared by every node with that body.
    """
    return tuple(i for i in (range(k) if among is None else sorted(among))
                 if _annihilates(expr, i))


def _annihilates(expr: sp.Expr, i: int) -> bool:
    key = (expr, i)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = _vanishes_with(expr, X[i])
    return found
