"""The derivation of a tensor program, read straight from its nodes (no scalar lowering): the
forward pass one line per tensor operation (``tensor_formulas``' index notation), then the
backward pass one vector-Jacobian rule per node and operand, written from the same rules the
derived gradient runs (``symgrad.tensor.derive.VJP``): a contraction's adjoint is the
contraction of δ with the other operands (δ_W = δ_y xᵀ for a dense layer), a map's local
derivative is ``sympy.diff`` of its body, a reduction / layout op sends δ back.
With values (``symgrad.tensor.steps.values_at``), each line shows its value at the point.

>>> import symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> from symgrad.tensor.steps import adjoint_steps
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> m = TensorModel("lin", st.sum_(st.einsum("ij,j->i", W, x)))
>>> names = Names()
>>> fwd = forward_lines(m, names, None)
>>> back = backward_lines(m, adjoint_steps(m.loss, [W]), names, None)
>>> back[-1].tex
'\\\\delta_{W_{i,j}} = \\\\delta_{v^{(1)}_{i}} x_{j}'
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from ..tensor.model import TensorModel
from ..tensor.program import X, Node, topological
from ..tensor.steps import AdjointSteps
from .explanation import Line, Section
from .formulas import Formula, eq_formula, mathml_of_tex
from .notation import latex, tex_base
from .tensor_formulas import (LETTERS, Names, Ref, free_symbols_of, hidden, index_letters,
                              layer_groups, node_line, signature, summed)

MAX_LINES = 80  # lines of each pass shown before the rest is counted
SHOWN_ENTRIES = 4  # entries of a bigger array shown beside its shape
WHOLE = 6  # arrays of up to this many entries are shown whole
DIGITS = 6  # significant digits of a step's value
LONG = 150  # a local derivative longer than this (LaTeX characters) is shown as ∂y/∂x


def _out(node: Node) -> str:
    """The index letters of a node's axes, as its forward line writes them."""
    return node.attrs["spec"].split("->")[1] if node.op == "einsum" else LETTERS[:node.ndim]


def _delta(names: Names, node: Node, idx: str) -> Ref:
    return Ref(rf"\delta_{{{names.tex(node, idx)}}}", f"δ_{names.text(node, idx)}")


def value_text(v, digits: int = DIGITS) -> str:
    """A step's value as printed: a number, a small array whole (row-major), or its first
    entries and its shape; ASCII (it sits in LaTeX math)."""
    if v is None:
        return ""
    flat = list(np.asarray(v, dtype=object).reshape(-1))
    shape = np.shape(v)
    nums = [mpmath.nstr(mpmath.mpf(x), digits) for x in flat[:WHOLE if len(flat) <= WHOLE else
                                                 SHOWN_ENTRIES]]
    if not shape:
        return nums[0]
    more = ", ..." if len(flat) > WHOLE else ""
    dims = " x ".join(map(str, shape))
    return f"[{', '.join(nums)}{more}] ({dims})"


def _folded(model: TensorModel, steps: list[Node]) -> tuple[set[int], dict[int, str]]:
    """GPT layers 1.. that repeat layer 0's operations: their node ids, and a note per
    folded layer (keyed by its first node's id)."""
    n_layers, by_stage = layer_groups(model, steps)
    folded, notes = set(), {}
    first = [signature(n) for n in by_stage.get(0, [])]
    for stage, nodes in by_stage.items():
        if 0 < stage < n_layers and [signature(n) for n in nodes] == first:
            folded |= {n.id for n in nodes}
            notes[nodes[0].id] = (f"⋮ layer {stage}: the same {len(nodes)} operations as "
                                  f"layer 0, on the h{stage}_ parameters")
    return folded, notes


