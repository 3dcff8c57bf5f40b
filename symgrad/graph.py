"""The DAG of named intermediates that every view of a model is derived from.

A model is held as a *program*: a sequence of small named intermediates, each defined by a small
sympy expression over leaves (parameters, inputs) and earlier intermediates. Ops in ``symgrad.ops``
create one intermediate per result, so a model's size grows with its number of operations and no
sympy routine ever walks a large tree.

>>> import sympy as sp
>>> from symgrad.graph import define, Graph
>>> x = sp.Symbol("x")
>>> a = define(sp.exp(x) + 1, kind="a")
>>> g = Graph.from_expr(a * x, name_hint="L")
>>> [n.name for n in g.nodes]
['a', 'L']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import sympy as sp


def _rebuild(cls, definition, kind, label, index, attrs):
    obj = sp.Dummy.__new__(cls, kind, dummy_index=index, real=True)
    obj.definition, obj.op, obj.label = definition, kind, label
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


class Intermediate(sp.Dummy):
    """A named intermediate value: a real symbol that carries its defining expression.

    ``partials`` optionally gives the local derivative with respect to some operands in the form
    frameworks use (e.g. sigma' = s(1 - s) in terms of the output s); ``derive`` uses it instead
    of ``sympy.diff`` for those operands, and a test cross-checks it against ``sympy.diff``.
    """

    definition: sp.Expr
    op: str  # what the op is ("sigmoid", "linear"...)
    label: str | None
    partials: Mapping[sp.Symbol, sp.Expr] | None

    def __new__(cls, definition: sp.Expr, kind: str, label: str | None = None):
        obj = super().__new__(cls, kind, real=True)
        obj.definition = definition
        obj.op = kind
        obj.label = label
        obj.partials = None
        obj.display = None  # the textbook form, when ``definition`` is a stable rewrite
        obj.shown = None  # how explanations write it (sigma(z) for a sigmoid), if not display
        obj.group = None  # the matrix op call that made it (symgrad.ops.Group), if any
        return obj

    def __reduce_ex__(self, protocol):
        """Pickled with its dummy index and attributes (a model sent to a Dask worker): the
        same symbol, so the unpickled program's steps still refer to each other."""
        attrs = {k: getattr(self, k) for k in ("partials", "display", "shown", "group")}
        return (_rebuild, (type(self), self.definition, self.op, self.label, self.dummy_index,
                           attrs))

    def view(self, view: str) -> sp.Expr:
        """The definition used by a view: "compute" (stable form) or "display" (textbook)."""
        if view == "display" and self.display is not None:
            return self.display
        return self.definition

    def _sympystr(self, printer) -> str:
        return self.label or f"{self.op}#{self.dummy_index}"

    def _latex(self, printer) -> str:
        return self.label or self.op


def define(expr, *, kind: str, label: str | None = None,
           partials: Callable[[sp.Symbol], Mapping[sp.Symbol, sp.Expr]] | None = None):
    """Name ``expr`` as a new intermediate and return its symbol.

    Arguments:
        expr: the defining expression (small: over leaves and earlier intermediates).
        kind: what the op is (``"sigmoid"``, ``"linear"``…); used for names and explanations.
        label: an explicit name for the step (``"z"``, ``"a"``), shown by ``explain``.
        partials: ``out -> {operand: d out / d operand}`` in terms of ``out`` itself.
    Returns:
        The intermediate's symbol, or ``expr`` itself when it is already a symbol or a number.
    """
    expr = sp.sympify(expr)
    if expr.is_Atom:
        return expr
    node = Intermediate(expr, kind, label)
    if partials is not None:
        node.partials = dict(partials(node))
    return node


@dataclass(frozen=True)
class Node:
    """One assignment of the program: ``symbol = expr``."""

    name: str
    symbol: sp.Symbol
    expr: sp.Expr
    kind: str
    operands: tuple[sp.Symbol, ...]  # the symbols expr reads (leaves or earlier nodes)
    partials: Mapping[sp.Symbol, sp.Expr] | None = None


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order; the last one is the output."""

    nodes: tuple[Node, ...]
    leaves: frozenset[sp.Symbol]  # symbols read that are not nodes
    rewrites: tuple[str, ...] = field(default=(), compare=False)  # stable rules applied

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    @staticmethod
    def from_expr(expr: sp.Expr, *, name_hint: str = "L",
                  rename: Callable[[sp.Expr], sp.Expr] | None = None,
                  view: str = "compute", rewrite=None) -> "Graph":
        """Collect the intermediates reachable from ``expr`` into a program.

        ``rename`` is applied to every definition (the model uses it to make leaves real).
        ``view="display"`` uses each op's textbook form where it has a stable rewrite: the
        composition a reader (and most hand-written torch code) computes.
        ``rewrite`` (compute view only): a ``symgrad.stable.Rewriter`` applied to the root and
        to every plain-sympy step (``rewritable``); the steps it makes join the program and the
        rules it applied are listed in ``Graph.rewrites``.
        """
        rename = rename or (lambda e: e)
        if view != "compute":
            rewrite = None
        bodies: dict[Intermediate, sp.Expr] = {}

        def body(item: Intermediate) -> sp.Expr:
            if item not in bodies:
                e = item.view(view)
                bodies[item] = rewrite(e) if rewrite is not None and rewritable(item) else e
            return bodies[item]
        if rewrite is not None:
            expr = rewrite(expr)
        order: list[Intermediate] = []
        state: dict[Intermediate, int] = {}  # 1 visiting, 2 done
        roots = _intermediates_in(expr)
        for root in roots:
            stack: list[tuple[Intermediate, bool]] = [(root, False)]
            while stack:
                item, expanded = stack.pop()
                if expanded:
                    if state.get(item) != 2:
                        state[item] = 2
                        order.append(item)
                    continue
                if state.get(item):
                    continue
                state[item] = 1
                stack.append((item, True))
                for dep in _intermediates_in(body(item)):
                    if not state.get(dep):
                        stack.append((dep, False))
        names = _Namer()
        nodes: list[Node] = []
        for item in order:
            nodes.append(_node(names(item.label or item.op), item, rename(body(item)),
                               item.op, item.partials if body(item) is item.definition
                               else None, rename))
        if isinstance(expr, Intermediate):
            out = expr
        else:
            out = Intermediate(expr, "loss", name_hint)
            nodes.append(_node(names(name_hint), out, rename(expr), "loss", None, rename))
        node_syms = {n.symbol for n in nodes}
        leaves = frozenset(s for n in nodes for s in n.operands if s not in node_syms)
        return Graph(tuple(nodes), leaves, rewrite.applied if rewrite is not None else ())

    def expand(self, symbol: sp.Symbol | None = None) -> sp.Expr:
        """The flat sympy expression of a node (default: the output). Small graphs only."""
        memo: dict[sp.Symbol, sp.Expr] = {}
        for n in self.nodes:
            memo[n.symbol] = n.expr.xreplace(memo)
        return memo[(symbol or self.output.symbol)]


def rewritable(item: Intermediate) -> bool:
    """Whether a step is plain sympy that ``symgrad.stable`` may rewrite: not an op's own stable
    form (explicit partials or a display view) and not a step the rewriter made."""
    return (item.partials is None and item.display is None
            and getattr(item, "rewritten", None) is None)


def _intermediates_in(expr: sp.Basic) -> list[Intermediate]:
    found = expr.atoms(Intermediate)
    return sorted(found, key=lambda s: s.dummy_index)


def _node(name, symbol, expr, kind, partials, rename) -> Node:
    operands = tuple(sorted(expr.free_symbols, key=sp.default_sort_key))
    if partials:
        partials = {rename(k): rename(v) for k, v in partials.items()}
    return Node(name, symbol, expr, kind, operands, partials)


class _Namer:
    """Unique, readable names: ``a``, ``a_2``, ``sigmoid_3``…"""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        count = self.seen.get(base, 0) + 1
        self.seen[base] = count
        return base if count == 1 else f"{base}_{count}"

