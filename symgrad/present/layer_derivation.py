"""The layer-level derivation of a plain model built from ``sg.ops`` calls on ``sg.matrix``
blocks, read from the steps its tensor program carries (``present/step_derivation``): one
matrix formula per layer and one delta per layer, from the per-op table ``layer_rules`` (not
per-model formulas); the scalar end of the network (the loss) at node level with its textbook
adjoints (simplenet's dL/dz = a - y); a large model summarized one line per family of steps.

>>> from symgrad import zoo
>>> from symgrad.tensor.front import to_program
>>> from symgrad.present.step_derivation import steps_of
>>> from symgrad.present.names import layer_names
>>> program = to_program(zoo.get("simplenet"))
>>> steps = steps_of(program.textbook_program)
>>> with layer_names(program.layer_names):  # simplenet's W1 is layer 1's: W^(1)
...     layered(steps), [ln.latex() for ln in layer_sections(steps, None)[0].lines][0]
(True, 'h = W^{(1)} x + b^{(1)}')
"""

from __future__ import annotations

import re

import sympy as sp

from ..logistic import sigma
from ..optable import OPS
from ..tensor.front import FrontStep
from .explanation import Line, Section
from .step_derivation import (Steps, fmt, fmt_expr, fmt_group, local_derivative,
                              textbook_adjoints)

# the layer rules' notation, as explain and the report both print it (explain said "delta_v =
# dL/dv ... o the elementwise product" in ASCII, the report in symbols: newuser8)
LAYER_NOTE = "δ_v = ∂L/∂v; θ is the Heaviside step, ∘ the elementwise product"


def layered(steps: Steps) -> bool:
    """Whether the layer view applies: every step but the loss comes from an ``ops`` call,
    one of them on a matrix (not 1 x 1)."""
    return (all(n.group is not None or n is steps.output for n in steps.nodes)
            and any(n.group is not None and n.group.shape != (1, 1) for n in steps.nodes))


# what the functions a layer rule writes mean, per op (shown beside its forward formula)
NOTATION = {"cross_entropy": "lse(Z)[t] = log of the sum over j of exp(Z[t, j]); pick(Z, y)[t] "
                             "= Z[t, y[t]], row t's target column; onehot(y)[t, j] = [j = y[t]]; "
                             "1 a row of ones"}


def _mat(name: str, shape) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, *shape)


