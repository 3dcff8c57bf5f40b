"""Step-by-step derivations a teacher would write, derived from the model's program.

1. the forward pass as named steps; 2. each local derivative (sympy); 3. the chain rule
composed and the simplified gradient per parameter; 4. with ``at``, every step evaluated exactly
at that point, ending in the numbers torch autograd gives at the same point, side by side.
Matrix models (built with ``sg.ops`` on ``sg.matrix`` blocks) are explained layer by layer in
matrix notation with one delta per layer, from a per-op table of rules.

>>> from symgrad import zoo
>>> e = explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1})
>>> e.gradient["w"][:7], e.gradient["b"][:7]
('-0.0898', '-0.0817')
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from .derive import active_symbols
from .errors import SymgradError
from .graph import Graph, Node
from .htmlpage import page
from .model import Model
from .notation import fold, latex, mathml, names_from, sigma
from .optable import OPS


MAX_STEPS = 400  # larger programs are verified and reported, not explained step by step
EXPAND_STEPS = 60  # without a point, larger programs are explained one line per op


@dataclass
class Line:
    """One displayed equation ``lhs = rhs`` (sympy expressions), optionally with its value."""

    lhs: sp.Basic
    rhs: sp.Basic
    value: str | None = None
    comment: str = ""  # plain text after the equation
    tex: str = ""  # a ready LaTeX equation instead of lhs = rhs
    html: str = ""  # its MathML

    def latex(self) -> str:
        return self.tex or f"{latex(self.lhs)} = {latex(fold(self.rhs))}"


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)
    note: str = ""


@dataclass
class Explanation:
    """A derivation; renders as LaTeX, Markdown or HTML (MathML) and displays in Jupyter."""

    model: str
    sections: list[Section]
    gradient: dict[str, str]  # parameter entry -> exact value (when ``at`` was given)
    torch_gradient: dict[str, str]  # parameter entry -> torch autograd value at the point
    names: dict = field(default_factory=dict)  # step symbol -> display name

    def latex(self) -> str:
        """A complete LaTeX document (long sums folded; displays may break across pages)."""
        body = []
        with names_from(self.names):
            for s in self.sections:
                body.append(rf"\section*{{{_tex_escape(s.title)}}}")
                if s.note:
                    body.append(_tex_escape(s.note) + "\n")
                for ln in s.lines:
                    eq = ln.latex()
                    if ln.value is not None:
                        eq += rf" = {ln.value}"
                    if "\\begin{aligned}" not in eq:
                        eq = eq.replace(" = ", " &= ", 1)
                    body.append("\\begin{align*}\n" + eq + "\n\\end{align*}")
                    if ln.comment:
                        body.append(r"{\small " + _tex_escape(ln.comment) + "}\n")
        return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
                "\\usepackage[margin=2cm]{geometry}\n\\allowdisplaybreaks\n"
                "\\begin{document}\n"
                f"\\section*{{symgrad: {_tex_escape(self.model)}}}\n"
                + "\n".join(body) + "\n\\end{document}\n")

    def markdown(self) -> str:
        out = [f"# symgrad explain: {self.model}", ""]
        with names_from(self.names):
            for s in self.sections:
                out += [f"## {s.title}", ""]
                if s.note:
                    out += [s.note, ""]
                for ln in s.lines:
                    val = f" = {ln.value}" if ln.value is not None else ""
                    out += [f"$$ {ln.latex()}{val} $$", ""]
                    if ln.comment:
                        out += [ln.comment, ""]
        return "\n".join(out)

    def html_fragment(self) -> str:
        out = []
        with names_from(self.names):
            for s in self.sections:
                out.append(f"<h2>{_html.escape(s.title)}</h2>")
                if s.note:
                    out.append(f"<p>{_html.escape(s.note)}</p>")
                for ln in s.lines:
                    if ln.html or ln.lhs is None:
                        math = ln.html
                    elif _eqable(ln):
                        math = mathml(sp.Eq(ln.lhs, fold(ln.rhs), evaluate=False))
                    else:
                        math = mathml(ln.lhs) + " = " + mathml(ln.rhs)
                    val = (f" = <code>{_html.escape(ln.value)}</code>" if ln.value is not None
                           else "")
                    note = f" <span>{_html.escape(ln.comment)}</span>" if ln.comment else ""
                    out.append(f'<p class="eq">{math}{val}{note}</p>')
        return "\n".join(out)

    def html(self) -> str:
        return page(f"symgrad explain: {self.model}", self.html_fragment())

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        return self.html_fragment()

    def __str__(self) -> str:
        return self.markdown()


def _eqable(ln: Line) -> bool:
    return not isinstance(ln.lhs, sp.MatrixExpr) and not isinstance(ln.rhs, sp.MatrixExpr)


_TEX_TEXT = {"δ̂": r"$\hat\delta$", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#",
             "δ": r"$\delta$",
             "∂": r"$\partial$", "∘": r"$\circ$", "x̄": r"$\bar{x}$", "…": r"\dots{}",
             "⋮": r"$\vdots$", "σ": r"$\sigma$", "−": "-", "≤": r"$\le$", "^": r"\^{}",
             "<=": r"$\le$", "<": "$<$", ">": "$>$", "μ": r"$\mu$", "x̂": r"$\hat{x}$",
             "ᵀ": r"$^T$"}


def _tex_escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, symbols as math."""
    import unicodedata
    for char, tex in _TEX_TEXT.items():
        text = text.replace(char, tex)
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return "".join(c if ord(c) < 128 else "?" for c in text)  # pdflatex: ASCII only


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
        at: optional point, block name -> value (scalars; nested lists for blocks).
    Returns:
        An ``Explanation`` (``.latex()``, ``.markdown()``, ``.html()``).
    """
    from .tensor.model import TensorModel
    if isinstance(model, TensorModel):
        return _tensor(model, at)
    graph = model.display_graph
    if len(graph.nodes) > (MAX_STEPS if at is not None else EXPAND_STEPS):
        if at is not None:
            raise SymgradError(f"explain: model {model.name!r} has {len(graph.nodes)} steps; "
                               f"--at evaluates derivations of models of up to {MAX_STEPS} "
                               "steps (verify and report work at any size)")
        return _summarized(model, graph)
    values = _values_at(model, at) if at is not None else None
    grouped = all(_group(n) is not None or n is graph.output for n in graph.nodes)
    sections = None
    if grouped and _has_matrix(graph):
        try:
            sections = _layers(model, graph, values)
        except (sp.ShapeError, ValueError, TypeError):  # e.g. a reshape: no single matrix form
            sections = None
    if sections is None:
        sections = _scalar(model, graph, values)
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
    from .report.formulas import display_names
    return display_names(graph)


def _summarized(model: Model, graph: Graph) -> Explanation:
    """A large model: one line per op family and the matrix-level backward rules, not every
    scalar step (the same view as the report's)."""
    from .report.formulas import gradient_formulas, model_formulas
    sections = [_formula_section(f"Forward pass, one line per op ({len(graph.nodes)} steps)",
                                 model_formulas(model))]
    sections += [_formula_section(title, fs) for title, fs in
                 gradient_formulas(model, computed="program" in model._cache)]
    return Explanation(model.name, sections, {}, {}, _names(graph))


def _tensor(model, at: dict | None) -> Explanation:
    """A tensor model (a GPT): its lowering to the scalar program, explained step by step, at
    small shapes (``EXPAND_STEPS`` entries in all; ``MAX_STEPS`` with a point ``at``); else
    one line per tensor operation and the backward rule per op, from the tensor program."""
    from .report import tensor_formulas
    from .tensor.lower import to_scalar_model
    from .tensor.program import topological
    entries = sum(n.size for n in topological([model.loss]) if not n.is_leaf)
    if entries <= (MAX_STEPS if at is not None else EXPAND_STEPS):
        return explain(to_scalar_model(model, name=model.name), at=at)
    if at is not None:
        raise SymgradError(f"explain: model {model.name!r} is a tensor program of {entries} "
                           f"entries; --at evaluates derivations of up to {MAX_STEPS} "
                           "(verify and report work at any size)")
    sections = _tensor_sections("Forward pass, one line per tensor operation",
                                tensor_formulas.model_formulas(model))
    for title, fs in tensor_formulas.gradient_formulas(model):
        sections += _tensor_sections(title, fs)
    return Explanation(model.name, sections, {}, {}, {})


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
                adj[u] = adj.get(u, 0) + adj[n.symbol] * _local(n, u)
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
def _shown(node: Node) -> sp.Expr:
    shown = getattr(node.symbol, "shown", None)
    return shown if shown is not None else node.expr


MAX_SIMPLIFIED_CHARS = 600  # a closed form longer than this (in LaTeX) would run off the page
MAX_SIMPLIFIED_SYMBOLS = 8  # ... and one of more free symbols is not simplified (factoring cost)


def _local(node: Node, u: sp.Symbol) -> sp.Expr:
    """d node / d u in readable form: in terms of the node's own value where that is shorter.
    An op's own declared partial (log-sum-exp's softmax, as derive uses) wins over sympy.diff of
    its stable form."""
    shown = _shown(node)
    given = (node.partials or {}).get(u)
    d = given if given is not None else sp.diff(shown, u)
    if isinstance(shown, sigma):
        d = d.subs(shown, node.symbol)
    return sp.factor(sp.together(d)) if d.count_ops() < 40 else d


def _scalar(model: Model, graph: Graph, values) -> list[Section]:
    fwd = Section("Forward pass")
    for n in graph.nodes:
        fwd.lines.append(Line(n.symbol, _shown(n), _fmt(values, n.symbol)))
    active = active_symbols(graph, model.params)
    loc = Section("Local derivatives")
    local: dict[tuple, sp.Expr] = {}
    for n in graph.nodes:
        for u in n.operands:
            if u in active:
                local[(n.symbol, u)] = d = _local(n, u)
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
            chain.lines.append(Line(lhs, product, tex=f"{latex(lhs)} = {latex(fold(product, 2))}"
                                    if len(paths) > 2 else ""))
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
        memo[n.symbol] = _shown(n).xreplace(memo)
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
def _group(node: Node):
    return getattr(node.symbol, "group", None)


def _has_matrix(graph: Graph) -> bool:
    return any(_group(n) is not None and _group(n).shape != (1, 1) for n in graph.nodes)


def _mat(name: str, shape) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, *shape)


