"""The first-order running error bound E of a program, as another program (units of u).

For every assignment ``v = f(...)`` we emit ``E_v`` such that a faithful floating-point evaluation
satisfies |fl(v) - v| <~ u * E_v, u the unit roundoff. Rules, applied over the small expression:

    leaf (exactly representable input)   0
    constant                             |c| unless exactly representable
    a_1 + ... + a_n                      sum E_i + (n - 1) sum |a_i|
    a_1 * ... * a_n                      sum E_i prod_{j != i} |a_j| + (n - 1) |product|
    b ** k (k constant)                  |k b^(k-1)| E_b + |b^k|
    f(a_1, ..., a_n)                     sum |df/da_i| E_i + |f|  (no |f| for Abs, Max, Min)
    Piecewise                            the E of the branch taken

Cancellation thus gets the tolerance of the terms that cancelled, and a well-conditioned value a
few ULPs. ``symgrad.compare`` multiplies E by the tolerance's safety factor.

>>> import sympy as sp
>>> a, b = sp.symbols("a b", real=True)
>>> error_expr(a + b, {})
Abs(a) + Abs(b)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import sympy as sp

_NO_ERROR = (sp.Heaviside, sp.sign, sp.DiracDelta)  # piecewise-constant: no propagated error
_EXACT = (sp.Abs, sp.Max, sp.Min)  # no rounding of their own


def _exact_constant(c: sp.Expr) -> bool:
    if c.is_Integer:
        return abs(int(c)) < 2**24
    if c.is_Rational:
        q = int(c.q)
        return q & (q - 1) == 0 and abs(int(c.p)) < 2**24
    return False


def error_expr(e: sp.Expr, err: Mapping[sp.Symbol, sp.Expr]) -> sp.Expr:
    """E of expression ``e`` given the E symbols of the symbols it reads (absent: exact)."""
    if e.is_Symbol:
        return err.get(e, sp.S.Zero)
    if e.is_number and not isinstance(e, sp.Piecewise):
        return sp.S.Zero if _exact_constant(e) else sp.Abs(e)
    if e.is_Add:
        n = len(e.args)
        return sp.Add(*[error_expr(a, err) for a in e.args]) + (n - 1) * sp.Add(
            *[sp.Abs(a) for a in e.args])
    if e.is_Mul:
        args = e.args
        terms = []
        for i, a in enumerate(args):
            ea = error_expr(a, err)
            if ea != 0:
                others = sp.Mul(*(args[:i] + args[i + 1:]))
                terms.append(ea * sp.Abs(others))
        rounding = sum(1 for a in args if not (a.is_number and _exact_constant(a))) - 1
        return sp.Add(*terms) + max(rounding, 0) * sp.Abs(e)
    if e.is_Pow:
        base, ex = e.args
        if ex.is_number:
            eb = error_expr(base, err)
            cond = sp.Abs(ex * base ** (ex - 1)) * eb if eb != 0 else sp.S.Zero
            return cond + sp.Abs(e)
        return error_expr(sp.exp(ex * sp.log(base)), err)
    if isinstance(e, sp.Piecewise):
        return sp.Piecewise(*[(error_expr(b.expr, err), b.cond) for b in e.args])
    if isinstance(e, _NO_ERROR):
        return sp.S.Zero
    if isinstance(e, (sp.Function, sp.Max, sp.Min)):
        terms = []
        for i, a in enumerate(e.args):
            ea = error_expr(a, err)
            if ea != 0:
                terms.append(sp.Abs(e.fdiff(i + 1)) * ea)
        rounding = sp.S.Zero if isinstance(e, _EXACT) else sp.Abs(e)
        return sp.Add(*terms) + rounding
    return sp.Abs(e)


def error_program(assignments: Sequence[tuple[sp.Symbol, sp.Expr]]
                  ) -> tuple[list[tuple[sp.Symbol, sp.Expr]], dict[sp.Symbol, sp.Expr]]:
    """E assignments for a program; returns them and the map symbol -> its E (symbol or 0)."""
    err: dict[sp.Symbol, sp.Expr] = {}
    out: list[tuple[sp.Symbol, sp.Expr]] = []
    for sym, expr in assignments:
        e = error_expr(expr, err)
        if e.is_Atom:
            err[sym] = e
        else:
            s = sp.Dummy(f"E_{sym}", real=True)
            out.append((s, e))
            err[sym] = s
    return out, err
