r"""The formulas of a program of named scalar steps, read from the program itself: a plain
``sg.Model`` as ``symgrad.tensor.front.to_program`` builds it (one shape-() map node per step,
named by the step; block entries picked by their names ``W1[0,3]``; wide steps split into parts
``z~1``; copies that fan a node out). The report shows such a program as the steps the model
was written in: parts inlined, entries and steps by the reader's names, the textbook forms
(``textbook_program``), steps of one kind folded (an op's matrix of steps in matrix notation),
and the textbook gradient: one delta per op, or the chain rule on the steps (the tutorial's
neuron: dL/dz = a - y).

The op that made each step (its kind and matrix ``Group``) is not a node attribute yet:
``tags`` (step name -> ``Tag``) carries it, from the model's front end.

>>> import sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> x, y, w, b = sp.symbols("x y w b")
>>> a = sg.ops.sigmoid(w * x + b, label="a")
>>> m = sg.Model("n", sg.ops.bce(a, y, label="L"), params=[w, b],
...              inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
>>> steps = Steps(to_program(m))
>>> [latex(s) for s, _ in steps.steps], latex(steps.steps[1][1])
(['z', 'a', 'L'], '\\frac{1}{1 + e^{- z}}')
>>> from symgrad.logistic import sigma
>>> z, a = sp.symbols("z a")  # the front end knows a is sigma(z), with dz -> a (1 - a)
>>> steps = Steps(to_program(m), {"a": Tag("sigmoid", "a", shown=sigma(z),
...                                        partials={z: a * (1 - a)})})
>>> [(latex(lhs), latex(rhs)) for lhs, rhs in chain_rule(steps)][1:3]
[('\\frac{\\partial L}{\\partial z}', 'a - y'), ('\\frac{\\partial L}{\\partial w}', '- x \\left(y - a\\right)')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import sympy as sp

from ..logistic import sigma
from ..tensor.model import TensorModel
from ..tensor.program import X, Node, topological
from ..tensor.rename import rename
from .derivation import layer_rules
from .formulas import MAX_ADJOINTS, Formula, eq_formula, index_rules_of
from .notation import latex, mathml
from .tensor_formulas import Names, hidden, node_line

MAX_FAMILIES = 40  # kinds of steps shown; the rest are counted
MAX_CHAIN_RULE = 30  # programs up to this many steps get the chain rule on their steps
_INDEX = re.compile(r"_\{[\d,]+\}$")


@dataclass(frozen=True)
class Tag:
    """The op call that made a step: its kind (``dense``, ``score``, ``sigmoid``, ...) and, for
    an op on a matrix, its ``symgrad.ops.basic.Group`` (op, label, operands, shape)."""

    kind: str
    name: str  # the reader's name (its label; a repeated label as ``label#k``)
    group: object | None = None
    shown: sp.Expr | None = None  # the step's display form (sigma(z) for 1/(1 + exp(-z)))
    partials: Mapping | None = None  # declared partials (sigmoid: z -> a (1 - a))
    #                     shown and partials over plain symbols named as the steps (``plain``)


def plain(expr: sp.Expr, names: Mapping | None = None) -> sp.Expr:
    """``expr`` over plain symbols as ``Steps`` writes the steps: ``names`` (symbol -> step
    name) where given, else each symbol's own name."""
    names = names or {}
    return expr.xreplace({s: sp.Symbol(names.get(s, s.name)) for s in expr.free_symbols})


def _index(name: str) -> tuple[int, ...]:
    """A step's entry index and repeat (``h_{3}`` -> (3, 1), ``tanh#6`` -> (6,)), for listing
    a family in reading order."""
    name, _, again = name.partition("#")
    m = re.search(r"_\{([\d,]+)\}$", name)
    index = tuple(int(i) for i in m.group(1).split(",")) if m else ()
    return index + (int(again or 1),)


def is_steps(model: TensorModel) -> bool:
    """Whether ``model`` is a program of scalar steps: its loss and every map are shape-()
    maps, each reading scalar blocks, named entries, scalar constants or other maps."""
    def readable(a: Node) -> bool:
        a = _squeezed(a)
        return a.shape == () and (a.op in ("map", "const") or step_symbol(a) is not None)
    maps = [n for n in topological([model.loss]) if n.op == "map"]
    return model.loss.op == "map" and all(n.shape == () and all(map(readable, n.args))
                                          for n in maps)


def _squeezed(node: Node) -> Node:
    while node.op == "reshape" and tuple(n for n in node.shape if n != 1) == \
            tuple(n for n in node.args[0].shape if n != 1):
        node = node.args[0]
    return node


