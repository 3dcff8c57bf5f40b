"""The formulas a report shows: the model one line per op, and its gradient in two forms.

The model: steps grouped into families (an op call on a matrix, or steps of the same kind);
a matrix op is one line in matrix notation (``q = X W_q^T + b_q``), other families show their
first and last step with ``\\vdots`` between. The gradient: the textbook form (the chain rule
on the formulas a reader knows, e.g. dL/dz = a - y for a sigmoid neuron, or one delta per op in
matrix notation) beside the first steps of the stable program symgrad actually runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp

from ..derive import reverse_accumulation
from ..graph import Graph, Node
from ..model import Model
from ..optable import OPS
from ..stable import RULES
from .derivation import group, has_matrix, layer_rules, layer_sections, textbook_adjoints
from .notation import fold, latex, mathml, names_from
from .texmath import tex_to_mathml

MAX_FAMILIES = 40  # families of steps shown; the rest are counted
MAX_ADJOINTS = 8  # steps of the computed (stable) gradient program shown
MAX_TEXTBOOK_NODES = 30  # scalar models up to this size get the textbook chain rule


@dataclass(frozen=True)
class Formula:
    """One displayed line: LaTeX and MathML of the same equation, and/or a plain note."""

    latex: str = ""
    mathml: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"latex": self.latex, "note": self.note}


def display_names(graph: Graph) -> dict:
    """Intermediate -> its display name; a repeated label gets ``#k`` (shown as ^{[k]})."""
    seen: dict[str, int] = {}
    names = {}
    for n in graph.nodes:
        base = getattr(n.symbol, "label", None) or n.kind
        seen[base] = seen.get(base, 0) + 1
        names[n.symbol] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return names


def eq_formula(lhs, rhs) -> Formula:
    rhs = fold(rhs)
    try:
        ml = mathml(sp.Eq(lhs, rhs, evaluate=False), display=True)
    except (TypeError, ValueError):
        ml = mathml(rhs, display=True)
    return Formula(latex=f"{latex(lhs)} = {latex(rhs)}", mathml=ml)


def _shown(node: Node):
    shown = getattr(node.symbol, "shown", None)
    return shown if shown is not None else node.expr


def _family(node: Node) -> str:
    group = getattr(node.symbol, "group", None)
    if group is not None:
        return f"group:{group.label}"
    label = getattr(node.symbol, "label", None)
    return re.sub(r"_\{[\d,]+\}$", "", label) if label else f"kind:{node.kind}"


def families(graph: Graph) -> list[list[Node]]:
    """Steps grouped by the op call (or label / kind) that made them, in order of appearance."""
    out: dict[str, list[Node]] = {}
    for n in graph.nodes:
        out.setdefault(_family(n), []).append(n)
    return list(out.values())


def _shapes(model: Model, graph: Graph) -> dict[str, tuple[int, int]]:
    shapes = {b.name: (b.shape + (1,) * (2 - len(b.shape)) if b.shape else (1, 1))
              for b in model.blocks}
    for n in graph.nodes:
        g = getattr(n.symbol, "group", None)
        if g is not None:
            shapes[g.label] = g.shape
            continue
        m = re.match(r"^(?P<base>.+)_\{(?P<idx>\d+(?:,\d+)?)\}$",
                     getattr(n.symbol, "label", None) or "")
        if m:  # a labelled matrix step without a group (ctx_{t,c}): its shape from indices
            idx = [int(i) + 1 for i in m.group("idx").split(",")] + [1]
            old = shapes.get(m.group("base"), (0, 0))
            if m.group("base") not in {b.name for b in model.blocks}:
                shapes[m.group("base")] = (max(old[0], idx[0]), max(old[1], idx[1]))
    return shapes


def _matrix_rules(model: Model, graph: Graph, nodes: list[Node]):
    """(forward formula, backward rules) of a matrix op family, or None."""
    g = getattr(nodes[0].symbol, "group", None)
    if g is None:
        return None
    shapes = _shapes(model, graph)
    out = sp.MatrixSymbol(g.label, *g.shape)
    ins = [sp.MatrixSymbol(name, *shapes.get(name, (1, 1))) for name in g.operands]
    try:
        fwd, back = layer_rules(g.op, out, ins, {b.name for b in model.input_blocks},
                                 {b.name for b in model.param_blocks})
    except (sp.ShapeError, ValueError, TypeError):
        return None
    return (out, fwd, back) if fwd is not None else None


