"""The derivations a teacher writes, built from a model's program: the forward pass as named
steps, each local derivative (sympy), the chain rule composed and simplified (node level), or
one delta per layer in matrix notation from a per-op table of rules (layer level); with a point,
each step's exact value beside it. ``explain`` assembles them; the report's textbook formulas
use ``textbook_adjoints`` and ``layer_rules``."""

from __future__ import annotations

import mpmath
import sympy as sp

from ..backends.mpmath import target
from ..codegen import compile_program
from ..graph import Graph, Node, active_symbols
from ..logistic import sigma
from ..model import Model
from ..optable import OPS
from .explanation import Line, Section
from .notation import MAX_TERMS, latex


def textbook_adjoints(model: Model) -> list[tuple[sp.Basic, sp.Expr]]:
    """dL/dv for every step v and parameter of the textbook (display) program, simplified and
    written in the forward steps' names: for a sigmoid neuron with BCE, dL/dz = a - y."""
    graph = model.display_graph
    out_sym = graph.output.symbol
    active = active_symbols(graph, model.params)
    adj: dict = {out_sym: sp.Integer(1)}
    for n in reversed(graph.nodes):
        if n.symbol not in adj:
            continue
        for u in n.operands:
            if u in active:
                adj[u] = adj.get(u, 0) + adj[n.symbol] * local_derivative(n, u)
    lines = []
    for n in list(reversed(graph.nodes))[1:] + [None]:
        targets = [n.symbol] if n is not None else list(model.params)
        for sym in targets:
            if sym in adj:
                e = adj[sym]
                if e.count_ops() < 60 and not e.has(sp.Piecewise):
                    e = sp.factor(sp.simplify(e))
                lines.append((sp.Derivative(out_sym, sym, evaluate=False), e))
    return lines


# ------------------------------------------------------------------ scalar (node-level) view
def shown_expr(node: Node) -> sp.Expr:
    shown = getattr(node.symbol, "shown", None)
    return shown if shown is not None else node.expr


MAX_SIMPLIFIED_CHARS = 600  # a closed form longer than this (in LaTeX) would run off the page
MAX_SIMPLIFIED_SYMBOLS = 8  # ... and one of more free symbols is not simplified (factoring cost)


def local_derivative(node: Node, u: sp.Symbol) -> sp.Expr:
    """d node / d u in readable form: in terms of the node's own value where that is shorter.
    An op's own declared partial (log-sum-exp's softmax, as derive uses) wins over sympy.diff of
    its stable form."""
    shown = shown_expr(node)
    given = (node.partials or {}).get(u)
    d = given if given is not None else sp.diff(shown, u)
    if isinstance(shown, sigma):
        d = d.subs(shown, node.symbol)
    return sp.factor(sp.together(d)) if d.count_ops() < 40 else d