def _entry(name: str) -> str:
    """``W1[0,3]`` -> ``W1_{0,3}`` (how the model's entry symbols are named)."""
    m = re.match(r"^(.*)\[([\d,]+)\]$", name)
    return f"{m.group(1)}_{{{m.group(2)}}}" if m else name


def step_symbol(node: Node, tags: Mapping[str, Tag] | None = None) -> sp.Symbol | None:
    """The reader's symbol of a node: a block entry, a scalar block, a step (by its tag's
    name where ``tags`` has one); None for the rest (parts, symgrad's own intermediates)."""
    node = _squeezed(node)
    if node.is_leaf and node.op != "const" and node.shape == ():
        return sp.Symbol(node.name)
    if node.op == "einsum" and node.name:
        return sp.Symbol(_entry(node.name))
    if node.op == "map" and node.name and "~" not in node.name:
        tag = (tags or {}).get(node.name)
        return sp.Symbol(tag.name if tag is not None else node.name)
    return None


class Steps:
    """The visible steps of a program of scalar steps, in its textbook view: ``steps`` as
    (symbol, body) with parts inlined; ``params`` the parameter entries' symbols in block
    order; ``output`` the loss step's symbol.

    Arguments:
        model: a program of scalar steps (``is_steps``).
        tags: step name -> ``Tag`` (the op that made it), where known.
    """

    def __init__(self, model: TensorModel, tags: Mapping[str, Tag] | None = None) -> None:
        self.model, self.tags = model, dict(tags or {})
        view = model.textbook_program or model
        self.nodes: dict[sp.Symbol, Node] = {}
        self.steps: list[tuple[sp.Symbol, sp.Expr]] = []
        memo: dict[int, sp.Expr] = {}
        self.by_name: dict[str, Tag] = {t.name: t for t in self.tags.values()}
        for n in topological([view.loss]):
            sym = step_symbol(n, self.tags)
            if n.op == "map":
                to = {X[i]: memo[_squeezed(a).id] for i, a in enumerate(n.args)}
                body = rename(n.attrs["expr"], to) if all(  # no Max / Min re-evaluated
                    isinstance(v, sp.Symbol) for v in to.values()) else n.attrs["expr"].xreplace(to)
                if sym is None:  # a part of a wide step: inlined into its step
                    memo[n.id] = body
                    continue
                t = self.by_name.get(sym.name)
                body = t.shown if t is not None and t.shown is not None else body
                self.steps.append((sym, body))
                self.nodes[sym] = n
            if sym is not None:
                memo[n.id] = sym
            elif n.op == "const" and n.attrs["value"].shape == ():
                memo[n.id] = sp.nsimplify(float(n.attrs["value"]))
        self.output = self.steps[-1][0]
        self.params = [sp.Symbol(b.name if not b.shape else _entry(
            f"{b.name}[{','.join(map(str, i))}]")) for b in model.param_blocks
            for i in (np.ndindex(*b.shape) if b.shape else [()])]
        self.blocks = {b.name: b for b in model.blocks}

    def tag(self, sym: sp.Symbol) -> Tag | None:
        return self.by_name.get(sym.name)

    def families(self) -> list[list[tuple[sp.Symbol, sp.Expr]]]:
        """Steps grouped by the op call (or name stem) that made them, in the order a reader
        computes them (by the family's greatest depth from the inputs; ties in program
        order); each family in index order."""
        depth: dict[sp.Symbol, int] = {}
        out: dict[str, list] = {}
        for sym, body in self.steps:
            depth[sym] = 1 + max((depth.get(s, 0) for s in body.free_symbols), default=0)
            t = self.tag(sym)
            key = f"group:{t.group.label}" if t is not None and t.group is not None \
                else _INDEX.sub("", sym.name.partition("#")[0])
            out.setdefault(key, []).append((sym, body))
        fams = [sorted(f, key=lambda step: _index(step[0].name)) for f in out.values()]
        return sorted(fams, key=lambda f: max(depth[s] for s, _ in f))

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Matrix shape of each block, group and indexed step stem (``ctx_{t,c}``)."""
        shapes = {n: (b.shape + (1,) * (2 - len(b.shape)) if b.shape else (1, 1))
                  for n, b in self.blocks.items()}
        for sym, _ in self.steps:
            t = self.tag(sym)
            if t is not None and t.group is not None:
                shapes[t.group.label] = t.group.shape
                continue
            m = re.match(r"^(?P<base>.+)_\{(?P<idx>\d+(?:,\d+)?)\}$", sym.name)
            if m and m.group("base") not in self.blocks:
                idx = [int(i) + 1 for i in m.group("idx").split(",")] + [1]
                old = shapes.get(m.group("base"), (0, 0))
                shapes[m.group("base")] = (max(old[0], idx[0]), max(old[1], idx[1]))
        return shapes

    def matrix_rules(self, family) -> tuple | None:
        """(output matrix, forward formula, backward rules) of a family made by one matrix
        op (``layer_rules``), or None."""
        t = self.tag(family[0][0])
        if t is None or t.group is None:
            return None
        g, shapes = t.group, self.shapes()
        out = sp.MatrixSymbol(g.label, *g.shape)
        ins = [sp.MatrixSymbol(name, *shapes.get(name, (1, 1))) for name in g.operands]
        try:
            fwd, back = layer_rules(g.op, out, ins, {b.name for b in self.model.input_blocks},
                                     {b.name for b in self.model.param_blocks})
        except (sp.ShapeError, ValueError, TypeError):
            return None
        return (out, fwd, back) if fwd is not None else None

    def active(self) -> set:
        """The parameter entries and the steps that depend on them."""
        act = set(self.params)
        for sym, body in self.steps:
            if body.free_symbols & act:
                act.add(sym)
        return act


def model_formulas(steps: Steps) -> list[Formula]:
    """The model one line per kind of step: an op on a matrix in matrix notation (with its
    shape), other kinds by their first and last step with ⋮ between."""
    out: list[Formula] = []
    fams = steps.families()
    for fam in fams[:MAX_FAMILIES]:
        rules = steps.matrix_rules(fam)
        if rules is not None:
            sym, fwd, _ = rules
            f = eq_formula(sym, fwd)
            out.append(Formula(f.latex + r" \quad (%d \times %d)" % sym.shape, f.mathml))
            continue
        first = eq_formula(*fam[0])
        if len(fam) == 1:
            out.append(first)
            continue
        last = eq_formula(*fam[-1])
        tex = (r"\begin{aligned} " + first.latex.replace(" = ", " &= ", 1) + r" \\ &\;\vdots"
               r" \\ " + last.latex.replace(" = ", " &= ", 1) + r" \end{aligned}")
        out.append(Formula(tex, first.mathml + "<br>⋮<br>" + last.mathml,
                           note=f"{len(fam)} steps of this kind, first and last:"))
    if len(fams) > MAX_FAMILIES:
        rest = sum(len(f) for f in fams[MAX_FAMILIES:])
        out.append(Formula(note=f"… {len(fams) - MAX_FAMILIES} more kinds of steps "
                                f"({rest} steps)"))
    return out


def local_derivative(steps: Steps, body: sp.Expr, step: sp.Symbol, u: sp.Symbol) -> sp.Expr:
    """d step / d u, readable: an op's declared partial (a sigmoid's a (1 - a)) where it has
    one, a sigmoid's derivative in terms of its own value."""
    t = steps.tag(step)
    given = (t.partials or {}) if t is not None else {}
    d = given[u] if u in given else sp.diff(body, u)
    if isinstance(body, sigma):
        d = d.subs(body, step)
    return sp.factor(sp.together(d)) if d.count_ops() < 40 else d


