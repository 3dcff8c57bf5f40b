"""The scalar program's first-order running error bound E, emitted as code (units of u):
``compile_bound`` writes the program and, beside each step, its E by the rules of
``symgrad.rounding`` (one expression's rounding error, shared with the tensor program's bound).

>>> import sympy as sp
>>> from symgrad.backends.numpy import target
>>> a, b = sp.symbols("a b", real=True)
>>> s = sp.Symbol("s", real=True)
>>> bound = compile_bound([(s, a + b)], [a, b], [s], target("float64"))
>>> bound([1.0, -1.0])
[2.0]
"""

from __future__ import annotations

from typing import Callable, Sequence

import sympy as sp

from .codegen import Printer, Target, build
from .rounding import error_source


class _Alias:
    """The printer, but the node's whole expression prints as its variable (already computed)."""

    def __init__(self, printer: Printer, expr: sp.Expr, name: str) -> None:
        self.printer, self.expr, self.name, self.t = printer, expr, name, printer.t

    def __call__(self, e) -> str:
        return self.name if e is self.expr else self.printer(e)


def compile_bound(assignments: Sequence[tuple[sp.Symbol, sp.Expr]], leaves: Sequence[sp.Symbol],
                  outputs: Sequence[sp.Expr], target: Target) -> Callable:
    """``f(X) -> [E of each output]``: the program and, beside each step, its bound."""
    names: dict[sp.Symbol, str] = {}
    err: dict[sp.Symbol, str] = {}
    lines = ["def bound(X):"]
    for i, s in enumerate(leaves):
        names[s] = f"a{i}"
        lines.append(f"    a{i} = X[{i}]")
    pr = Printer(target, names)
    for i, (sym, expr) in enumerate(assignments):
        lines.append(f"    v{i} = {pr(expr)}")
        src = error_source(expr, _Alias(pr, expr, f"v{i}"), err)
        if src != "0":
            lines.append(f"    e{i} = {src}")
            err[sym] = f"e{i}"
        names[sym] = f"v{i}"
    # an output may be a constant (a constant gradient): its own rounding counts too
    outs = [err.get(o, "0") if o.is_Symbol else error_source(o, pr, err)
            for o in map(sp.sympify, outputs)]
    lines.append("    return [" + ", ".join(outs) + "]")
    return build(lines, target, pr, "bound")
