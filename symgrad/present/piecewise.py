"""Display-only tidying of nested ``Piecewise`` forms: a branch nested inside another's branch
whose condition the outer conditions already decide is dropped (or kept alone).

``sympy.simplify`` of a Huber loss's gradient nests ``Piecewise((0, Eq(e, 0)), (x e/|e|,
True))`` inside the outer ``|e| <= 1`` branch's "otherwise": there ``|e| > 1``, so ``e = 0``
cannot hold and the inner Piecewise is its last value. Conditions are decided per shared
subexpression (``e`` above) over the reals, by sympy's sets; anything undecided stays.

>>> import sympy as sp
>>> x, e = sp.symbols("x e", real=True)
>>> inner = sp.Piecewise((0, sp.Eq(e, 0)), (x * e / sp.Abs(e), True))
>>> prune(sp.Piecewise((x * e, sp.Abs(e) <= 1), (inner, True)))
Piecewise((e*x, Abs(e) <= 1), (e*x/Abs(e), True))
>>> y = sp.Symbol("y", real=True)
>>> d = sp.Abs(x - y)
>>> prune(sp.Piecewise((x, d <= 1), (sp.Piecewise((0, sp.Eq(x - y, 0)), (x / d - y / d, True)),
...                                  True)))
Piecewise((x, Abs(x - y) <= 1), ((x - y)/Abs(x - y), True))
"""

from __future__ import annotations

import sympy as sp

MAX_KERNELS = 8  # shared subexpressions tried per condition


def prune(expr: sp.Basic) -> sp.Basic:
    """``expr`` with every nested Piecewise branch that its enclosing conditions decide removed
    (a branch that cannot hold) or made the only one (a branch that must hold).

    Arguments:
        expr: any sympy expression (a display form: its value is unchanged).
    Returns:
        The same function, without dead branches.
    """
    try:
        return _visit(sp.sympify(expr), [])
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return expr


def _visit(e: sp.Basic, known: list) -> sp.Basic:
    if isinstance(e, sp.Piecewise):
        kept, excluded = [], []
        for value, cond in e.args:
            facts = known + [sp.Not(c) for c in excluded]
            holds = decide(cond, facts) if facts else None
            if holds is False:
                continue
            kept.append((_visit(value, facts + [cond]), sp.true if holds else cond))
            if holds or cond is sp.true:
                break
            excluded.append(cond)
        if len(kept) == 1 and kept[0][1] is sp.true:  # one branch left: its value, gathered
            value = kept[0][0]  # (sympy.factor did not reach inside the Piecewise)
            return sp.factor(value) if len(e.args) > 1 and value.count_ops() < 40 else value
        return sp.Piecewise(*kept) if kept else e
    if not e.args or isinstance(e, (sp.Symbol, sp.logic.boolalg.Boolean)):
        return e
    args = [_visit(a, known) for a in e.args]
    return e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e


def decide(cond, facts: list) -> bool | None:
    """Whether ``cond`` holds wherever all ``facts`` hold: True, False (it never does), or None
    (undecided). Decided over the reals on one shared subexpression at a time."""
    t = sp.Dummy("t", real=True)
    for kernel in _kernels(cond):
        c = cond.xreplace({kernel: t}) if not kernel.is_Symbol else cond.subs(kernel, t)
        if c.free_symbols != {t}:
            continue
        region = sp.S.Reals
        for f in facts:
            g = f.xreplace({kernel: t}) if not kernel.is_Symbol else f.subs(kernel, t)
            if g.free_symbols == {t}:
                region = region.intersect(g.as_set())
        if region == sp.S.Reals:
            continue
        inside = c.as_set()
        if region.intersect(inside) is sp.S.EmptySet:
            return False
        if region.is_subset(inside):
            return True
    return None


def _kernels(cond) -> list:
    """Subexpressions ``cond`` may be a function of alone: its sums of several symbols (the
    argument of an Abs, a relation's side), then its free symbols."""
    sums = [a for a in sp.preorder_traversal(cond)
            if isinstance(a, sp.Add) and len(a.free_symbols) > 1]
    return list(dict.fromkeys(sums + sorted(cond.free_symbols, key=sp.default_sort_key)))[
        :MAX_KERNELS]