def matrix_form(target: str, factors: list[tuple[str, str]]) -> str | None:
    """A contraction of two factors (name, index letters) into the ``target`` letters as a
    matrix product in plain text (``δ_v⁽¹⁾ xᵀ``, ``δ_yᵀ X``), or None when it is none (rank
    over 2, more than one contracted letter, an elementwise product).

    >>> matrix_form("oi", [("δ_y", "ao"), ("X", "ai")])
    'δ_yᵀ X'
    """
    if len(factors) != 2 or not 1 <= len(target) <= 2 or any(len(f) > 2 for _, f in factors):
        return None
    (na, la), (nb, lb) = factors if target[0] in factors[0][1] else factors[::-1]
    p, q = target[0], target[1:]
    c = "".join(sorted((set(la) & set(lb)) - set(target)))
    if p not in la or len(c) > 1 or set(la + lb) != set(target + c) or (q and q in la):
        return None
    a = na if la == p + c else na + "ᵀ" if c and la == c + p else None  # rows p
    if q and c:
        b = nb if lb == c + q else nb + "ᵀ" if lb == q + c else None
    elif q:  # an outer product of two vectors
        b = nb + "ᵀ" if lb == q and len(la) == 1 else None
    else:  # a matrix times a vector
        b = nb if c and lb == c else None
    return None if a is None or b is None else f"{a} {b}"


def _as_line(f: Formula, value=None, comment: str = "") -> Line:
    return Line(None, None, value_text(value) if value is not None else None, comment,
                tex=f.latex, html=f.mathml)


def forward_lines(model: TensorModel, names: Names, values: dict | None) -> list[Line]:
    """One line per tensor operation (index notation), its value beside it with ``values``;
    a GPT's repeated layers folded into one note line."""
    steps = [n for n in topological([model.loss]) if not n.is_leaf and not hidden(n)]
    folded, notes = _folded(model, steps)
    lines: list[Line] = []
    shown = 0
    for n in steps:
        if n.id in notes:
            lines.append(Line(None, None, comment=notes[n.id]))
        if n.id in folded or shown >= MAX_LINES:
            names.tex(n, "")  # numbered all the same, so later lines name them consistently
            continue
        lines.append(_as_line(node_line(n, names), values.get(n.id) if values else None,
                              _matrix_comment(n, names, None)))
        shown += 1
    rest = len(steps) - len(folded) - shown
    if rest > 0:
        lines.append(Line(None, None, comment=f"… {rest} more operations"))
    model._cache["formula_names"] = names  # the report's gradient formulas name them alike
    return lines


def gradient_line(block: str, exact, torch) -> Line:
    """dL/d<block> = δ_<block> = its exact value, torch autograd's beside it (10 digits)."""
    tex = rf"\frac{{\partial L}}{{\partial {tex_base(block)}}} = \delta_{{{tex_base(block)}}}"
    return Line(None, None, value_text(exact, 10), "torch autograd: " + value_text(torch, 10),
                tex=tex, html=mathml_of_tex(tex))


def sections(title: str, lines: list[Line], note: str = "") -> list[Section]:
    """Lines as sections: a note-only line (a folded layer, a count) starts a new section."""
    out = [Section(title, note=note)]
    for ln in lines:
        if not ln.tex and ln.lhs is None:
            out.append(Section(ln.comment.rstrip(":")))
        else:
            out[-1].lines.append(ln)
    return out


def _matrix_comment(node: Node, names: Names, i: int | None) -> str:
    """'matrix form: …' for a two-operand einsum (forward, or the VJP for operand ``i``)."""
    if node.op != "einsum" or len(node.args) != 2:
        return ""
    ins, res = node.attrs["spec"].split("->")
    subs = ins.split(",")
    factors = [(names.text(o, ""), index_letters(o.shape, s)) for o, s in zip(node.args, subs)]
    if i is None:
        form = matrix_form(index_letters(node.shape, res), factors)
        return f"matrix form: {form}" if form else ""
    dy = ("δ_" + names.text(node, ""), index_letters(node.shape, res))
    form = matrix_form(factors[i][1], [dy, factors[1 - i]])
    return f"matrix form: δ_{factors[i][0]} = {form}" if form else ""