def node_sections(model: Model, graph: Graph, values) -> list[Section]:
    fwd = Section("Forward pass")
    for n in graph.nodes:
        fwd.lines.append(Line(n.symbol, shown_expr(n), _fmt(values, n.symbol)))
    active = active_symbols(graph, model.params)
    loc = Section("Local derivatives")
    local: dict[tuple, sp.Expr] = {}
    for n in graph.nodes:
        for u in n.operands:
            if u in active:
                local[(n.symbol, u)] = d = local_derivative(n, u)
                loc.lines.append(Line(sp.Derivative(n.symbol, u, evaluate=False), d,
                                      _fmt_expr(values, d)))
    chain = Section("Chain rule")
    simp = Section("Gradient, simplified")
    flat = _flatten(graph)
    for p in model.params:
        paths = _paths(graph, graph.output.symbol, p, limit=6)
        if paths:
            product = sp.Add(*[sp.Mul(*[sp.Derivative(a, b, evaluate=False)
                                        for a, b in zip(path, path[1:])], evaluate=False)
                               for path in paths], evaluate=False)
            composed = sp.Add(*[sp.Mul(*[local[(a, b)] for a, b in zip(path, path[1:])])
                                for path in paths])
            lhs = sp.Derivative(graph.output.symbol, p, evaluate=False)
            chain.lines.append(Line(lhs, product, max_terms=2 if len(paths) > 2 else MAX_TERMS))
            chain.lines.append(Line(lhs, composed, _fmt_expr(values, composed)))
        expr = sp.diff(flat, p) if len(graph.nodes) <= 12 else None
        # multivariate factoring (Wang's algorithm) can run for minutes on a matrix model's
        # entries, depending on the hash seed: simplified forms only for few scalars
        if expr is not None and len(expr.free_symbols) <= MAX_SIMPLIFIED_SYMBOLS:
            nice = sp.factor(sp.simplify(expr))
            if len(latex(nice)) <= MAX_SIMPLIFIED_CHARS:  # else the chain rule lines stand
                simp.lines.append(Line(sp.Derivative(graph.output.symbol, p, evaluate=False),
                                       nice))
    text = Section("Backpropagation, textbook form",
                   note="each dL/dv from the chain rule on the formulas above, simplified")
    if len(graph.nodes) <= 30:
        text.lines = [Line(lhs, rhs) for lhs, rhs in textbook_adjoints(model)]
    return [fwd, loc, chain] + ([text] if text.lines else []) + ([simp] if simp.lines else [])


def _flatten(graph: Graph) -> sp.Expr:
    memo: dict = {}
    for n in graph.nodes:
        memo[n.symbol] = shown_expr(n).xreplace(memo)
    return memo[graph.output.symbol]


def _paths(graph: Graph, start, target, limit: int) -> list[list]:
    found: list[list] = []
    stack = [[start]]
    while stack and len(found) < limit:
        path = stack.pop()
        node = graph.by_symbol.get(path[-1])
        if path[-1] == target:
            found.append(path)
            continue
        if node is None:
            continue
        for u in reversed(node.operands):
            stack.append(path + [u])
    return found


# ------------------------------------------------------------------ matrix (layer-level) view
def group(node: Node):
    return getattr(node.symbol, "group", None)


def has_matrix(graph: Graph) -> bool:
    return any(group(n) is not None and group(n).shape != (1, 1) for n in graph.nodes)


def _mat(name: str, shape) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, *shape)


def layer_rules(op: str, out, ins, inputs: set, params: set):
    """Forward formula and backward rules (lhs, rhs) of one op in matrix notation.

    One entry per op kind (a table, not per-model formulas); ``inputs`` get no delta,
    ``params`` get dL/dW rather than a delta.
    """
    def d(m):
        return sp.MatrixSymbol(f"delta_{m.name}", *m.shape)

    def dparam(m):
        return sp.Derivative(sp.Symbol("L"), sp.Symbol(m.name), evaluate=False)

    def wrt(m, rhs):
        return [] if m.name in inputs else [(dparam(m) if m.name in params else d(m), rhs)]

    if op == "linear":
        x, W = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        fwd = W * x + b if b is not None else W * x
        back = wrt(x, W.T * d(out)) + [(dparam(W), d(out) * x.T)]
        return fwd, back + ([(dparam(b), d(out))] if b is not None else [])
    if op == "relu":
        (h,) = ins
        return (sp.Max(sp.Symbol(h.name), 0),
                wrt(h, sp.HadamardProduct(d(out), _mat(f"H({h.name})", h.shape))))
    if op == "sigmoid":
        (z,) = ins
        return (sigma(sp.Symbol(z.name)),
                wrt(z, sp.HadamardProduct(d(out), out, sp.OneMatrix(*out.shape) - out)))
    if op == "matmul":
        A, B = ins
        return A * B, wrt(A, d(out) * B.T) + wrt(B, A.T * d(out))
    if op == "dense":  # torch.nn.Linear on rows: X (T, in), W (out, in)
        X, W = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        ones = sp.OneMatrix(1, X.shape[0])
        fwd = X * W.T + (sp.OneMatrix(X.shape[0], 1) * b.T if b is not None else sp.ZeroMatrix(
            *out.shape))
        back = wrt(X, d(out) * W) + wrt(W, d(out).T * X)
        return fwd, back + (wrt(b, (ones * d(out)).T) if b is not None else [])
    if op in ("tanh", "exp"):
        (z,) = ins
        deriv = (sp.OneMatrix(*out.shape) - sp.HadamardProduct(out, out) if op == "tanh"
                 else out)
        return (sp.Function(op)(sp.Symbol(z.name)),
                wrt(z, sp.HadamardProduct(d(out), deriv)))
    entry = OPS.get(op)
    if entry is not None and entry.named:  # an op-table op (mish): delta_z = delta_y o f'(z)
        (z,) = ins
        return (entry.applied(sp.Symbol(z.name)), wrt(z, sp.HadamardProduct(
            d(out), _mat(f"{entry.latex_free()}'({z.name})", z.shape))))
    return None, []