def chain_rule(steps: Steps) -> list[tuple[sp.Basic, sp.Expr]]:
    """dL/dv for every step and parameter entry, by the chain rule over the steps' bodies,
    simplified and written in the steps' names (a sigmoid neuron with BCE: dL/dz = a - y)."""
    active = steps.active()
    adj: dict = {steps.output: sp.Integer(1)}
    for sym, body in reversed(steps.steps):
        if sym not in adj:
            continue
        for u in sorted(body.free_symbols & active, key=sp.default_sort_key):
            adj[u] = adj.get(u, 0) + adj[sym] * local_derivative(steps, body, sym, u)
    lines = []  # the steps last kind first (backpropagation order), each kind in reading order
    order = [s for fam in reversed(steps.families()) for s, _ in fam if s != steps.output]
    for sym in order + steps.params:
        if sym in adj:
            e = adj[sym]
            if e.count_ops() < 60 and not e.has(sp.Piecewise):
                e = sp.factor(sp.simplify(e))
            lines.append((sp.Derivative(steps.output, sym, evaluate=False), e))
    return lines


def _matrix_eq(lhs, rhs) -> Formula:
    try:
        ml = mathml(lhs, display=False) + " = " + mathml(rhs, display=False)
    except (TypeError, ValueError):
        ml = ""
    return Formula(latex=f"{latex(lhs)} = {latex(rhs)}", mathml=f"<span>{ml}</span>")


