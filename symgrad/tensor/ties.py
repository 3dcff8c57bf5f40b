"""Products of one argument's steps and signs, made linear: a tie then evaluates to the mean of
its two sides.

A derivative written with kink functions evaluates them at their kink by sympy's conventions:
``sign(0) = 0``, ``Heaviside(0) = 1/2``, ``DiracDelta`` as 0 (``symgrad.functions``). Each is
the mean of its two sides, so an expression *linear* in them is, at the kink, the mean of its
two one-sided values: where the function is smooth there (``max(x, y) + log1p(e^-|x - y|)``,
both sides agree), that is its derivative. A *product* of them is not: the second derivative of
``logaddexp`` holds ``sign(x - y)**2`` (from the chain rule through ``|x - y|`` twice), 1 on
either side but 0 at ``x = y``, and the Hessian-vector product at a tie came out 0 where it is
``ln2/4 (v_x - v_y)`` (``logaddexp2``; the op catalogue's unexplained row). ``linear_ties``
rewrites every such product, per argument up to a positive factor and sign
(``symgrad.tensor.links.canonical``), with ``s = sign(a)``, ``Heaviside(a) = (1 + s)/2`` and
``s**2 = 1`` into ``c0 + c1 s``: the same function off the tie (an identity for ``a != 0``),
the mean of its sides at it. The DiracDelta terms that the same differentiation makes are 0
here as before (where the function is smooth, the deltas of its pieces cancel).

Only factors of one product (one map body) are seen: a sign computed in one map node and
squared in another is the interpreter's product of two conventions (the oracle's sided program,
``symgrad.tensor.kinks``, still takes one consistent side there).

>>> import sympy as sp
>>> a, b, w = sp.symbols("a b w", real=True)
>>> linear_ties(w * sp.sign(a - b)**2)
w
>>> linear_ties(sp.Heaviside(a) * sp.sign(a)), linear_ties(sp.Heaviside(a) * sp.Heaviside(-a))
(Heaviside(a), 0)
>>> linear_ties(sp.sign(a) * sp.sign(b))   # two arguments: two kinks, left as they are
sign(a)*sign(b)
"""

from __future__ import annotations

import sympy as sp

from .links import canonical

_HALF = sp.Rational(1, 2)


def _factor(f: sp.Expr) -> tuple[sp.Expr, int, int, str] | None:
    """``(key, orient, power, kind)`` of a factor ``sign(a)**n`` or ``Heaviside(a)**n`` (the
    mean convention, H(0) = 1/2; n a positive integer), ``a = orient * c * key``; else None."""
    base, n = f.as_base_exp()
    if not (n.is_Integer and n > 0):
        return None
    if isinstance(base, sp.sign):
        kind = "sign"
    elif isinstance(base, sp.Heaviside) and (len(base.args) == 1 or base.args[1] == _HALF):
        kind = "step"
    else:
        return None
    key, orient = canonical(sp.expand(base.args[0]))
    return (key, orient, int(n), kind) if key.free_symbols else None


def _linear(parts: list[tuple[int, int, str]], s: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """``(c0, c1)``: the product of ``parts`` (orient, power, kind) as ``c0 + c1 s``, s = ±1."""
    p = sp.Integer(1)
    for orient, n, kind in parts:
        one = orient * s if kind == "sign" else (1 + orient * s) / 2
        p = sp.expand(p * one**n)
    p = sp.Poly(p, s)
    c0 = c1 = sp.Integer(0)
    for (k,), c in p.terms():
        if k % 2:
            c1 += c
        else:
            c0 += c
    return c0, c1


def _written(c0: sp.Expr, c1: sp.Expr, key: sp.Expr) -> sp.Expr:
    """``c0 + c1 sign(key)``, as a step where it is one (readable derivations)."""
    if c1 == 0:
        return c0
    if c0 == c1:
        return 2 * c0 * sp.Heaviside(key)
    if c0 == -c1:
        return 2 * c0 * sp.Heaviside(-key)
    return c0 + c1 * sp.sign(key)


def _mul(m: sp.Expr) -> sp.Expr:
    """One product (or power) with its steps and signs of one argument multiplied out."""
    factors = m.args if m.is_Mul else (m,)
    groups: dict = {}
    rest = []
    for f in factors:
        found = _factor(f)
        if found is None:
            rest.append(f)
        else:
            groups.setdefault(found[0], []).append((f, found[1:]))
    if not any(len(g) > 1 or g[0][1][1] > 1 for g in groups.values()):
        return m
    s = sp.Dummy("s")
    out = list(rest)
    for key, members in groups.items():
        if len(members) == 1 and members[0][1][1] == 1:
            out.append(members[0][0])
            continue
        out.append(_written(*_linear([p for _, p in members], s), key))
    return sp.Mul(*out)


def linear_ties(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every product of steps and signs of one argument written linearly in
    them (the same function off the tie; at the tie, the mean of its two sides).

    Arguments:
        expr: a sympy expression (a map body or its derivative).
    Returns:
        The rewritten expression (``expr`` itself where nothing is to rewrite).
    """
    if not expr.has(sp.sign, sp.Heaviside):
        return expr
    return expr.replace(lambda e: (e.is_Mul or e.is_Pow) and e.has(sp.sign, sp.Heaviside),
                        _mul)