def _layer_rules(op: str, out, ins, inputs: set, params: set):
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


def _layers(model: Model, graph: Graph, values) -> list[Section]:
    groups, order = {}, []
    for n in graph.nodes:
        g = _group(n)
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
            fwd.lines.append(Line(n.symbol, _shown(n), _fmt(values, n.symbol)))
            for u in n.operands:
                if u in active:
                    d = _local(n, u)
                    back.lines.append(Line(sp.Derivative(n.symbol, u, evaluate=False), d,
                                           _fmt_expr(values, d)))
            continue
        out = _mat(key, g.shape)
        ins = [_mat(name, shapes.get(name, (1, 1))) for name in g.operands]
        formula, backward = _layer_rules(g.op, out, ins, {b.name for b in model.input_blocks},
                                         {b.name for b in model.param_blocks})
        fwd.lines.append(Line(out, formula if formula is not None else sp.Symbol(g.op),
                              _fmt_group(values, nodes)))
        rules.append(backward)
    for backward in reversed(rules):
        for lhs, rhs in backward:
            back.lines.append(Line(lhs, rhs))
    return [fwd, back]


# ------------------------------------------------------------------ values at a point
def _entry_symbols(model: Model) -> list[sp.Symbol]:
    return [sp.Symbol(e.replace("[", "_{").replace("]", "}")) if "[" in e else sp.Symbol(e)
            for e in model.entries]


def _values_at(model: Model, at: dict) -> dict:
    from .verify import exact_at, exact_steps
    return {"env": exact_steps(model, at), "gradient": exact_at(model, at)}


def _mp_eval(expr: sp.Expr, env: dict):
    from .backends.mpmath import target
    from .codegen import compile_program
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


def _torch_at(model: Model, at: dict) -> dict[str, float]:
    """torch autograd's gradient at the point: the model's native reference if it has one,
    else the model's own program run in torch (float64)."""
    from .backends import torch as tb
    from .verify import VerifyConfig, derive
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
