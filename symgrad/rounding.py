"""The first-order rounding error E of one expression, emitted as code (units of u): the rules
the running error bound applies (``symgrad.tensor.bound``, one map body at a time).

For an expression ``v = f(...)`` we emit ``E_v`` such that a faithful floating-point evaluation
satisfies |fl(v) - v| <~ u * E_v, u the unit roundoff. Rules, applied over the small expression:

    leaf (exactly representable input)   0
    constant                             |c| unless exactly representable
    a_1 + ... + a_n                      sum E_i + (n - 1) sum |a_i|
    a_1 * ... * a_n                      sum E_i prod_{j != i} |a_j| + (m - 1) |product|,
                                         m the factors other than +-2^k
    b ** k (k constant)                  |k b^(k-1)| E_b + |b^k|
    b ** e (e not a constant)            |e b^(e-1)| E_b + |b^e log|b|| E_e + |b^e|
    f(a_1, ..., a_n)                     sum |df/da_i| E_i + |f|  (no |f| for Abs, Max, Min)
    Max/Min(a, b)                        the winner's E; max(Ea, Eb) within NEAR_TIE of a tie
    Heaviside, sign                      0
    Piecewise                            the E of the branch taken

Cancellation thus gets the tolerance of the terms that cancelled, and a well-conditioned value a
few ULPs. ``symgrad.compare`` multiplies E by the tolerance's safety factor. The bound is printed
straight to source through the backend's printer (building it as sympy expressions costs more
than the model's derivative).

>>> import sympy as sp
>>> from symgrad.backends.numpy import target
>>> from symgrad.codegen import Printer
>>> a, b = sp.symbols("a b", real=True)
>>> error_source(a + b, Printer(target("float64"), {a: "a", b: "b"}), {})
'(1 * (abs(a) + abs(b)))'
"""

from __future__ import annotations

from typing import Mapping

import sympy as sp

from . import functions
from .codegen import Printer
from .compare.tolerance import Tolerance, tie_band

_NO_ERROR = functions.bound_classes("step")  # piecewise-constant: no propagated error
_EXACT = functions.bound_classes("exact")  # Abs, Max, Min: no rounding of their own


def _exact_constant(c: sp.Expr) -> bool:
    if c.is_Integer:
        return abs(int(c)) < 2**24
    if c.is_Rational:
        q = int(c.q)
        return q & (q - 1) == 0 and abs(int(c.p)) < 2**24
    return False


def _power_of_two(c: sp.Expr) -> bool:
    """Multiplying by +-2^k is exact (no rounding of its own)."""
    if not c.is_Rational or c == 0:
        return False
    p, q = abs(int(c.p)), int(c.q)
    return p & (p - 1) == 0 and q & (q - 1) == 0


def _sum(parts: list[str]) -> str:
    parts = [p for p in parts if p != "0"]
    if not parts:
        return "0"
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


# E is in units of the dtype's u: the band where a Max/Min's computed arguments may cross is
# |a - b| <= tie (Ea + Eb), tie = the allowance's safety factor x u of the widest compared dtype
# (``symgrad.compare.tolerance.tie_band``, the one place it is decided), passed to the compiled
# bound as its ``tie`` argument; NEAR_TIE, the default, is that band with no dtype named: it
# holds for every dtype symgrad runs at the default safety (bfloat16: 4 x 2^-8 = 2^-6).
NEAR_TIE = tie_band((), Tolerance())


def _max_min_error(e: sp.Expr, pr: Printer, err: Mapping[sp.Symbol, str]) -> str:
    """E of Max(a, b) / Min(a, b): the winner's E where the arguments are farther apart than
    their errors could bridge (the computed and the exact winner agree), else max(Ea, Eb) (both
    are 1-Lipschitz in the max norm; the generated code reads the band as ``tie``, an argument
    of the compiled bound: ``NEAR_TIE``). The winner's E alone (Heaviside(a - b) Ea
    + ...) was unsound where the exact arguments cross but the bound's point does not (a
    float32 point evaluated in float64: Min(w x, 1) at w = 3, x = fl32(1/3), where w x rounds
    to 1 only in float32: E was 0, and correct torch code failed)."""
    (a, b), (ea, eb) = e.args, [error_source(t, pr, err) for t in e.args]
    given = [s for s in (ea, eb) if s != "0"]
    if not given:
        return "0"
    winner = _sum([f"abs({pr(e.fdiff(i + 1))}) * {s}" for i, s in enumerate((ea, eb))
                   if s != "0"])
    both = pr.t.functions[sp.Max](given) if len(given) > 1 else given[0]
    near = f"abs({pr(a)} - {pr(b)}) <= tie * {_sum(given)}"  # tie: the bound's argument
    return f"numpy.where({near}, {both}, {winner})"


