"""Step-by-step derivations a teacher would write, read from the model's tensor program.

Every model is explained on its program (``symgrad.tensor.model.program_of``: a plain model's
``to_program``, in its textbook forms where it has them). A plain model of up to
``EXPAND_STEPS`` steps (``MAX_STEPS`` with a point) is explained from the steps its program
carries (``present/step_derivation``): 1. the forward pass as named steps; 2. each local
derivative (sympy); 3. the chain rule composed and the simplified gradient per parameter; or,
for a model built with ``sg.ops`` on ``sg.matrix`` blocks, layer by layer in matrix notation
with one delta per layer, from a per-op table of rules. Any other program is explained one line
per tensor operation and one vector-Jacobian rule per node (``present/tensor_derivation``).
With ``at``, every step is evaluated at that point (the oracle's double-double table,
``tensor.steps.values_at``), ending in the exact gradient (arb balls, certified to 50 digits:
``tensor.exact.exact_point``) beside torch autograd's of the same program, side by side.
Rendered by ``present/explanation.py``.

>>> from symgrad import zoo
>>> e = explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1})
>>> round(float(e.gradient["w"]), 4), round(float(e.gradient["b"]), 4)
(-0.0898, -0.0817)
"""

from __future__ import annotations

from decimal import Decimal

import mpmath
import numpy as np
import sympy as sp

from .compare import Tolerance
from .errors import SymgradError, checked_keywords
from .model import Model
from .points import by_name, given_samples
from .present import layer_derivation, step_derivation, tensor_derivation, tensor_formulas
from .present.explanation import Explanation, Line, Section
from .tensor.exact import exact_point
from .tensor.kinks import has_sites, reached, sided
from .tensor.links import names as operand_names
from .tensor.model import TensorModel, program_of
from .tensor.program import topological
from .tensor.steps import adjoint_steps, leaf_values, torch_gradient, values_at
from .tensor.tables import oracle_ops

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
        if name.strip() in point:
            raise SymgradError(f"--at: {name.strip()!r} is given twice (={point[name.strip()]:g} "
                               f"and ={value.strip()}); give each name once")
        try:
            point[name.strip()] = float(value)
        except ValueError:
            raise SymgradError(f"--at: value of {name.strip()!r} is not a number: "
                               f"{value!r}") from None
    return point


def inexact_note(text: str) -> str:
    """A note for the CLI's ``--at`` values that are not float64 numbers as typed (0.3, 0.1):
    the point is their nearest float64 numbers, so a sum written to cancel (0.5 - 2·0.3 + 0.1)
    is exactly 2.8e-17 there, not 0 (newuser6); "" when every value is exact.

    >>> inexact_note("x=1.5,w=0.3")
    '--at reads w=0.3 as the float64 number 0.29999999999999998890; the values shown are exact at it'
    >>> inexact_note("x=1.5,y=1")
    ''
    """
    point = parse_point(text)
    typed = dict(p.split("=", 1) for p in (q.replace(" ", "") for q in text.split(",")) if p)
    off = [(n, typed[n], v) for n, v in point.items() if Decimal(typed[n]) != Decimal(v)]
    if not off:
        return ""
    what = ", ".join(f"{n}={t}" for n, t, _ in off)
    nums = [f"{Decimal(v):.20g}" for _, _, v in off]
    nums = ", ".join(nums[:-1]) + " and " + nums[-1] if len(nums) > 1 else nums[0]
    return (f"--at reads {what} as the float64 number{'s' if len(off) > 1 else ''} {nums}; the "
            f"values shown are exact at {'them' if len(off) > 1 else 'it'}")


# sg.explain(m, format="latex") is the CLI's --format: the Explanation writes each (newuser8)
_WRITE = ("it returns an Explanation: write it with .latex(), .markdown() or .html() (the "
          "CLI's --format)")


