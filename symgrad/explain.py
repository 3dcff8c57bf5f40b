"""Step-by-step derivations a teacher would write, derived from the model's program.

1. the forward pass as named steps; 2. each local derivative (sympy); 3. the chain rule
composed and the simplified gradient per parameter; 4. with ``at``, every step evaluated exactly
at that point, ending in the numbers torch autograd gives at the same point, side by side.
Matrix models (built with ``sg.ops`` on ``sg.matrix`` blocks) are explained layer by layer in
matrix notation with one delta per layer, from a per-op table of rules. The derivations are
built in ``present/derivation.py`` and rendered by ``present/explanation.py``; this module
chooses the view for a model and evaluates it at a point.

>>> from symgrad import zoo
>>> e = explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1})
>>> round(float(e.gradient["w"]), 4), round(float(e.gradient["b"]), 4)
(-0.0898, -0.0817)
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from .backends import torch as tb
from .errors import SymgradError
from .graph import Graph
from .model import Model
from .points import by_name
from .present import tensor_derivation, tensor_formulas
from .present.derivation import group, has_matrix, layer_sections, node_sections
from .present.explanation import Explanation, Line, Section
from .present.formulas import display_names, gradient_formulas, model_formulas
from .tensor.model import TensorModel
from .tensor.program import topological
from .tensor.steps import adjoint_steps, leaf_values, torch_gradient, values_at
from .tensor.tables import oracle_ops
from .verify import VerifyConfig, derive, exact_at, exact_steps

__all__ = ["Explanation", "Line", "Section", "explain", "parse_point"]

MAX_STEPS = 400  # larger programs are verified and reported, not explained step by step
EXPAND_STEPS = 60  # without a point, larger programs are explained one line per op
MAX_AT_ENTRIES = 2_000_000  # a tensor program's entries evaluated for --at (~25 µs each)


def parse_point(text: str) -> dict[str, float]:
    """``"x=1.1,w=2.2,b=0,y=1"`` -> {"x": 1.1, ...} (the CLI's ``--at``)."""
    point = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq:
            raise SymgradError(f"--at: {part!r} is not name=value (e.g. --at x=1.1,w=2.2)")
        try:
            point[name.strip()] = float(value)
        except ValueError:
            raise SymgradError(f"--at: value of {name.strip()!r} is not a number: "
                               f"{value!r}") from None
    return point


def explain(model: Model, *, at: dict | None = None) -> Explanation:
    """Derive ``model``'s gradient step by step.

    Arguments:
        model: the model to explain.
        at: optional point, block name (or the block's sympy symbol) -> value (scalars;
            nested lists for blocks), read as ``verify(at=)`` and ``exact_at`` read it.
    Returns:
        An ``Explanation`` (``.latex()``, ``.markdown()``, ``.html()``).
    """
    if at is not None:  # block names or the blocks' symbols, as verify(at=) and exact_at
        at = by_name(model, at, "explain: at")
    if isinstance(model, TensorModel):
        return _tensor(model, at)
    graph = model.display_graph
    if len(graph.nodes) > (MAX_STEPS if at is not None else EXPAND_STEPS):
        if at is not None:
            raise SymgradError(f"explain: model {model.name!r} has {len(graph.nodes)} steps; "
                               f"--at evaluates derivations of models of up to {MAX_STEPS} "
                               "steps (verify and report work at any size)")
        return _summarized(model, graph)
    if at is not None:
        at = by_name(model, at, "explain: at", complete=True)
    values = _values_at(model, at) if at is not None else None
    grouped = all(group(n) is not None or n is graph.output for n in graph.nodes)
    sections = None
    if grouped and has_matrix(graph):
        try:
            sections = layer_sections(model, graph, values)
        except (sp.ShapeError, ValueError, TypeError):  # e.g. a reshape: no single matrix form
            sections = None
    if sections is None:
        sections = node_sections(model, graph, values)
    gradient, torch_grad = {}, {}
    if at is not None:
        exact = values["gradient"]
        torch_vals = _torch_at(model, at)
        final = Section("Gradient: exact vs torch autograd",
                        note="exact value (mpmath, 50 digits) and torch autograd (float64) "
                             "at the same point")
        for entry, sym in zip(model.entries, _entry_symbols(model)):
            gradient[entry] = mpmath.nstr(exact[f"d/d{entry}"], 17)
            torch_grad[entry] = repr(torch_vals[entry])
            final.lines.append(Line(sp.Derivative(sp.Symbol("L"), sym, evaluate=False),
                                    sp.Float(gradient[entry], 17),
                                    comment=f"exact; torch autograd: {torch_grad[entry]}"))
        sections.append(final)
    return Explanation(model.name, sections, gradient, torch_grad, _names(graph))


def _names(graph: Graph) -> dict:
    return display_names(graph)


def _summarized(model: Model, graph: Graph) -> Explanation:
    """A large model: one line per op family and the matrix-level backward rules, not every
    scalar step (the same view as the report's)."""
    sections = [_formula_section(f"Forward pass, one line per op ({len(graph.nodes)} steps)",
                                 model_formulas(model))]
    sections += [_formula_section(title, fs) for title, fs in
                 gradient_formulas(model, computed="program" in model._cache)]
    return Explanation(model.name, sections, {}, {}, _names(graph))


def _tensor(model: TensorModel, at: dict | None) -> Explanation:
    """A tensor model, explained on its program directly: the forward pass one line per tensor
    operation, the backward pass one vector-Jacobian rule per node, the textbook rule per op
    and the derived gradient program; with a point ``at``, every step's exact value (the
    oracle's double-double table, ~32 digits) and the gradient beside torch autograd's."""
    params = [b.node for b in model.param_blocks]
    adj = adjoint_steps(model.loss, params)
    values = leaves = None
    if at is not None:
        forward = [n for n in topological([model.loss]) if not n.is_leaf]
        entries = sum(n.size for n in forward) + sum(n.size for n in adj.parts.values())
        if entries > MAX_AT_ENTRIES:
            raise SymgradError(f"explain: model {model.name!r} has {entries} entries in its "
                               f"steps; --at evaluates up to {MAX_AT_ENTRIES} (explain without "
                               "--at, and verify --at, work at any size)")
        at = by_name(model, at, "explain: at", complete=True)
        leaves = leaf_values(model.blocks, at, "explain: at")
        values = values_at(forward + list(adj.parts.values()) + [adj.total[p.id] for p in params
                                                                  if p.id in adj.total],
                           oracle_ops(), leaves)
    names = tensor_derivation.Names()
    n_ops = sum(1 for n in topological([model.loss]) if not n.is_leaf)
    sections = tensor_derivation.sections(
        "Forward pass, one line per tensor operation",
        tensor_derivation.forward_lines(model, names, values),
        note=f"{n_ops} tensor operations; v⁽ᵏ⁾ is the k-th intermediate array, indices t, j, "
             "… run over its axes")
    sections += tensor_derivation.sections(
        "Backpropagation: one vector-Jacobian rule per node",
        tensor_derivation.backward_lines(model, adj, names, values),
        note="δ_v = dL/dv, of v's shape; each rule is the one the derived gradient program "
             "runs (a map's local derivative by sympy.diff, a contraction's adjoint by "
             "rearranging its indices)")
    for title, fs in tensor_formulas.gradient_formulas(model):
        sections += _tensor_sections(title, fs)
    gradient, torch_grad = {}, {}
    if at is not None:
        sections.append(_tensor_gradient(model, adj, values, leaves, gradient, torch_grad))
    return Explanation(model.name, sections, gradient, torch_grad, {})


def _tensor_gradient(model: TensorModel, adj, values: dict, leaves: dict, gradient: dict,
                     torch_grad: dict) -> Section:
    """The gradient per parameter block (exact, the oracle's) beside torch autograd's; fills
    ``gradient`` and ``torch_grad`` entry by entry."""
    torch_vals = torch_gradient(model, leaves)
    final = Section("Gradient: exact vs torch autograd",
                    note="exact value (the oracle's double-double, ~32 digits) and torch "
                         "autograd of the same program (float64) at the same point")
    for b in model.param_blocks:
        node = adj.total.get(b.node.id)
        exact = (values[node.id] if node is not None else
                 np.full(b.shape, mpmath.mpf(0), dtype=object))
        got = np.asarray(torch_vals[b.name]).reshape(b.shape)
        for k, entry in enumerate(b.entry_names()):
            gradient[entry] = mpmath.nstr(exact.reshape(-1)[k], 17)
            torch_grad[entry] = repr(float(got.reshape(-1)[k]))
        final.lines.append(tensor_derivation.gradient_line(b.name, exact, got))
    return final


def _tensor_sections(title: str, formulas) -> list[Section]:
    """Formulas as sections: the first note is the section's, a later note-only line (a
    layer heading, a fold) starts a new section."""
    sections = [Section(title)]
    for f in formulas:
        if f.note and not f.latex:
            if sections[-1].lines or sections[-1].note:
                sections.append(Section(f.note.rstrip(":")))
            else:
                sections[-1].note = f.note
            continue
        sections[-1].lines.append(Line(None, None, tex=f.latex, html=f.mathml,
                                       comment=f.note))
    return sections


def _formula_section(title: str, formulas) -> Section:
    notes = [f.note for f in formulas if f.note and not f.latex]
    lines = [Line(None, None, tex=f.latex, html=f.mathml, comment=f.note if f.latex else "")
             for f in formulas if f.latex]
    return Section(title, lines, note=" ".join(notes))


# ------------------------------------------------------------------ values at a point
def _entry_symbols(model: Model) -> list[sp.Symbol]:
    return [sp.Symbol(e.replace("[", "_{").replace("]", "}")) if "[" in e else sp.Symbol(e)
            for e in model.entries]


def _values_at(model: Model, at: dict) -> dict:
    return {"env": exact_steps(model, at), "gradient": exact_at(model, at)}


def _torch_at(model: Model, at: dict) -> dict[str, float]:
    """torch autograd's gradient at the point: the model's native reference if it has one,
    else the model's own program run in torch (float64)."""
    values = {b.name: np.asarray(at[b.name], dtype=float).reshape((1, *b.shape))
              for b in model.blocks}
    if model.reference is not None:
        out, _ = tb.run_torch_fn(model.reference, model.blocks, values, device="cpu",
                                 dtype="float64")
    else:
        X = np.concatenate([values[b.name].reshape(1, -1) for b in model.blocks], axis=1).T
        compiled = derive(model, VerifyConfig())
        out = tb.run_program(compiled.torch, X, len(model.params), device="cpu",
                             dtype="float64")
    return dict(zip(model.entries, (float(v) for v in out[0, 1:])))