def error_source(e: sp.Expr, pr: Printer, err: Mapping[sp.Symbol, str]) -> str:
    """Source of E for expression ``e``; ``err`` maps symbols to the names of their E."""
    if e.is_Symbol:
        return err.get(e, "0")
    if e.is_number and not isinstance(e, sp.Piecewise):
        return "0" if _exact_constant(e) else f"abs({pr(e)})"
    if e.is_Add:
        # each addition is charged the sum of |terms|, not its own result (a subset sum, at most
        # (sum |a_i| + |S|) / 2, as ``tensor/ownround.py`` charges an einsum): the map body is
        # sympy's form of the derivative, and torch's backward computes other forms of it (the
        # textbook BCE's Hessian-vector product: |result| per addition left a correct float64
        # torch_fn 153 ULPs against 94 allowed, tests/test_hvp.py); this slack covers them
        rounding = f"({len(e.args) - 1} * ({' + '.join(f'abs({pr(a)})' for a in e.args)}))"
        return _sum([error_source(a, pr, err) for a in e.args] + [rounding])
    if e.is_Mul:
        args = e.args
        terms = []
        for i, a in enumerate(args):
            ea = error_source(a, pr, err)
            if ea != "0":
                others = args[:i] + args[i + 1:]
                terms.append(f"{ea} * abs({' * '.join(pr(o) for o in others)})")
        n_round = sum(1 for a in args if not _power_of_two(a)) - 1
        if n_round > 0:
            terms.append(f"{n_round} * abs({pr(e)})")
        src = _sum(terms)
        # a step on its flat side (Heaviside = 0) or x**y at x = 0 makes the product exactly 0
        # whatever the other factors are (1/sqrt(relu(w)) = inf at w < 0): so is its error
        annul = [a for a in args
                 if isinstance(a, sp.Heaviside) or (a.is_Pow and not a.exp.is_number)]
        if annul and src != "0" and "annul" in pr.t.namespace:
            src = f"annul({pr(annul[0])}, {src})"
        return src
    if e.is_Pow:
        base, ex = e.args
        if ex.is_number:
            eb = error_source(base, pr, err)
            if eb == "0":
                cond = "0"
            elif ex.is_negative:  # |k b^(k-1)| E_b as |k| |b^k| (E_b / |b|): no underflow
                cond = f"{abs(float(ex))!r} * abs({pr(e)}) * ({eb} / abs({pr(base)}))"
            else:
                cond = f"abs({pr(ex * base ** (ex - 1))}) * {eb}"
            return _sum([cond, f"abs({pr(e)})"])
        # b ** e = exp(e log b), but with its partials written so that b = 0 (0 ** 2 = 0, no
        # log 0) and b < 0 at an integer-valued e stay finite: |e b^(e-1)| E_b, |b^e log|b|| E_e
        # (0 where b^e = 0: e's error moves nothing there), and the pow's own rounding
        eb, ee = error_source(base, pr, err), error_source(ex, pr, err)
        terms = [f"abs({pr(e)})"]
        if eb != "0":
            terms.append(f"abs({pr(ex * base ** (ex - 1))}) * {eb}")
        if ee != "0":
            terms.append(f"numpy.where({pr(e)} == 0, 0.0, abs({pr(e)} * "
                         f"numpy.log(abs({pr(base)})))) * {ee}")
        return _sum(terms)
    if isinstance(e, sp.Piecewise):
        return pr.t.piecewise([(error_source(b.expr, pr, err), pr(b.cond)) for b in e.args])
    if isinstance(e, _NO_ERROR):
        return "0"
    if isinstance(e, (sp.Max, sp.Min)) and len(e.args) > 2:  # the largest E (1-Lipschitz in
        # the max norm); fdiff would rebuild an n-1 argument Max per argument (slow in sympy)
        terms = [t for t in (error_source(a, pr, err) for a in e.args) if t != "0"]
        return pr.t.functions[sp.Max](terms) if len(terms) > 1 else (terms or ["0"])[0]
    if isinstance(e, (sp.Max, sp.Min)):
        return _max_min_error(e, pr, err)
    if isinstance(e, sp.Function):
        terms = []
        for i, a in enumerate(e.args):
            ea = error_source(a, pr, err)
            if ea != "0":
                terms.append(f"abs({pr(e.fdiff(i + 1))}) * {ea}")
        if not isinstance(e, _EXACT):
            terms.append(f"abs({pr(e)})")
        return _sum(terms)
    return f"abs({pr(e)})"
