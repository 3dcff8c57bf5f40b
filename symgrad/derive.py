"""The exact gradient by reverse accumulation over the model's program.

Each intermediate gets one adjoint; each local derivative comes from ``sympy.diff`` of that
node's *small* expression (or from the op's own ``partials``). Shared sub-expressions are never
expanded, so the cost grows with the size of the program, not program x parameters.
Rational constants stay exact. ``naive_gradient`` is the plain ``sympy.diff`` cross-check.

>>> import sympy as sp, symgrad as sg
>>> x, w = sp.symbols("x w")
>>> m = sg.Model("sq", sg.ops.exp(w * x), params=[w], inputs=[x])
>>> p = reverse_accumulation(m)
>>> sp.simplify(p.expand_gradient()[0] - x * sp.exp(w * x).subs({w: m.params[0]}))
0
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sympy as sp

from .model import Model


@dataclass(frozen=True)
class Program:
    """Value and gradient as one straight-line program over the model's leaves."""

    leaves: tuple[sp.Symbol, ...]  # argument order: parameter entries, then input entries
    assignments: tuple[tuple[sp.Symbol, sp.Expr], ...]  # forward pass, then adjoints
    n_forward: int  # the first n_forward assignments are the forward pass
    value: sp.Expr  # the loss (a symbol of the program)
    gradient: tuple[sp.Expr, ...]  # one per parameter entry: a symbol or a constant

    def expand_gradient(self) -> list[sp.Expr]:
        """Substitute everything back into flat expressions (small models only)."""
        memo: dict[sp.Symbol, sp.Expr] = {}
        for sym, expr in self.assignments:
            memo[sym] = expr.xreplace(memo)
        return [g.xreplace(memo) for g in self.gradient]

    @property
    def size(self) -> dict[str, int]:
        return {"forward": self.n_forward,
                "backward": len(self.assignments) - self.n_forward,
                "operations": sum(_ops(e) for _, e in self.assignments)}


def _ops(e: sp.Basic) -> int:
    """Operation count of a small expression (cheaper than sympy.count_ops)."""
    if e.is_Atom:
        return 0
    return max(len(e.args) - 1, 1) + sum(_ops(a) for a in e.args)


def reverse_accumulation(model: Model, *, view: str = "compute") -> Program:
    """Derive the exact gradient of ``model.loss`` with respect to every parameter entry.

    Arguments:
        model: a validated model.
        view: "compute" (the stable forms, default) or "display" (textbook forms).
    Returns:
        A ``Program`` computing the loss and one gradient entry per parameter scalar.
    """
    graph = model.graph if view == "compute" else model.display_graph
    params = model.params
    param_set = set(params)
    forward = [(n.symbol, n.expr) for n in graph.nodes]

    # Only nodes that depend on a parameter need an adjoint.
    active: set[sp.Symbol] = set(param_set)
    for n in graph.nodes:
        if any(o in active for o in n.operands):
            active.add(n.symbol)

    backward: list[tuple[sp.Symbol, sp.Expr]] = []
    contribs: dict[sp.Symbol, list[sp.Expr]] = defaultdict(list)
    contribs[graph.output.symbol].append(sp.Integer(1))
    for node in reversed(graph.nodes):
        terms = contribs.pop(node.symbol, None)
        if not terms or node.symbol not in active:
            continue
        adj = _named(sp.Add(*terms), f"d_{node.name}", backward)
        if adj == 0:
            continue
        for u in node.operands:
            if u not in active:
                continue
            if node.partials and u in node.partials:
                local = node.partials[u]
            else:
                local = sp.diff(node.expr, u)
            if local != 0:
                contribs[u].append(adj * local)
    gradient = []
    for p in params:
        gradient.append(_named(sp.Add(*contribs.get(p, [])), f"d_{p.name}", backward))
    return Program(tuple(model.leaves), tuple(forward + backward), len(forward),
                   graph.output.symbol, tuple(gradient))


def _named(expr: sp.Expr, name: str, out: list) -> sp.Expr:
    if expr.is_Atom:
        return expr
    sym = sp.Dummy(name, real=True)
    out.append((sym, expr))
    return sym


def naive_gradient(model: Model) -> list[sp.Expr]:
    """Plain ``sympy.diff`` of the expanded loss per parameter: the cross-check (small models)."""
    flat = model.graph.expand()
    return [sp.diff(flat, p) for p in model.params]