def layer_sections(model: Model, graph: Graph, values) -> list[Section]:
    groups, order = {}, []
    for n in graph.nodes:
        g = group(n)
        key = g.label if g is not None else n.name
        if key not in groups:
            groups[key] = (g, [n])
            order.append(key)
        else:
            groups[key][1].append(n)
    shapes = {b.name: (b.shape + (1,) * (2 - len(b.shape)) if b.shape else (1, 1))
              for b in model.blocks}
    shapes.update({k: (g.shape if g is not None else (1, 1)) for k, (g, _) in groups.items()})
    fwd = Section("Forward pass, layer by layer",
                  note="matrix notation; each step is a layer of the model's program")
    back = Section("Backpropagation: one delta per layer",
                   note="delta_v = dL/dv; H is the Heaviside step, o the elementwise product")
    rules = []
    active = active_symbols(graph, model.params)
    for key in order:
        g, nodes = groups[key]
        if g is None:  # a scalar step (the loss): node-level
            n = nodes[0]
            fwd.lines.append(Line(n.symbol, shown_expr(n), _fmt(values, n.symbol)))
            for u in n.operands:
                if u in active:
                    d = local_derivative(n, u)
                    back.lines.append(Line(sp.Derivative(n.symbol, u, evaluate=False), d,
                                           _fmt_expr(values, d)))
            continue
        out = _mat(key, g.shape)
        ins = [_mat(name, shapes.get(name, (1, 1))) for name in g.operands]
        formula, backward = layer_rules(g.op, out, ins, {b.name for b in model.input_blocks},
                                         {b.name for b in model.param_blocks})
        fwd.lines.append(Line(out, formula if formula is not None else sp.Symbol(g.op),
                              _fmt_group(values, nodes)))
        rules.append(backward)
    for backward in reversed(rules):
        for lhs, rhs in backward:
            back.lines.append(Line(lhs, rhs))
    return [fwd, back]


# ------------------------------------------------------------------ values at a point
def _mp_eval(expr: sp.Expr, env: dict):
    syms = sorted(expr.free_symbols, key=sp.default_sort_key)
    fn = compile_program([], syms, [expr.subs(_sigma_rewrite(expr))], target(50))
    return fn([env[s] for s in syms])[0]


def _sigma_rewrite(expr):
    return {f: f.rewrite(sp.exp) for f in expr.atoms(sigma)}


def _fmt(values, sym) -> str | None:
    if values is None or sym not in values["env"]:
        return None
    return mpmath.nstr(values["env"][sym], 6)


def _fmt_expr(values, expr) -> str | None:
    if values is None:
        return None
    try:
        with mpmath.workdps(50):
            return mpmath.nstr(_mp_eval(expr, values["env"]), 6)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _fmt_group(values, nodes) -> str | None:
    if values is None:
        return None
    shown = [mpmath.nstr(values["env"][n.symbol], 4) for n in nodes[:6]]
    return "[" + ", ".join(shown) + (", …" if len(nodes) > 6 else "") + "]"