@checked_keywords(hints={"format": _WRITE, "fmt": _WRITE})
def explain(model: Model | TensorModel, *, at: dict | None = None) -> Explanation:
    """Derive ``model``'s gradient step by step, from its tensor program.

    Arguments:
        model: the model to explain (a plain ``sg.Model`` or a ``TensorModel``).
        at: optional point, block name (or the block's sympy symbol) -> value (scalars;
            nested lists for blocks), read as ``verify(at=)`` and ``exact_at`` read it.
    Returns:
        An ``Explanation`` (``.latex()``, ``.markdown()``, ``.html()``).
    """
    program = program_of(model)  # a non-model (an nn.Module) refused first, in one line
    if at is not None:  # block names or the blocks' symbols, as verify(at=) and exact_at
        at = by_name(model, at, "explain: at")
    textbook = program.textbook_program or program
    steps = step_derivation.steps_of(textbook)
    small = steps is not None and len(steps.nodes) <= (MAX_STEPS if at is not None
                                                       else EXPAND_STEPS)
    adj = values = leaves = None
    if at is not None and steps is not None and not small:
        raise SymgradError(f"explain: model {model.name!r} has {len(steps.nodes)} steps; "
                           f"--at evaluates derivations of models of up to {MAX_STEPS} steps "
                           "(verify and report work at any size)")
    if at is not None:
        params = [b.node for b in textbook.param_blocks]
        adj = adjoint_steps(textbook.loss, params)
        forward = [n for n in topological([textbook.loss]) if not n.is_leaf]
        nodes = forward if small else forward + list(adj.parts.values()) + [
            adj.total[p.id] for p in params if p.id in adj.total]
        entries = sum(n.size for n in nodes)
        if entries > MAX_AT_ENTRIES:
            raise SymgradError(f"explain: model {model.name!r} has {entries} entries in its "
                               f"steps; --at evaluates up to {MAX_AT_ENTRIES} (explain without "
                               "--at, and verify --at, work at any size)")
        at = by_name(model, at, "explain: at", complete=True)
        leaves = leaf_values(program.blocks, at, "explain: at")
        values = values_at(nodes, oracle_ops(), leaves)
    if small:
        env = (step_derivation.values(steps, values, leaves, textbook)
               if values is not None else None)
        sections = _steps_view(steps, env)
        names = step_derivation.display_names(steps)
    elif steps is not None:  # a large plain model: one line per family of steps
        sections = layer_derivation.summary_sections(steps)
        names = step_derivation.display_names(steps)
    else:
        sections, names = _tensor_view(textbook, adj, values), {}
    gradient, torch_grad = {}, {}
    if at is not None:
        sections.append(_gradient(program, at, leaves, small, gradient, torch_grad))
    return Explanation(model.name, sections, gradient, torch_grad, names,
                       program.layer_names)


def _steps_view(steps: step_derivation.Steps, env: dict | None) -> list[Section]:
    """A plain model's steps: layer by layer where every step came from an ``ops`` call (one
    on a matrix), else node by node."""
    if layer_derivation.layered(steps):
        try:
            return layer_derivation.layer_sections(steps, env)
        except (sp.ShapeError, ValueError, TypeError):  # e.g. a reshape: no single matrix form
            pass
    return step_derivation.node_sections(steps, env)


def _tensor_view(model: TensorModel, adj, values: dict | None) -> list[Section]:
    """The program itself: the forward pass one line per tensor operation, the backward pass
    one vector-Jacobian rule per node, the textbook rule per op and the derived gradient
    program; with ``values`` (node id -> exact value), every step's value."""
    adj = adj or adjoint_steps(model.loss, [b.node for b in model.param_blocks])
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
    return sections


def _gradient(program: TensorModel, at: dict, leaves: dict, per_entry: bool, gradient: dict,
              torch_grad: dict) -> Section:
    """The exact gradient (``exact_point``: arb balls, certified to 50 digits) beside torch
    autograd's of the same program (float64) at the point, one line per entry
    (``per_entry``) or per block; fills ``gradient`` and ``torch_grad`` entry by entry."""
    exact = exact_point(program, at, what="explain: at")
    torch_vals = torch_gradient(program, leaves)
    final = Section("Gradient: exact vs torch autograd",
                    note="exact value (arb balls, certified to 50 digits) and torch autograd "
                         "of the same program (float64) at the same point"
                         + _kink_note(program.textbook_program or program, at))
    for b in program.param_blocks:
        got = np.asarray(torch_vals[b.name]).reshape(-1)
        block = np.empty(b.size, dtype=object)
        for k, entry in enumerate(b.entry_names()):
            block[k] = exact[f"d/d{entry}"]
            gradient[entry] = mpmath.nstr(block[k], 17)
            torch_grad[entry] = repr(float(got[k]))
            if per_entry:
                sym = b.node.attrs["symbols"][k]
                final.lines.append(Line(sp.Derivative(sp.Symbol("L"), sym, evaluate=False),
                                        sp.Float(gradient[entry], 17),
                                        comment=f"exact; torch autograd: {torch_grad[entry]}"))
        if not per_entry:
            final.lines.append(tensor_derivation.gradient_line(
                b.name, block.reshape(b.shape), got.reshape(b.shape)))
    return final


def _kink_note(program: TensorModel, at: dict) -> str:
    """A sentence naming the kinks the point reaches (``tensor.kinks.reached``, within float64
    rounding of the kink), where the derivative may have no single value; "" if none."""
    if not has_sites(program):
        return ""
    keys = reached(program, given_samples(program, at, "explain: at"), oracle_ops(),
                   ("float64",), Tolerance())
    s, seen = sided(program), []
    for k in keys.rows[0]:
        site = s.sites[k.site]
        what = (f"a tie of the max over {site.node.args[0].name or 'its operand'}" if k.atom < 0
                else str(site.atoms[k.atom].expr.xreplace(operand_names(site.node))))
        what += f" (entry {k.entry})" if site.node.size > 1 else ""
        if what not in seen:
            seen.append(what)
    if not seen:
        return ""
    return ("; this point is at a kink of " + ", ".join(seen[:4])
            + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")
            + ": where the one-sided derivatives differ there, the gradient is not unique and "
            "the exact value takes sympy's convention (sign(0) = 0, Heaviside(0) = 1/2); "
            "sg.verify(at=) accepts any convex combination of the one-sided derivatives")


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
