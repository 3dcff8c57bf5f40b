r"""The report's formulas of a plain model, from the same steps ``explain`` reads
(``present/step_derivation``: the ``FrontStep`` tags ``symgrad.tensor.front.to_program`` puts
on the program's map nodes): the model one line per family of steps (an op's matrix of steps
in matrix notation, ``layer_rules``; other families by their first and last step), and the
textbook gradient (one delta per op, or the chain rule on the steps: ``textbook_adjoints``,
the tutorial's neuron dL/dz = a - y), beside the first steps of the gradient program symgrad
runs. Names are ``step_derivation.display_names`` (a repeated label as ``label#k``).

>>> from symgrad import zoo
>>> from symgrad.tensor.model import program_of
>>> view = View(program_of(zoo.get("neuron")))
>>> [f.latex for f in model_formulas(view)]
['z = b + w x', 'a = \\sigma\\left(z\\right)', 'L = - y \\log{\\left(a \\right)} - \\left(1 - y\\right) \\log{\\left(1 - a \\right)}']
"""

from __future__ import annotations

import re
from dataclasses import replace

import sympy as sp

from ..stable import RULES
from ..tensor.front import FrontStep
from ..tensor.model import TensorModel
from ..tensor.program import Node, topological
from .formulas import MAX_ADJOINTS, Formula, eq_formula, index_rules_of
from .layer_derivation import LAYER_NOTE, NOTATION, family_of, layer_rules, matrix_shapes
from .notation import latex, layer_names, mathml, ordinal
from .step_derivation import (Steps, display_names, local_derivative, steps_of,
                              textbook_adjoints)
from .tensor_formulas import Names, hidden, node_line

MAX_FAMILIES = 40  # kinds of steps shown; the rest are counted
MAX_CHAIN_RULE = 30  # programs up to this many steps get the chain rule on their steps


class View:
    """A plain model's program as the report reads it: ``steps`` of its textbook program
    (``steps_of``; None for a program built from tensor ops), ``plain_steps`` the same over
    plain symbols by the reader's names, ``program`` the stable program symgrad runs,
    ``by_name`` step symbol -> reader's name (``display_names``), ``reading`` step symbol ->
    its place in the program's topological order.

    Arguments:
        program: a ``TensorModel`` (``symgrad.tensor.model.program_of`` of the model).
    """

    def __init__(self, program: TensorModel) -> None:
        self.program = program
        self.steps: Steps | None = steps_of(program.textbook_program or program)
        self.reading = {n.attrs["step"].symbol: i for i, n in enumerate(  # the program's order
            topological([(program.textbook_program or program).loss])) if "step" in n.attrs}
        ran = steps_of(program)  # the stable program's own steps (a rewritten loss), then
        self.by_name = ({} if ran is None else display_names(ran)) | (  # the textbook's
            {} if self.steps is None else display_names(self.steps))
        # the same steps over plain symbols by those names: sympy orders and simplifies their
        # terms as a reader writes them (dL/dz = a - y, 2 (P - X) / 9)
        self.plain_steps = None if self.steps is None else replace(
            self.steps, nodes=[self._plain_step(n) for n in self.steps.nodes],
            ids={}, params=[self.plain(p) for p in self.steps.params])

    def _plain_step(self, n: FrontStep) -> FrontStep:
        return replace(n, symbol=self.plain(n.symbol), expr=self.plain(n.expr),
                       operands=tuple(map(self.plain, n.operands)),
                       partials=tuple((self.plain(u), self.plain(d)) for u, d in n.partials))

    def plain(self, expr: sp.Basic) -> sp.Basic:
        """``expr`` over plain symbols named as the reader names them, so that its terms print
        in the reader's order (``a - y``, sympy's order of plain symbols by name)."""
        return expr.xreplace({s: sp.Symbol(self.by_name.get(s, s.name), real=True)
                              for s in expr.free_symbols if isinstance(s, sp.Symbol)})



def _index(view: View, sym: sp.Symbol) -> tuple[int, ...]:
    """A step's entry index and repeat (``h_{3}`` -> (3, 1), ``tanh#6`` -> (6,)), for listing
    a family in reading order."""
    name, _, again = view.by_name[sym].partition("#")
    m = re.search(r"_\{([\d,]+)\}$", name)
    index = tuple(int(i) for i in m.group(1).split(",")) if m else ()
    return index + (int(again or 1),)


