"""The derivation a teacher writes for a plain model, read from its tensor program: the steps
``symgrad.tensor.front.to_program`` tags on its map nodes (``FrontStep``: the step's symbol, its
textbook expression, the ``ops`` call that made it). Two views: node level (the forward pass as
named steps, each local derivative by ``sympy.diff``, the chain rule composed and simplified,
the textbook adjoints dL/dv); the layer level is ``present/layer_derivation``. With values
(step symbol -> exact value, ``values``), each line shows its value at the point.

>>> from symgrad import zoo
>>> from symgrad.tensor.front import to_program
>>> p = to_program(zoo.get("neuron"))
>>> steps = steps_of(p.textbook_program)
>>> [str(s.symbol) for s in steps.nodes], [str(p) for p in steps.params]
(['z', 'a', 'L'], ['w', 'b'])
>>> [f"{lhs} = {rhs}" for lhs, rhs in textbook_adjoints(steps)][1]
'Derivative(L, z) = a - y'
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from ..backends.mpmath import target
from ..codegen import compile_program
from ..logistic import sigma
from ..tensor.front import FrontStep
from ..tensor.model import TensorModel
from ..tensor.program import topological
from .explanation import Line, Section
from .fold import MAX_TERMS
from .notation import latex
from .piecewise import prune

MAX_SIMPLIFIED_CHARS = 600  # a closed form longer than this (in LaTeX) would run off the page
MAX_SIMPLIFIED_SYMBOLS = 8  # ... and one of more free symbols is not simplified (factoring cost)
SIMPLIFIED_STEPS = 12  # the whole gradient in closed form for programs of up to this many steps
# ops whose declared partial is printed as declared: sympy.factor would turn tanh's 1 - t^2
# into -(1 + t)(-1 + t); the others' factored forms read as before (sigmoid: -(-1 + a) a
# factored keeps the neuron's dL/dz = a - y; log-sum-exp's softmax)
AS_DECLARED = frozenset({"tanh"})
TEXTBOOK_STEPS = 30  # the textbook adjoints for programs of up to this many steps


class DirectDerivative(sp.Derivative):
    r"""The loss's own partial derivative in a parameter it also reaches through other steps
    (an L2 term beside the data term): printed ``∂L/∂w|direct``, so that the chain rule
    ``∂L/∂w = ∂L/∂s ∂s/∂z ∂z/∂w + ∂L/∂w|direct`` does not read as circular.

    >>> from symgrad.present.notation import latex
    >>> latex(DirectDerivative(sp.Symbol("L"), sp.Symbol("w"), evaluate=False))
    '\\left.\\frac{\\partial L}{\\partial w}\\right|_{\\mathrm{direct}}'
    """

    def _latex(self, printer) -> str:
        inner = printer._print(sp.Derivative(*self.args, evaluate=False))
        return rf"\left.{inner}\right|_{{\mathrm{{direct}}}}"

    def _mathml_presentation(self, printer):
        row = printer._row(printer._print(sp.Derivative(*self.args, evaluate=False)),
                           printer._mo("|"))  # symgrad's printer (present.notation.mathml)
        return printer._row(row, printer._text("direct"), tag="msub")


@dataclass
class Steps:
    """A plain model's program as its steps: ``nodes`` in program order (the last is the
    loss), ``ids`` step symbol -> its program node's id (its value), ``params`` the parameter
    entries' symbols (the model's order), ``inputs`` / ``param_names`` the block names and
    ``shapes`` block name -> shape."""

    nodes: list[FrontStep]
    ids: dict[sp.Symbol, int]
    params: list[sp.Symbol]
    inputs: set[str]
    param_names: set[str]
    shapes: dict[str, tuple[int, ...]]

    @property
    def output(self) -> FrontStep:
        return self.nodes[-1]

    def active(self) -> set[sp.Symbol]:
        """The parameters and every step that depends on one."""
        active = set(self.params)
        for n in self.nodes:
            if any(o in active for o in n.operands):
                active.add(n.symbol)
        return active


def steps_of(program: TensorModel) -> Steps | None:
    """The tagged steps of ``program`` (built by ``to_program``), or None for a program built
    from tensor ops (no front-end steps: ``tensor_derivation`` explains it).

    Arguments:
        program: a ``TensorModel``.
    Returns:
        ``Steps`` when the loss node is a tagged step, else None.
    """
    if "step" not in program.loss.attrs:
        return None
    # in the order the front end built them (node ids count up): the model's own step order
    order = sorted((n for n in topological([program.loss]) if "step" in n.attrs),
                   key=lambda n: n.id)
    return Steps([n.attrs["step"] for n in order],
                 {n.attrs["step"].symbol: n.id for n in order},
                 [s for b in program.param_blocks for s in b.node.attrs.get("symbols", ())],
                 {b.name for b in program.input_blocks}, {b.name for b in program.param_blocks},
                 {b.name: b.shape for b in program.blocks})


def display_names(steps: Steps) -> dict:
    """Step symbol -> its display name; a repeated label gets ``#k`` (shown as ^{(kth)}), k in
    the order the model made its steps (the symbols' creation order: ``linear(x, W)``'s rows
    0, 1, ... get 1, 2, ..., whatever order the program lists them in)."""
    seen: dict[str, int] = {}
    names = {}
    for n in made_order(steps):
        base = getattr(n.symbol, "label", None) or n.kind
        seen[base] = seen.get(base, 0) + 1
        names[n.symbol] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return {n.symbol: names[n.symbol] for n in steps.nodes}


def made_order(steps: Steps) -> list[FrontStep]:
    """The steps in the order the model made them (their symbols' creation order, a
    topological order): how a reader wrote the model, whatever order the program lists."""
    return sorted(steps.nodes, key=lambda n: getattr(n.symbol, "dummy_index", 0))


def local_derivative(node: FrontStep, u: sp.Symbol) -> sp.Expr:
    """d node / d u in readable form: in terms of the node's own value where that is shorter
    (a sigmoid's a(1 - a)); an op's own declared partial (log-sum-exp's softmax) wins over
    ``sympy.diff`` of its stable form."""
    given = dict(node.partials).get(u)
    d = given if given is not None else sp.diff(node.expr, u)
    if isinstance(node.expr, sigma):
        d = d.subs(node.expr, node.symbol)
    if given is not None and node.kind in AS_DECLARED:
        return d
    return join_exp(sp.factor(sp.together(d))) if d.count_ops() < 40 else d


def join_exp(expr: sp.Expr) -> sp.Expr:
    """``expr`` with each product of exponentials as one, as a teacher writes it: sympy's
    simplify splits e^{b + w x} into e^b e^{w x}; the same value, display only.

    >>> b, w, x = sp.symbols("b w x")
    >>> join_exp(1 / (1 + sp.exp(b) * sp.exp(w * x)))
    1/(exp(b + w*x) + 1)
    """
    return expr.replace(lambda e: isinstance(e, sp.Mul) and sum(
        isinstance(a, sp.exp) for a in e.args) > 1, lambda e: sp.powsimp(e, combine="exp"))


def one_minus(expr: sp.Expr) -> sp.Expr:
    """``expr`` with a negative product's sum factor negated, as a teacher writes it: sympy's
    ``-(-1 + a) a`` as ``(1 - a) a`` (a sigmoid's derivative); the same value, display only.

    >>> a = sp.Symbol("a")
    >>> one_minus(-(a - 1) * a)
    a*(1 - a)
    """
    def rewrite(m: sp.Mul) -> sp.Expr:
        c, rest = m.as_coeff_mul()
        k = next((k for k, f in enumerate(rest) if c < 0 and f.is_Add
                  and any(t.is_Number and t < 0 for t in f.args)), None)
        return m if k is None else sp.Mul(-c, *rest[:k], -rest[k], *rest[k + 1:])
    return expr.replace(lambda e: isinstance(e, sp.Mul), rewrite)


def _tail(steps: Steps) -> list[FrontStep]:
    """The scalar end of a layered program: the last steps that are no ``ops`` call on a
    matrix (a 1 x 1 layer, the loss), in program order."""
    out: list[FrontStep] = []
    for n in reversed(steps.nodes):
        if n.group is not None and n.group.shape != (1, 1):
            break
        out.insert(0, n)
    return out


def textbook_adjoints(steps: Steps, *, tail: bool = False) -> list[tuple[sp.Basic, sp.Expr]]:
    """dL/dv for every step v and parameter, simplified and written in the steps' names: for a
    sigmoid neuron with BCE, dL/dz = a - y.

    Arguments:
        steps: ``steps_of`` a textbook program.
        tail: only the scalar steps at the end of a layered program (simplenet's dL/da and
            dL/dz = a - y), no parameters.
    Returns:
        (``Derivative(L, v)``, its expression) pairs, the loss's users first.
    """
    out_sym = steps.output.symbol
    active = steps.active()
    nodes = _tail(steps) if tail else steps.nodes
    adj: dict = {out_sym: sp.Integer(1)}
    for n in reversed(nodes):
        if n.symbol not in adj:
            continue
        for u in n.operands:
            if u in active:
                adj[u] = adj.get(u, 0) + adj[n.symbol] * local_derivative(n, u)
    declared = {n.symbol for n in steps.nodes if n.kind in AS_DECLARED}
    lines = []
    for n in list(reversed(nodes))[1:] + [None]:
        for sym in ([n.symbol] if n is not None else [] if tail else steps.params):
            if sym in adj:
                e = adj[sym]
                if e.count_ops() < 60 and not e.has(sp.Piecewise):
                    e = join_exp(one_minus_square(sp.factor(sp.simplify(e)), declared))
                lines.append((sp.Derivative(out_sym, sym, evaluate=False), e))
    return lines


def one_minus_square(expr: sp.Expr, steps: set = frozenset()) -> sp.Expr:
    """``expr`` with each factored tanh derivative written back as the textbook's 1 - t^2:
    ``(1 + t)(-1 + t)`` -> ``-(1 - t^2)``, ``(1 + t)(1 - t)`` -> ``1 - t^2`` (equal powers
    alike), for t a tanh step's symbol (``steps``) or ``tanh(...)`` itself; ``sympy.factor``
    of a product of adjoints splits the local derivative that way.

    Arguments:
        expr: a (factored) expression.
        steps: the symbols of the tanh steps.
    Returns:
        The same value, its tanh derivatives as 1 - t^2.

    >>> t, v = sp.symbols("t v")
    >>> one_minus_square(sp.factor(v * (1 - t**2)), {t})
    v*(1 - t**2)
    """
    def tanh_like(t) -> bool:
        return t in steps or isinstance(t, sp.tanh)

    def rewrite(m: sp.Mul) -> sp.Expr:
        parts = [a.as_base_exp() for a in m.args]
        used: set[int] = set()
        out, sign = [], sp.Integer(1)
        for i, (b, e) in enumerate(parts):
            t = b - 1 if isinstance(b, sp.Add) and len(b.args) == 2 else None
            if i in used or t is None or not tanh_like(t):
                continue
            for j, (b2, e2) in enumerate(parts):
                if j != i and j not in used and e2 == e and b2 in (t - 1, 1 - t):
                    used |= {i, j}
                    out.append((1 - t**2) ** e)
                    sign *= (-1) ** e if b2 == t - 1 else 1
                    break
        if not used:
            return m
        rest = [a for k, a in enumerate(m.args) if k not in used]
        return sp.Mul(sign, *rest, *out)
    try:
        return expr.replace(lambda e: isinstance(e, sp.Mul), rewrite)
    except (TypeError, ValueError, AttributeError):
        return expr


# ------------------------------------------------------------------ node-level view
ONE_STEP_OPS = 40  # a one-step loss of more operations than this gets ONE_STEP's hint
ONE_STEP = ("the loss is one sympy expression, so each derivative below is the whole chain "
            "rule at once; build it with sg.ops (sg.ops.dense, sg.ops.tanh, "
            "sg.ops.cross_entropy, sg.ops.mse, ...) for a derivation layer by layer")
#   a plain-sympy 2-layer MLP: 130 equations of up to 5,258 characters, every one overfull in
#   LaTeX (newuser13)


def node_sections(steps: Steps, values: dict | None) -> list[Section]:
    """Forward pass, local derivatives, chain rule, textbook adjoints and the simplified
    gradient of a program of scalar steps (values beside them with ``values``)."""
    made = made_order(steps)  # numbered (display_names) and listed in the model's order
    fwd = Section("Forward pass", note=ONE_STEP if len(made) == 1 and sp.count_ops(
        made[0].expr) > ONE_STEP_OPS else "")  # (newuser13)
    for n in made:
        fwd.lines.append(Line(n.symbol, n.expr, fmt(values, n.symbol)))
    active = steps.active()
    out = steps.output.symbol
    by_symbol = {n.symbol: n for n in steps.nodes}
    all_paths = {p: _paths(by_symbol, out, p, limit=6) for p in steps.params}

    def partial(a, b) -> sp.Derivative:  # the loss's direct use of w beside its other paths
        many = a == out and len(all_paths.get(b, ())) > 1
        return (DirectDerivative if many else sp.Derivative)(a, b, evaluate=False)

    loc = Section("Local derivatives")
    local: dict[tuple, sp.Expr] = {}
    for n in made:
        for u in n.operands:
            if u in active:
                local[(n.symbol, u)] = d = local_derivative(n, u)
                loc.lines.append(Line(partial(n.symbol, u), one_minus(d), fmt_expr(values, d)))
    chain, simp = Section("Chain rule"), Section("Gradient, simplified")
    flat = _flatten(steps)
    for p in steps.params:
        paths = all_paths[p]
        if paths:
            product = sp.Add(*[sp.Mul(*[partial(a, b) for a, b in zip(path, path[1:])],
                                      evaluate=False)
                               for path in paths], evaluate=False)
            composed = sp.Add(*[sp.Mul(*[local[(a, b)] for a, b in zip(path, path[1:])])
                                for path in paths])
            lhs = sp.Derivative(out, p, evaluate=False)
            if any(len(path) > 2 for path in paths):  # one step: dL/dw = dL/dw says nothing
                chain.lines.append(Line(lhs, product,
                                        max_terms=2 if len(paths) > 2 else MAX_TERMS))
            chain.lines.append(Line(lhs, composed, fmt_expr(values, composed)))
        expr = sp.diff(flat, p) if len(steps.nodes) <= SIMPLIFIED_STEPS else None
        # multivariate factoring (Wang's algorithm) can run for minutes on a matrix model's
        # entries, depending on the hash seed: simplified forms only for few scalars
        if expr is not None and len(expr.free_symbols) <= MAX_SIMPLIFIED_SYMBOLS:
            nice = join_exp(one_minus_square(prune(sp.factor(sp.simplify(expr)))))
            if len(latex(nice)) <= MAX_SIMPLIFIED_CHARS:  # else the chain rule lines stand
                simp.lines.append(Line(sp.Derivative(out, p, evaluate=False), nice))
    text = Section("Backpropagation, textbook form",
                   note="each dL/dv from the chain rule on the formulas above, simplified")
    if len(steps.nodes) <= TEXTBOOK_STEPS:
        text.lines = [Line(lhs, rhs) for lhs, rhs in textbook_adjoints(steps)]
    return [fwd, loc, chain] + ([text] if text.lines else []) + ([simp] if simp.lines else [])


def _flatten(steps: Steps) -> sp.Expr:
    memo: dict = {}
    for n in steps.nodes:
        memo[n.symbol] = n.expr.xreplace(memo)
    return memo[steps.output.symbol]


def _paths(by_symbol: dict, start, target_, limit: int) -> list[list]:
    found: list[list] = []
    stack = [[start]]
    while stack and len(found) < limit:
        path = stack.pop()
        if path[-1] == target_:
            found.append(path)
            continue
        node = by_symbol.get(path[-1])
        if node is None:
            continue
        for u in reversed(node.operands):
            stack.append(path + [u])
    return found


# ------------------------------------------------------------------ values at a point
def values(steps: Steps, by_id: dict[int, np.ndarray], leaves: dict[str, np.ndarray],
           program: TensorModel) -> dict[sp.Symbol, mpmath.mpf]:
    """Step symbol -> value from the program's node values (``tensor.steps.values_at``), and
    entry symbol -> value from the point (``tensor.steps.leaf_values``)."""
    env = {s: mpmath.mpf(by_id[i].reshape(-1)[0]) for s, i in steps.ids.items() if i in by_id}
    for b in program.blocks:
        for s, x in zip(b.node.attrs.get("symbols", ()), np.asarray(leaves[b.name]).reshape(-1)):
            env[s] = mpmath.mpf(float(x))
    return env


def _mp_eval(expr: sp.Expr, env: dict):
    syms = sorted(expr.free_symbols, key=sp.default_sort_key)
    plain = expr.subs({f: f.rewrite(sp.exp) for f in expr.atoms(sigma)})
    fn = compile_program([], syms, [plain], target(50))
    return fn([env[s] for s in syms])[0]


def fmt(values: dict | None, sym) -> str | None:
    if values is None or sym not in values:
        return None
    return mpmath.nstr(values[sym], 6)


def fmt_expr(values: dict | None, expr) -> str | None:
    if values is None or sp.sympify(expr).is_Number:  # a number's value is itself (1 = 1)
        return None
    try:
        with mpmath.workdps(50):
            return mpmath.nstr(_mp_eval(expr, values), 6)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def fmt_group(values: dict | None, nodes: list[FrontStep]) -> str | None:
    if values is None:
        return None
    shown = [mpmath.nstr(values[n.symbol], 4) for n in nodes[:6]]
    return "[" + ", ".join(shown) + (", …" if len(nodes) > 6 else "") + "]"