def model_formulas(model: Model) -> list[Formula]:
    """The model's program, one line per op (matrix ops in matrix notation)."""
    graph = model.display_graph
    out: list[Formula] = []
    fams = families(graph)
    with names_from(display_names(graph)):
        for nodes in fams[:MAX_FAMILIES]:
            rules = _matrix_rules(model, graph, nodes)
            if rules is not None:
                sym, fwd, _ = rules
                f = eq_formula(sym, fwd)
                shape = r" \quad (%d \times %d)" % sym.shape
                out.append(Formula(f.latex + shape, f.mathml))
                continue
            first = eq_formula(nodes[0].symbol, _shown(nodes[0]))
            if len(nodes) == 1:
                out.append(first)
                continue
            last = eq_formula(nodes[-1].symbol, _shown(nodes[-1]))
            tex = (r"\begin{aligned} " + first.latex.replace(" = ", " &= ", 1) + r" \\ &\;\vdots"
                   r" \\ " + last.latex.replace(" = ", " &= ", 1) + r" \end{aligned}")
            out.append(Formula(tex, first.mathml + "<br>⋮<br>" + last.mathml,
                               note=f"{len(nodes)} steps of this kind, first and last:"))
    if len(fams) > MAX_FAMILIES:
        rest = sum(len(f) for f in fams[MAX_FAMILIES:])
        out.append(Formula(note=f"… {len(fams) - MAX_FAMILIES} more kinds of steps "
                                f"({rest} steps)"))
    return out


def gradient_formulas(model: Model, *, computed: bool = True
                      ) -> list[tuple[str, list[Formula]]]:
    """(title, formulas) sections: the textbook gradient, then (``computed``) the first steps
    of the stable program as run (derived if not cached: slow for a large model)."""
    sections = []
    textbook = _textbook(model)
    if textbook:
        sections.append(textbook)
    if computed:
        sections.append(_computed(model))
    return sections


def _textbook(model: Model):
    graph = model.display_graph
    fams = families(graph)
    lines: list[Formula] = []
    title = "Textbook form: one delta per op (matrix notation)"
    with names_from(display_names(graph)):
        if has_matrix(graph) and all(group(n) is not None or n is graph.output
                                      for n in graph.nodes):
            try:  # a layered model: every step belongs to a matrix op
                back = layer_sections(model, graph, None)[1]
                return title, [Formula(note=back.note)] + [
                    _matrix_eq(ln.lhs, ln.rhs) for ln in back.lines]
            except (sp.ShapeError, ValueError, TypeError):
                pass
        matrix = [r for r in (_matrix_rules(model, graph, f) for f in fams) if r is not None]
        matrix = [r for r in matrix if r[0].shape != (1, 1)]
        if matrix:
            for _, _, back in reversed(matrix):
                for lhs, rhs in back:
                    lines.append(_matrix_eq(lhs, rhs))
            covered = sum(r[0].shape[0] * r[0].shape[1] for r in matrix)
            note = ("δ_v = ∂L/∂v; H is the Heaviside step, ∘ the elementwise product; where "
                    "a value feeds several ops, its gradient is the sum of their lines"
                    + (f"; the other {len(graph.nodes) - covered} steps are elementwise or "
                       "reductions, differentiated step by step"
                       if covered < len(graph.nodes) else ""))
            return title, [Formula(note=note)] + lines + index_rules(graph)
        rules = index_rules(graph)
        if len(graph.nodes) > MAX_TEXTBOOK_NODES:
            return ("Textbook form: one rule per op (index notation)", rules) if rules else None
        for lhs, rhs in textbook_adjoints(model):
            lines.append(eq_formula(lhs, rhs))
    return "Textbook form: the chain rule on the formulas above", lines + rules


# The backward rule of each op that has no matrix Group, in index notation (t a row, j a column,
# C the row width); the key is the kind of the op's output step (a row per op).
INDEX_RULES = {
    "layer_norm": ("LayerNorm over each row, with r_t = 1/sqrt(var_t + eps), "
                   "x̂ = (x - μ_t) r_t and δ̂ = δ_y ∘ g",
                   r"\delta_{x_{t,j}} = \frac{r_t}{C}\Big(C\,\hat\delta_{t,j} - \sum_k "
                   r"\hat\delta_{t,k} - \hat x_{t,j} \sum_k \hat\delta_{t,k} \hat x_{t,k}\Big),"
                   r"\quad \frac{\partial L}{\partial g_j} = \sum_t \delta_{y_{t,j}} "
                   r"\hat x_{t,j}"),
    "softmax": ("softmax over the last axis (each row), p = softmax(x)",
                r"\delta_{x_{t,j}} = p_{t,j}\Big(\delta_{p_{t,j}} - \sum_k \delta_{p_{t,k}} "
                r"p_{t,k}\Big)"),
    "attention": ("attention weights: softmax of each row of scores over the positions s <= t",
                  r"\delta_{S_{t,s}} = A_{t,s}\Big(\delta_{A_{t,s}} - \sum_{s' \le t} "
                  r"\delta_{A_{t,s'}} A_{t,s'}\Big)"),
    "score": ("scores S = Q K^T / sqrt(d) per head (causal: s <= t)",
              r"\delta_{Q} = \frac{\delta_S K}{\sqrt{d}},\quad \delta_{K} = "
              r"\frac{\delta_S^{T} Q}{\sqrt{d}}"),
    "context": ("context = A V per head", r"\delta_{A} = \delta_{\mathrm{ctx}} V^{T},\quad "
                r"\delta_{V} = A^{T} \delta_{\mathrm{ctx}}"),
    "gelu": OPS["gelu"].index_rule(),  # the op table's name: GELU elementwise
    "dropout": ("dropout with keep-mask m and scale 1/(1-p)",
                r"\delta_{x} = \frac{\delta_{y} \circ m}{1 - p}"),
    "residual": ("residual connection y = x + f(x)", r"\delta_{x} \mathrel{+}= \delta_{y}"),
    "embedding": ("embedding: row id_t of the table E",
                  r"\frac{\partial L}{\partial E_{v,j}} = \sum_t [\mathrm{id}_t = v]\, "
                  r"\delta_{y_{t,j}}"),
    "nll": ("cross-entropy of each row against its target, mean over the T rows",
            r"\delta_{z_{t,j}} = \frac{1}{T}\big(\mathrm{softmax}(z_t)_j - "
            r"[j = \mathrm{target}_t]\big)"),
    "log_softmax": ("log-softmax over each row",
                    r"\delta_{x_{t,j}} = \delta_{y_{t,j}} - \mathrm{softmax}(x_t)_j \sum_k "
                    r"\delta_{y_{t,k}}"),
}