def vjp_rule(node: Node, i: int, names: Names) -> Formula:
    """The vector-Jacobian rule of ``node`` for its operand ``i`` in index notation:
    δ_operand = (what ``symgrad.tensor.derive.VJP`` computes), named as the forward lines."""
    a, out = node.args[i], _out(node)
    dy = _delta(names, node, index_letters(node.shape, out))
    if node.op == "einsum":
        ins, res = node.attrs["spec"].split("->")
        subs = ins.split(",")
        terms = [dy] + [names.raw(o, index_letters(o.shape, s)) for j, (o, s) in
                        enumerate(zip(node.args, subs)) if j != i]
        body = sp.Mul(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        sizes = {c: n for o, s in zip(node.args, subs) for c, n in zip(s, o.shape)}
        mine = index_letters(a.shape, subs[i])
        return eq_formula(_delta(names, a, mine), summed(body, (
            (c, sizes[c]) for c in dict.fromkeys(res + "".join(s for j, s in enumerate(subs)
                                                                 if j != i))
            if c not in mine and sizes[c] != 1)))
    if node.op == "map":
        mine = index_letters(a.shape, out)
        local = sp.diff(node.attrs["expr"], X[i]).xreplace(
            {X[j]: names.raw(o, index_letters(o.shape, out)) for j, o in enumerate(node.args)})
        if len(latex(local)) > LONG:  # e.g. GELU's derivative: named, not written out
            local = sp.Derivative(names.raw(node, index_letters(node.shape, out)),
                                  names.raw(a, index_letters(a.shape, out)), evaluate=False)
        # a broadcast axis: the contributions add up
        return eq_formula(_delta(names, a, mine), summed(dy * local, (
            (c, n) for c, n, m in zip(out, node.shape, a.shape) if m == 1 and n != 1)))
    if node.op in ("sum", "max"):
        full = free_symbols_of(out, node, a)
        lhs = _delta(names, a, index_letters(a.shape, full))
        if node.op == "sum":
            return eq_formula(lhs, dy)
        x, y = names.tex(a, index_letters(a.shape, full)), names.tex(node, index_letters(node.shape, out))
        top = Ref(rf"[{x} = {y}]", f"[{names.text(a, full)} = {names.text(node, out)}]")
        return eq_formula(lhs, sp.Mul(dy, top, evaluate=False))
    if node.op == "take":  # the adjoint of a lookup adds rows into the table
        ids, rest = names.raw(node.args[1], out[:node.args[1].ndim]), out[node.args[1].ndim:]
        hit = Ref(rf"[{ids.tex} = v]", f"[{ids.text} = v]")
        return eq_formula(_delta(names, a, index_letters(a.shape, "v" + rest)), summed(
            sp.Mul(hit, dy, evaluate=False), zip(out[:node.args[1].ndim], node.shape)))
    what = {"reshape": f"reshaped back to {a.shape}", "transpose": "axes permuted back",
            "broadcast": "summed over the broadcast axes",
            "scatter_add": "rows taken back by id"}.get(node.op, node.op)
    tex = rf"{_delta(names, a, '').tex} = {dy.tex}\ \text{{{what}}}"
    return Formula(latex=tex, mathml=mathml_of_tex(tex))


def backward_lines(model: TensorModel, adj: AdjointSteps, names: Names,
                   values: dict | None) -> list[Line]:
    """δ of the loss, then one rule per node (last first) and differentiable operand; with
    ``values`` each line shows the contribution's value at the point."""
    steps = [n for n in topological([model.loss]) if not n.is_leaf and not hidden(n)]
    folded, notes = _folded(model, steps)
    seed = _delta(names, model.loss, "")
    lines = [Line(None, None, tex=f"{seed.tex} = 1",
                  html=mathml_of_tex(f"{seed.tex} = 1"))]
    shown = rest = 0
    for n in reversed(topological([model.loss])):
        for i, a in enumerate(n.args):
            part = adj.parts.get((n.id, i))
            if part is None:
                continue
            if hidden(n) and n.op == "reshape":  # a squeeze: δ passes under the same name
                continue
            if n.id in folded or shown >= MAX_LINES:
                rest += n.id not in folded
                continue
            uses = adj.uses.get(a.id, 1)
            comments = [_matrix_comment(n, names, i),
                        f"one of {uses} terms of this δ (its uses add up)" if uses > 1 else "",
                        f"δ of a parameter is its gradient dL/d{a.name}" if a.op == "param"
                        else ""]
            comment = "; ".join(x for x in comments if x)
            lines.append(_as_line(vjp_rule(n, i, names),
                                  values.get(part.id) if values else None, comment))
            shown += 1
        if n.id in notes:
            lines.append(Line(None, None, comment=notes[n.id].replace("operations", "rules")))
    if rest:
        lines.append(Line(None, None, comment=f"… {rest} more rules"))
    return lines
