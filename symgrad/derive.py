"""The exact gradient by reverse accumulation over the model's program.

Each intermediate gets one adjoint; each local derivative comes from ``sympy.diff`` of that
node's *small* expression (or from the op's own ``partials``). Shared sub-expressions are never
expanded, so the cost grows with the size of the program, not program x parameters.
Rational constants stay exact. ``naive_gradient`` is the plain ``sympy.diff`` cross-check.

>>> import sympy as sp, symgrad as sg
>>> x, w = sp.symbols("x w", real=True)  # a Model's symbols are real
>>> m = sg.Model("sq", sg.ops.exp(w * x), params=[w], inputs=[x])
>>> p = reverse_accumulation(m)
>>> p.expand_gradient()[0]
x*exp(w*x)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from .graph import Graph, active_symbols
from .model import Model
from .tensor.derive import merge_powers


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

    @cached_property
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
        view: "compute" (the stable forms symgrad runs, default), "display" (textbook forms)
            or "written" (the model as written: ops' stable forms, without
            ``symgrad.stable``'s rewrites of plain sympy; what the oracle evaluates).
    Returns:
        A ``Program`` computing the loss and one gradient entry per parameter scalar.
    """
    graph = {"compute": model.graph, "display": model.display_graph,
             "written": model.written_graph}[view]
    params = model.params
    forward = [(n.symbol, n.expr) for n in graph.nodes]

    active = active_symbols(graph, params)  # only these need an adjoint

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
        wanted = {u for u in node.operands if u in active}
        given = {u: d for u, d in (node.partials or {}).items() if u in wanted}
        computed = local_partials(node.expr, wanted - set(given))
        for u in node.operands:
            local = given.get(u, computed.get(u, 0))
            if u in wanted and local != 0:
                contribs[u].append(adj * local)
    gradient = []
    for p in params:
        gradient.append(_named(sp.Add(*contribs.get(p, [])), f"d_{p.name}", backward))
    return Program(tuple(model.leaves), tuple(forward + backward), len(forward),
                   graph.output.symbol, tuple(gradient))


def local_partials(expr: sp.Expr, wanted: set) -> dict[sp.Symbol, sp.Expr]:
    """d expr / d u for every u in ``wanted``, visiting each term and factor once.

    Equal to ``sympy.diff(expr, u)`` per u, but a dot product of n terms costs O(n) instead of
    O(n^2): sums are split by term, products by factor (product rule), and ``sympy.diff`` runs
    only on the factor that holds u.
    """
    out: dict[sp.Symbol, list] = defaultdict(list)
    for term in (expr.args if expr.is_Add else (expr,)):
        if term.is_Symbol:
            if term in wanted:
                out[term].append(sp.S.One)
            continue
        if not (term.free_symbols & wanted):
            continue
        if term.is_Mul:
            factors = term.args
            for i, f in enumerate(factors):
                for u in ({f} if f.is_Symbol else f.free_symbols) & wanted:
                    df = sp.S.One if f == u else sp.diff(f, u)
                    if df != 0:
                        out[u].append(sp.Mul(*factors[:i], df, *factors[i + 1:]))
        elif isinstance(term, sp.Piecewise):
            for u in term.free_symbols & wanted:
                out[u].append(_piecewise_partial(term, u))
        else:
            for u in term.free_symbols & wanted:
                out[u].append(sp.diff(term, u))
    return {u: merge_powers(sp.Add(*v)) for u, v in out.items()}


def _piecewise_partial(pw: sp.Piecewise, u: sp.Symbol) -> sp.Expr:
    """d/du of a Piecewise, branch by branch, without sympy's branch-collapsing pass.

    When the conditions are ``Eq(s, k)`` for distinct numbers k (a table lookup: embedding rows,
    the target's logit), they exclude each other, so only the branches that hold u are kept.
    """
    pairs = [(b.expr, b.cond) for b in pw.args]
    conds = [c for _, c in pairs[:-1]]
    lookup = (pairs[-1][1] is sp.true and all(isinstance(c, sp.Eq) for c in conds)
              and len({c.lhs for c in conds}) == 1 and all(c.rhs.is_number for c in conds)
              and len({c.rhs for c in conds}) == len(conds))
    if lookup:
        kept = [(sp.diff(e, u), c) for e, c in pairs[:-1] if e.has(u)]
        last = sp.diff(pairs[-1][0], u) if pairs[-1][0].has(u) else sp.S.Zero
        if not kept:
            if last == 0:
                return sp.S.Zero
            return sp.Piecewise(*[(sp.S.Zero, c) for c in conds], (last, sp.true),
                                evaluate=False)
        if last == 0:
            return sp.Piecewise(*kept, (sp.S.Zero, sp.true), evaluate=False)
    return sp.Piecewise(*[(sp.diff(e, u), c) for e, c in pairs], evaluate=False)


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