def index_rules(graph: Graph) -> list[Formula]:
    """The INDEX_RULES lines of the ops in ``graph``, last op first (backpropagation order)."""
    return index_rules_of([n.kind for n in graph.nodes])


def index_rules_of(kinds: list[str]) -> list[Formula]:
    """The INDEX_RULES lines of the op ``kinds`` (in program order; those without a rule
    skipped), last op first (backpropagation order).

    >>> [f.note for f in index_rules_of(["score", "attention", "relu", "score"])]
    ['attention weights: softmax of each row of scores over the positions s <= t:', \
'scores S = Q K^T / sqrt(d) per head (causal: s <= t):']
    """
    known = [k for k in dict.fromkeys(kinds) if k in INDEX_RULES]
    return [Formula(latex=INDEX_RULES[k][1], mathml=mathml_of_tex(INDEX_RULES[k][1]),
                    note=INDEX_RULES[k][0] + ":") for k in reversed(known)]


def mathml_of_tex(tex: str) -> str:
    """MathML for a rule written in LaTeX (the same formula: fractions, roots, sums)."""
    return tex_to_mathml(tex)


def _matrix_eq(lhs, rhs) -> Formula:
    try:
        ml = mathml(lhs, display=False) + " = " + mathml(rhs, display=False)
    except (TypeError, ValueError):
        ml = ""
    return Formula(latex=f"{latex(lhs)} = {latex(rhs)}", mathml=f"<span>{ml}</span>")


def _computed(model: Model):
    program = model._cache.get("program") or reverse_accumulation(model)
    model._cache["program"] = program
    back = program.assignments[program.n_forward:]
    has_display = any(getattr(n.symbol, "display", None) is not None for n in model.graph.nodes)
    note = (f"{len(back)} adjoint steps over {program.n_forward} forward steps "
            "(x̄ = ∂L/∂x)" + ("; symgrad runs the stable form of the loss, the same function "
                              "without cancellation" if has_display else "")
            + f"; the first {min(len(back), MAX_ADJOINTS)}:")
    lines = [Formula(note=note)]
    if model.graph.rewrites:  # the user's plain-sympy patterns, as symgrad's programs run them
        rules = {r.name: r for r in RULES}
        lines.append(Formula(note="computed as (symgrad's own programs; the formulas above are "
                                  "as written, and are what your torch code is checked against): "
                             + "; ".join(f"{rules[n].textbook} → {rules[n].stable}"
                                         for n in model.graph.rewrites)))
    with names_from(_program_names(model.graph, back[:MAX_ADJOINTS])):
        lines += [eq_formula(sym, expr) for sym, expr in back[:MAX_ADJOINTS]]
    return "As computed (the program symgrad derives and runs)", lines


def _program_names(graph: Graph, steps) -> dict:
    """The reader's names in the computed program: each step as the model section names it
    (``gelu_{inner}^{[6]}``, not the program's ``gelu_inner_6``), its adjoint ``d_<name>`` as
    the bar over that name."""
    names = display_names(graph)
    adjoint_of = {f"d_{n.name}": n.symbol for n in graph.nodes}
    out = dict(names)
    for sym, expr in steps:
        for s in {sym} | expr.free_symbols:
            step = adjoint_of.get(getattr(s, "name", ""))
            if step is not None:
                out[s] = "d_" + names[step]
    return out