def layer_rules(op: str, out, ins, inputs: set, params: set):
    """Forward formula and backward rules (lhs, rhs) of one op in matrix notation.

    One entry per op kind (a table, not per-model formulas); ``inputs`` get no delta,
    ``params`` get dL/dW rather than a delta.

    >>> x, W, h = (sp.MatrixSymbol(n, *s) for n, s in (("x", (3, 1)), ("W", (2, 3)), ("h", (2, 1))))
    >>> fwd, back = layer_rules("linear", h, [x, W], {"x"}, {"W"})
    >>> fwd, back
    (W*x, [(Derivative(L, W), delta_h*x.T)])
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
                wrt(h, sp.HadamardProduct(d(out), _mat(f"θ({h.name})", h.shape))))
    if op == "sigmoid":
        (z,) = ins
        return (sigma(sp.Symbol(z.name)),
                wrt(z, sp.HadamardProduct(d(out), out, sp.MatAdd(  # 1 - a, as written (not
                    sp.OneMatrix(*out.shape), -out, evaluate=False))))  # -a + I at 1 x 1)
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
        deriv = (sp.MatAdd(sp.OneMatrix(*out.shape), -sp.HadamardProduct(out, out),
                           evaluate=False) if op == "tanh" else out)  # 1 - tanh^2, as written
        return (sp.Function(op)(sp.Symbol(z.name)),
                wrt(z, sp.HadamardProduct(d(out), deriv)))
    if op == "cross_entropy":  # ops.cross_entropy's rows: nll = lse(Z) - pick(Z, y)
        Z, y = ins[0], ins[1]
        fwd = sp.MatAdd(_mat(f"lse({Z.name})", out.shape),  # in the reader's order
                        -_mat(f"pick({Z.name}, {y.name})", out.shape), evaluate=False)
        return fwd, wrt(Z, sp.HadamardProduct(d(out) * sp.OneMatrix(1, Z.shape[1]), sp.MatAdd(
            _mat(f"softmax({Z.name})", Z.shape), -_mat(f"onehot({y.name})", Z.shape),
            evaluate=False)))
    entry = OPS.get(op)
    if entry is not None and entry.named:  # an op-table op (mish): delta_z = delta_y o f'(z)
        (z,) = ins
        return (entry.applied(sp.Symbol(z.name)), wrt(z, sp.HadamardProduct(
            d(out), _mat(f"{entry.latex_free()}'({z.name})", z.shape))))
    return None, []


def layer_sections(steps: Steps, values: dict | None) -> list[Section]:
    """The forward pass one matrix formula per layer and the backward pass one delta per
    layer (``layer_rules``); a step no ``ops`` call made (the loss) at node level.

    Raises:
        sympy.ShapeError, ValueError, TypeError: a layer with no single matrix form (a
            reshape); the caller falls back to ``node_sections``.
    """
    groups: dict = {}
    for n in steps.nodes:
        key = n.group.label if n.group is not None else str(n.symbol)
        groups.setdefault(key, (n.group, []))[1].append(n)
    shapes = matrix_shapes(steps)
    fwd = Section("Forward pass, layer by layer",
                  note="matrix notation; each step is a layer of the model's program")
    back = Section("Backpropagation: one delta per layer",
                   note=LAYER_NOTE)
    rules = []
    active = steps.active()
    for key, (g, nodes) in groups.items():
        if g is None:  # a scalar step (the loss): node-level
            n = nodes[0]
            fwd.lines.append(Line(n.symbol, n.expr, fmt(values, n.symbol)))
            for u in n.operands:
                if u in active:
                    d = local_derivative(n, u)
                    back.lines.append(Line(sp.Derivative(n.symbol, u, evaluate=False), d,
                                           fmt_expr(values, d)))
            continue
        out = _mat(key, g.shape)
        ins = [_mat(name, shapes.get(name, (1, 1))) for name in g.operands]
        formula, backward = layer_rules(g.op, out, ins, steps.inputs, steps.param_names)
        shown = [n for n in nodes  # the layer's own entries (nll_t, not the lse_t beside),
                 if (getattr(n.symbol, "label", None) or "").split("_{")[0] == key] or nodes
        shown.sort(key=lambda n: getattr(n.symbol, "dummy_index", 0))  # in the order made:
        #                          row by row (the program lists some ops' steps last-first)
        fwd.lines.append(Line(out, formula if formula is not None else sp.Symbol(g.op),
                              fmt_group(values, shown), comment=NOTATION.get(g.op, "")))
        rules.append(backward)
    for backward in reversed(rules):
        for lhs, rhs in backward:
            back.lines.append(Line(lhs, rhs))
    text = Section("Backpropagation, textbook form",
                   note="the scalar end of the network: each dL/dv from the chain rule, "
                        "simplified (the delta the layer rules above start from)")
    text.lines = [Line(lhs, rhs, fmt_expr(values, rhs))
                  for lhs, rhs in textbook_adjoints(steps, tail=True)]
    return [fwd, back] + ([text] if text.lines else [])


# ------------------------------------------------------------------ a large model, summarized
FAMILY_RULES = 4  # local derivatives shown per family of steps


def family_of(n: FrontStep) -> str:
    """The op call or name a step shares with its family: a matrix op's label, else the step's
    label without its indices (``score1_{2,1}`` -> ``score1``), else its kind."""
    if n.group is not None:
        return n.group.label
    label = getattr(n.symbol, "label", None)
    return label.split("_{")[0] if label else n.kind


def _label_shapes(steps: Steps) -> dict[str, tuple[int, int]]:
    """The matrix a family of indexed steps fills (``act_{1,11}`` .. -> act is 2 x 12), so a
    matrix op reading it (a dense layer on an elementwise activation) has its matrix form."""
    out: dict[str, tuple[int, int]] = {}
    for n in steps.nodes:
        m = re.fullmatch(r"(.+)_\{(\d+)(?:,(\d+))?\}", getattr(n.symbol, "label", None) or "")
        if m:
            i, j = int(m.group(2)) + 1, int(m.group(3) or 0) + 1
            old = out.get(m.group(1), (0, 0))
            out[m.group(1)] = (max(old[0], i), max(old[1], j))
    return out


def matrix_shapes(steps: Steps) -> dict[str, tuple[int, int]]:
    """The matrix shape of each block (a vector as a column), each ``ops`` call on a matrix
    (its label) and each family of indexed steps (``_label_shapes``)."""
    shapes = {name: (s + (1,) * (2 - len(s)) if s else (1, 1))
              for name, s in steps.shapes.items()}
    shapes.update({n.group.label: n.group.shape for n in steps.nodes if n.group is not None})
    return _label_shapes(steps) | shapes


def summary_sections(steps: Steps) -> list[Section]:
    """A model too large for every step: one line per family of steps (the matrix formula of an
    ``ops`` call on a matrix, else the family's first step), then each family's backward rule
    (the layer rules, else the local derivatives of its first step).

    Arguments:
        steps: ``steps_of`` a textbook program.
    Returns:
        Two sections, forward and backward.
    """
    families: dict = {}
    for n in steps.nodes:
        families.setdefault(family_of(n), []).append(n)
    shapes = matrix_shapes(steps)
    fwd = Section(f"Forward pass, one line per op ({len(steps.nodes)} steps)",
                  note="a family of steps (one op on every entry of a matrix, or steps of the "
                       "same name) is shown once, by its matrix formula or its first step")
    back = Section("Backpropagation, one rule per op",
                   note="delta_v = dL/dv; a family's local derivatives, from its first step")
    active = steps.active()
    for key, nodes in families.items():
        g, first = nodes[0].group, nodes[0]
        more = f"{len(nodes)} steps" if len(nodes) > 1 else ""
        if g is not None:
            try:
                formula, rules = layer_rules(g.op, _mat(key, g.shape),
                                             [_mat(o, shapes.get(o, (1, 1))) for o in g.operands],
                                             steps.inputs, steps.param_names)
            except (sp.ShapeError, ValueError, TypeError):
                formula, rules = None, []
            if formula is not None:
                fwd.lines.append(Line(_mat(key, g.shape), formula, comment=more))
                back.lines += [Line(lhs, rhs) for lhs, rhs in rules]
                continue
        fwd.lines.append(Line(first.symbol, first.expr, comment=f"first of {more}" if more
                              else ""))
        for u in [u for u in first.operands if u in active][:FAMILY_RULES]:
            back.lines.append(Line(sp.Derivative(first.symbol, u, evaluate=False),
                                   local_derivative(first, u)))
    back.lines.reverse()
    return [fwd, back]