LAYER_NOTE = "δ_v = ∂L/∂v; H is the Heaviside step, ∘ the elementwise product"


def textbook(steps: Steps) -> tuple[str, list[Formula]] | None:
    """The textbook gradient: one delta per op in matrix notation where ops on matrices made
    the steps (the rules of the other kinds in index notation), else the chain rule on the
    steps (small programs), else the index rules alone."""
    fams = steps.families()
    kinds = [t.kind for t in (steps.tag(s) for s, _ in steps.steps) if t is not None]
    rules = index_rules_of(list(dict.fromkeys(kinds)))
    title = "Textbook form: one delta per op (matrix notation)"
    matrix = [(f, r) for f, r in ((f, steps.matrix_rules(f)) for f in fams) if r is not None]
    if any(r[0].shape != (1, 1) for _, r in matrix):
        covered = {s for f, _ in matrix for s, _ in f}
        if all(s in covered or s == steps.output for s, _ in steps.steps):
            lines = [Formula(note=LAYER_NOTE)]  # a layered model: every step is a layer's
            body = dict(steps.steps)
            active = steps.active()
            for u in sorted(body[steps.output].free_symbols & active, key=sp.default_sort_key):
                lines.append(_matrix_eq(sp.Derivative(steps.output, u, evaluate=False),
                                        local_derivative(steps, body[steps.output], steps.output, u)))
            for _, (_, _, back) in reversed(matrix):
                lines += [_matrix_eq(lhs, rhs) for lhs, rhs in back]
            return title, lines
        big = [(f, r) for f, r in matrix if r[0].shape != (1, 1)]
        lines = [_matrix_eq(lhs, rhs) for _, (_, _, back) in reversed(big) for lhs, rhs in back]
        rest = len(steps.steps) - sum(len(f) for f, _ in big)
        note = (LAYER_NOTE + "; where a value feeds several ops, its gradient is the sum of "
                "their lines" + (f"; the other {rest} steps are elementwise or reductions, "
                                  "differentiated step by step" if rest else ""))
        return title, [Formula(note=note)] + lines + rules
    if len(steps.steps) > MAX_CHAIN_RULE:
        return ("Textbook form: one rule per op (index notation)", rules) if rules else None
    return ("Textbook form: the chain rule on the formulas above",
            [eq_formula(lhs, rhs) for lhs, rhs in chain_rule(steps)] + rules)


class StepNames(Names):
    """``Names`` for a program of steps: entries, scalar blocks and steps by the reader's
    symbols (``W^{(1)}_{0,3}``, ``h_{0}``); symgrad's own intermediates v⁽ᵏ⁾."""

    def __init__(self, tags: Mapping[str, Tag]) -> None:
        super().__init__()
        self.tags = tags

    def tex(self, node: Node, idx: str) -> str:
        sym = step_symbol(node, self.tags)
        return latex(sym) if sym is not None else super().tex(node, idx)

    def text(self, node: Node, idx: str) -> str:
        sym = step_symbol(node, self.tags)
        return sym.name if sym is not None else super().text(node, idx)


def computed(steps: Steps) -> tuple[str, list[Formula]]:
    """The first steps of the gradient program symgrad derives and runs (the stable program:
    ``steps.model``, not its textbook view)."""
    model = steps.model
    forward = {n.id for n in topological([model.loss])}
    back = [n for n in model.gradient.nodes if n.id not in forward and not n.is_leaf
            and not hidden(n)]
    shown = [n for n in back if n.op == "map"][:MAX_ADJOINTS]
    note = (f"{len(back)} gradient operations over {len(forward)} forward nodes (reverse "
            "accumulation: sympy.diff of each step, one vector-Jacobian rule per node type)"
            + ("; symgrad runs the stable form of the loss, the same function without "
               "cancellation (the formulas above are as written, and are what your torch code "
               "is checked against)" if model.textbook_program is not None else "")
            + f"; the first {len(shown)} steps (v⁽ᵏ⁾ the k-th intermediate):")
    names = StepNames(steps.tags)
    return ("As computed (the gradient program symgrad derives and runs)",
            [Formula(note=note)] + [node_line(n, names) for n in shown])


def gradient_formulas(steps: Steps) -> list[tuple[str, list[Formula]]]:
    """(title, formulas): the textbook gradient (where there is one), then the first steps of
    the gradient program as symgrad runs it."""
    book = textbook(steps)
    return ([book] if book else []) + [computed(steps)]