def families(view: View) -> list[list]:
    """The steps grouped by the op call (or name stem) that made them (``family_of``), in the
    order a reader computes them (by the family's greatest depth from the inputs; ties in
    the program's topological order); each family in index order."""
    depth: dict[sp.Symbol, int] = {}
    out: dict[str, list] = {}
    for n in sorted(view.steps.nodes, key=lambda n: view.reading[n.symbol]):
        depth[n.symbol] = 1 + max((depth.get(s, 0) for s in n.operands), default=0)
        out.setdefault(family_of(n), []).append(n)
    fams = [sorted(f, key=lambda n: _index(view, n.symbol)) for f in out.values()]
    return sorted(fams, key=lambda f: max(depth[n.symbol] for n in f))


def matrix_rules(view: View, family: list) -> tuple | None:
    """(output matrix, forward formula, backward rules) of a family made by one matrix op
    (``layer_rules``), or None."""
    g, steps = family[0].group, view.steps
    if g is None:
        return None
    shapes = matrix_shapes(steps)
    out = sp.MatrixSymbol(g.label, *g.shape)
    ins = [sp.MatrixSymbol(name, *shapes.get(name, (1, 1))) for name in g.operands]
    try:
        fwd, back = layer_rules(g.op, out, ins, steps.inputs, steps.param_names)
    except (sp.ShapeError, ValueError, TypeError):
        return None
    return (out, fwd, back) if fwd is not None else None


def model_formulas(view: View) -> list[Formula]:
    """The model one line per kind of step: an op on a matrix in matrix notation (with its
    shape), other kinds by their first and last step with ⋮ between; the model's
    ``layer_names`` with their layer superscript (simplenet's W^(1))."""
    with layer_names(view.program.layer_names):
        return _model_formulas(view)


def _model_formulas(view: View) -> list[Formula]:
    out: list[Formula] = []
    fams = families(view)
    for fam in fams[:MAX_FAMILIES]:
        rules = matrix_rules(view, fam)
        if rules is not None:
            sym, fwd, _ = rules
            f = eq_formula(sym, fwd)
            out.append(Formula(f.latex + r" \quad (%d \times %d)" % sym.shape, f.mathml,
                               note=NOTATION.get(fam[0].group.op, "")))
            continue
        first = eq_formula(view.plain(fam[0].symbol), view.plain(fam[0].expr))
        if len(fam) == 1:
            out.append(first)
            continue
        last = eq_formula(view.plain(fam[-1].symbol), view.plain(fam[-1].expr))
        tex = (r"\begin{aligned} " + first.latex.replace(" = ", " &= ", 1) + r" \\ &\;\vdots"
               r" \\ " + last.latex.replace(" = ", " &= ", 1) + r" \end{aligned}")
        out.append(Formula(tex, first.mathml + "<br>⋮<br>" + last.mathml,
                           note=f"{len(fam)} steps of this kind, first and last:"))
    if len(fams) > MAX_FAMILIES:
        rest = sum(len(f) for f in fams[MAX_FAMILIES:])
        out.append(Formula(note=f"… {len(fams) - MAX_FAMILIES} more kinds of steps "
                                f"({rest} steps)"))
    return out


def chain_rule(view: View) -> list[tuple[sp.Basic, sp.Expr]]:
    """``textbook_adjoints`` (dL/dv for every step and parameter entry), the steps last family
    first (backpropagation order), each family in reading order, then the parameters."""
    steps = view.plain_steps
    adj = {lhs.variables[0]: (lhs, rhs) for lhs, rhs in textbook_adjoints(steps)}
    out = steps.output.symbol
    order = [view.plain(n.symbol) for fam in reversed(families(view)) for n in fam]
    return [adj[s] for s in order + steps.params if s in adj and s != out]


def _matrix_eq(lhs, rhs) -> Formula:
    try:
        ml = mathml(lhs, display=False) + " = " + mathml(rhs, display=False)
    except (TypeError, ValueError):
        ml = ""
    return Formula(latex=f"{latex(lhs)} = {latex(rhs)}", mathml=f"<span>{ml}</span>")


def textbook(view: View) -> tuple[str, list[Formula]] | None:
    """The textbook gradient: one delta per op in matrix notation where ops on matrices made
    the steps (the rules of the other kinds in index notation), else the chain rule on the
    steps (small programs), else the index rules alone."""
    steps = view.steps
    fams = families(view)
    rules = index_rules_of(list(dict.fromkeys(n.kind for n in sorted(
        steps.nodes, key=lambda n: view.reading[n.symbol]))))
    title = "Textbook form: one delta per op (matrix notation)"
    matrix = [(f, r) for f, r in ((f, matrix_rules(view, f)) for f in fams) if r is not None]
    if any(r[0].shape != (1, 1) for _, r in matrix):
        covered = {n.symbol for f, _ in matrix for n in f}
        if all(n.symbol in covered or n is steps.output for n in steps.nodes):
            lines = [Formula(note=LAYER_NOTE)]  # a layered model: every step is a layer's
            out, active = view.plain_steps.output, view.plain_steps.active()
            for u in sorted(set(out.operands) & active, key=sp.default_sort_key):
                lines.append(_matrix_eq(sp.Derivative(out.symbol, u, evaluate=False),
                                        local_derivative(out, u)))
            for _, (_, _, back) in reversed(matrix):
                lines += [_matrix_eq(lhs, rhs) for lhs, rhs in back]
            return title, lines + rules  # the index rule of an op's rows (cross-entropy's)
        big = [(f, r) for f, r in matrix if r[0].shape != (1, 1)]
        lines = [_matrix_eq(lhs, rhs) for _, (_, _, back) in reversed(big) for lhs, rhs in back]
        rest = len(steps.nodes) - sum(len(f) for f, _ in big)
        note = (LAYER_NOTE + "; where a value feeds several ops, its gradient is the sum of "
                "their lines" + (f"; the other {rest} steps are elementwise or reductions, "
                                  "differentiated step by step" if rest else ""))
        return title, [Formula(note=note)] + lines + rules
    if len(steps.nodes) > MAX_CHAIN_RULE:
        return ("Textbook form: one rule per op (index notation)", rules) if rules else None
    return ("Textbook form: the chain rule on the formulas above",
            [eq_formula(lhs, rhs) for lhs, rhs in chain_rule(view)] + rules)


class StepNames(Names):
    """``Names`` for a program of steps: block entries, scalar blocks and steps by the reader's
    names (``W^{(1)}_{0,3}``, ``h_{0}``); symgrad's own intermediates v⁽ᵏ⁾."""

    def __init__(self, view: View) -> None:
        super().__init__()
        self.view = view

    def _name(self, node: Node) -> str | None:
        while node.op == "reshape" and tuple(n for n in node.shape if n != 1) == \
                tuple(n for n in node.args[0].shape if n != 1):
            node = node.args[0]  # an exact copy (a fan-out) reads as its source
        if node.is_leaf and node.op != "const" and node.shape == ():
            return node.name
        if node.op == "einsum" and node.name:  # a block entry ``W1[0,3]`` -> ``W1_{0,3}``
            m = re.match(r"^(.*)\[([\d,]+)\]$", node.name)
            return f"{m.group(1)}_{{{m.group(2)}}}" if m else node.name
        step = node.attrs.get("step") if node.op == "map" else None
        return self.view.by_name.get(step.symbol) if step is not None else None

    def tex(self, node: Node, idx: str) -> str:
        name = self._name(node)
        return latex(sp.Symbol(name)) if name is not None else super().tex(node, idx)

    def text(self, node: Node, idx: str) -> str:
        """The plain-text name (MathML's fallback): the k-th step of a label as ``tanh^(6th)``,
        as the LaTeX and MathML write it, never the internal ``tanh#6``."""
        name = self._name(node)
        if name is None:
            return super().text(node, idx)
        base, _, again = name.partition("#")
        return f"{base}^({ordinal(int(again))})" if again else name


def computed(view: View) -> tuple[str, list[Formula]]:
    """The first steps of the gradient program symgrad derives and runs (the stable program,
    not its textbook view)."""
    model = view.program
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
    lines = [Formula(note=note)]
    if model.rewrites:  # the user's plain-sympy patterns, as symgrad's own programs run them
        rules = {r.name: r for r in RULES}
        lines.append(Formula(note="computed as (symgrad's own programs; the formulas above are "
                                  "as written, and are what your torch code is checked against): "
                             + "; ".join(f"{rules[n].textbook} → {rules[n].stable}"
                                         for n in model.rewrites)))
    names = StepNames(view)
    return ("As computed (the gradient program symgrad derives and runs)",
            lines + [node_line(n, names) for n in shown])


def gradient_formulas(view: View) -> list[tuple[str, list[Formula]]]:
    """(title, formulas): the textbook gradient (where there is one), then the first steps of
    the gradient program as symgrad runs it."""
    with layer_names(view.program.layer_names):
        book = textbook(view)
        return ([book] if book else []) + [computed(view)]
