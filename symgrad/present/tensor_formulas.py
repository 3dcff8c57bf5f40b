"""The formulas of a tensor model (``symgrad.tensor``), printed from the tensor program itself:
one line per node in index notation (an einsum as its sum over the contracted indices, a map as
its sympy expression of one entry, a reduction, a lookup), repeated GPT layers folded with ⋮;
the gradient as the textbook rule per op and the first nodes of the derived gradient program.

No scalar lowering is needed (tiny_gpt's lowering takes ~25 s and prints one family per node
type); ``explain`` adds each node's backward rule from these lines (``tensor_derivation``).

>>> import symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
>>> print(model_formulas(m)[1].latex)
v^{(1)}_{i} = \\sum_{j=0}^{2} W_{i,j} x_{j} \\quad (2)
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from .notation import Raw, tex_base
from ..tensor.model import TensorModel
from ..tensor.program import X, Node, topological
from ..tensor.rename import rename
from .formulas import MAX_ADJOINTS, Formula, eq_formula, index_rules_of, mathml_of_tex

MAX_LINES = 80  # node lines shown before the rest is counted
LETTERS = "tjklmnopqrsuvw"  # index letters of a node's axes (einsums keep their own)


class Ref(Raw):
    """An array entry printed verbatim; named by its text so that sympy orders the terms of a
    line the same way in every process (``Raw`` is named by a salted string hash)."""

    def __new__(cls, tex: str, text: str):
        obj = sp.Symbol.__new__(cls, text)
        obj.tex, obj.text = tex, f"\u2009{text}\u2009"  # MathML: thin spaces between factors
        return obj


def _squeeze(node: Node) -> bool:
    """A reshape that only adds or drops size-1 axes: shown under its operand's name."""
    return node.op == "reshape" and tuple(n for n in node.shape if n != 1) == \
        tuple(n for n in node.args[0].shape if n != 1)


def _stack_part(node: Node) -> bool:
    """One term e_i (x) leaf of ``st.stack`` (a unit basis vector times a leaf)."""
    if node.op != "einsum" or not node.attrs["spec"].startswith("k,"):
        return False
    basis, leaf = node.args
    v = basis.attrs.get("value") if basis.op == "const" else None
    return leaf.is_leaf and v is not None and v.ndim == 1 and v.sum() == 1 and \
        set(np.unique(v)) <= {0.0, 1.0}


def stacked_name(node: Node) -> str | None:
    """The reader's name of ``st.stack`` over leaves named alike (``h0_attn_keep0``,
    ``h0_attn_keep1`` -> ``h0_attn_keep``, indexed by its first axis), else None."""
    parts = [node] if _stack_part(node) else list(node.args) if node.op == "map" and \
        node.args and all(_stack_part(a) for a in node.args) else []
    stems = {re.sub(r"\d+$", "", p.args[1].name or "") for p in parts}
    return stems.pop() if len(stems) == 1 and "" not in stems else None


def hidden(node: Node) -> bool:
    """A node shown under another's name, never on a line of its own: a squeeze, a stack of
    leaves and its terms (their basis vectors are symgrad's, not the model's)."""
    return _squeeze(node) or stacked_name(node) is not None or (
        _stack_part(node) and stacked_name(node) is None)


class Names:
    """Display names: leaves by block name, a stack of leaves by their common stem, labelled
    intermediates (``h0.attn``) by label, scalar constants by value, other intermediates
    v^{(k)} in program order."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def _named(self, node: Node) -> str | None:
        while _squeeze(node):
            node = node.args[0]
        if node.op == "const" and node.attrs["value"].shape == ():
            return None
        if node.is_leaf:
            return node.name or "const"
        return stacked_name(node) or node.name or None

    def tex(self, node: Node, idx: str) -> str:
        while _squeeze(node):
            node = node.args[0]
        sub = f"_{{{','.join(idx)}}}" if idx else ""
        if node.op == "const" and node.attrs["value"].shape == ():
            return sp.latex(sp.nsimplify(float(node.attrs["value"])))
        name = self._named(node)
        if name is not None:
            return tex_base(name) + sub
        k = self.ids.setdefault(node.id, len(self.ids) + 1)
        return f"v^{{({k})}}{sub}"

    def text(self, node: Node, idx: str) -> str:
        while _squeeze(node):
            node = node.args[0]
        sub = f"[{','.join(idx)}]" if idx else ""
        if node.op == "const" and node.attrs["value"].shape == ():
            return str(sp.nsimplify(float(node.attrs["value"])))
        name = self._named(node)
        if name is not None:
            return name + sub
        k = str(self.ids.setdefault(node.id, len(self.ids) + 1)).translate(_SUPERSCRIPT)
        return f"v⁽{k}⁾{sub}"

    def raw(self, node: Node, idx: str) -> Raw:
        return Ref(self.tex(node, idx), self.text(node, idx))


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def index_letters(shape, letters: str) -> str:
    """The index letters of an operand's axes, dropping broadcast (size-1) axes."""
    return "".join(c for c, n in zip(letters, shape) if n != 1)


def summed(body: sp.Expr, over) -> sp.Expr:
    """``body`` summed over each (index letter, size) of ``over``, innermost first."""
    for c, n in over:
        body = sp.Sum(body, (sp.Symbol(c), 0, n - 1))
    return body


def _rhs(node: Node, names: Names, out: str):
    """The right-hand side of one entry of ``node`` (a sympy expression of Raw symbols)."""
    a = node.args
    if node.op == "einsum":
        ins, res = node.attrs["spec"].split("->")
        terms = [names.raw(o, index_letters(o.shape, s)) for o, s in zip(a, ins.split(","))]
        body = sp.Mul(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        sizes = {c: n for o, s in zip(a, ins.split(",")) for c, n in zip(s, o.shape)}
        return summed(body, ((c, sizes[c]) for c in dict.fromkeys("".join(ins.split(",")))
                             if c not in res))
    if node.op == "map":
        expr = rename(node.attrs["expr"],  # no Max / Min re-evaluated (tensor.rename)
                      {X[i]: names.raw(o, index_letters(o.shape, out)) for i, o in enumerate(a)})
        ones = {names.raw(o, index_letters(o.shape, out)) for o in a if _is_one(o)}
        if ones and isinstance(expr, sp.Mul):  # a factor 1 (the seed dL/dL) is not shown:
            rest = [f for f in expr.args if f not in ones]  # v = f(z), not v = f(z) 1
            expr = (sp.Mul(*rest, evaluate=False) if len(rest) > 1 else
                    rest[0] if rest else sp.S.One)
        return expr
    if node.op in ("sum", "max"):
        axes = node.attrs["axes"]
        full = free_symbols_of(out, node, a[0])
        arg = names.raw(a[0], full)
        over = ",".join(full[i] for i in axes)
        if node.op == "sum":
            return summed(arg, ((full[i], a[0].shape[i]) for i in axes))
        return Ref(rf"\max_{{{over}}} {names.tex(a[0], full)}", f"max over {over} of "
                   f"{names.text(a[0], full)}")
    if node.op == "stop":
        inner = index_letters(a[0].shape, out)
        return Ref(r"\mathrm{stop\_gradient}(" + names.tex(a[0], inner) + ")",
                   f"stop_gradient({names.text(a[0], inner)})")
    if node.op == "take":
        ids = names.tex(a[1], out[:a[1].ndim])
        rest = out[a[1].ndim:]
        tex = tex_base(a[0].name or "table") + "_{" + ",".join([ids, *rest]) + "}"
        return Ref(tex, f"{a[0].name}[{names.text(a[1], out[:a[1].ndim])},{','.join(rest)}]")
    if node.op == "onehot":
        ids = names.tex(a[0], out[:-1])
        return Ref(rf"[{ids} = {out[-1]}]", f"[{names.text(a[0], out[:-1])} = {out[-1]}]")
    what = {"reshape": f"reshaped to {node.shape}", "transpose":
            f"axes permuted {node.attrs.get('perm')}", "broadcast": f"broadcast to {node.shape}",
            "scatter_add": "rows added by id"}.get(node.op, node.op)
    return Ref(rf"{names.tex(a[0], '')}\ \text{{{what}}}", f"{names.text(a[0], '')} {what}")


def _is_one(node: Node) -> bool:
    """Whether ``node`` (through squeezes) is the scalar constant 1."""
    while _squeeze(node):
        node = node.args[0]
    return (node.op == "const" and node.attrs["value"].shape == ()
            and float(node.attrs["value"]) == 1.0)


def free_symbols_of(out: str, node: Node, arg: Node) -> str:
    """Index letters of a reduction's operand: the output's, a fresh letter per reduced axis."""
    keep = iter(out)
    spare = iter(c for c in "cdefgh" if c not in out)
    return "".join(next(spare) if i in node.attrs["axes"] else next(keep)
                   for i in range(arg.ndim))


def node_line(node: Node, names: Names) -> Formula:
    out = (node.attrs["spec"].split("->")[1] if node.op == "einsum"
           else LETTERS[:node.ndim])
    lhs = names.raw(node, index_letters(node.shape, out))
    try:
        f = eq_formula(lhs, _rhs(node, names, out))
    except Exception:  # noqa: BLE001 - an expression the printers cannot show: its op only
        tex = rf"{lhs.tex} = \text{{{node.op}}}"
        f = Formula(latex=tex, mathml=mathml_of_tex(tex))
    if not node.shape:
        return f
    dims = " × ".join(map(str, node.shape))
    mathml = f.mathml.replace("</math>", f'<mspace width="1em"/><mtext>({dims})</mtext></math>')
    return Formula(f.latex + r" \quad (" + r" \times ".join(map(str, node.shape)) + ")", mathml)


def layer_stage(node: Node, n_layers: int, memo: dict) -> int:
    """-1 before the blocks, l for GPT layer l (its parameters and keep-masks ``h{l}_``),
    n_layers after them (final LayerNorm, head, loss)."""
    if node.id in memo:
        return memo[node.id]
    if node.is_leaf:
        m = re.match(r"h(\d+)_", node.name or "")
        s = int(m.group(1)) if m else (n_layers if node.name in ("lnf_g", "lnf_b", "out_head")
                                       else -1)
    else:
        s = max((layer_stage(a, n_layers, memo) for a in node.args), default=-1)
    memo[node.id] = s
    return s


def signature(node: Node) -> tuple:
    return (node.op, node.shape, str(node.attrs.get("spec", node.attrs.get("expr", ""))),
            tuple(a.op if a.is_leaf else "" for a in node.args))


def layer_groups(model: TensorModel, steps: list[Node]) -> tuple[int, dict[int, list[Node]]]:
    """A GPT's layer count and its ``steps`` grouped by layer stage (0 for a model that is not a
    GPT); the report and explain fold layers 1.. that repeat layer 0 from these groups."""
    cfg = getattr(model, "gpt_config", None)
    n_layers = cfg.n_layers if cfg is not None else 0
    memo: dict = {}
    by_stage: dict[int, list[Node]] = {}
    for n in steps:
        by_stage.setdefault(layer_stage(n, n_layers, memo), []).append(n)
    return n_layers, by_stage


def model_formulas(model: TensorModel) -> list[Formula]:
    """The tensor program, one line per node; a GPT's layers 1.. folded when they repeat
    layer 0's nodes."""
    names = Names()
    steps = [n for n in topological([model.loss]) if not n.is_leaf and not hidden(n)]
    n_layers, by_stage = layer_groups(model, steps)
    n_ops = sum(1 for n in topological([model.loss]) if not n.is_leaf and not _squeeze(n))
    out: list[Formula] = [Formula(note=f"{n_ops} tensor operations ({model.n_nodes} nodes "
                                       "with the leaves); v⁽ᵏ⁾ is the k-th intermediate array, "
                                       "indices t, j, … run over its axes:")]
    shown = 0
    for stage in sorted(by_stage):
        nodes = by_stage[stage]
        if 0 < stage < n_layers and [signature(n) for n in nodes] == \
                [signature(n) for n in by_stage.get(0, [])]:
            for n in nodes:  # number them, so later lines name them consistently
                names.tex(n, "")
            out.append(Formula(note=f"⋮ layer {stage}: the same {len(nodes)} operations as "
                                    f"layer 0, on the h{stage}_ parameters ({names.text(nodes[0], '')}"
                                    f" … {names.text(nodes[-1], '')})"))
            continue
        if n_layers:
            out.append(Formula(note="Before the blocks:" if stage < 0 else
                               f"Layer {stage}:" if stage < n_layers else "After the blocks:"))
        for n in nodes:
            if shown >= MAX_LINES:
                names.tex(n, "")
                continue
            out.append(node_line(n, names))
            shown += 1
    if shown < len(steps) and len(out) and shown >= MAX_LINES:
        out.append(Formula(note=f"… {len(steps) - shown} more operations"))
    model._cache["formula_names"] = names
    return out


def gradient_formulas(model: TensorModel) -> list[tuple[str, list[Formula]]]:
    """(title, formulas): the textbook backward rule of each op the model declares
    (``model.textbook``, rows of ``INDEX_RULES``), then the first nodes of the derived
    gradient program as symgrad runs them."""
    sections = []
    lines = index_rules_of(list(getattr(model, "textbook", ())))
    if lines:
        sections.append(("Textbook form: one rule per op (index notation)", lines))
    names = model._cache.get("formula_names")
    if names is None:
        model_formulas(model)
        names = model._cache["formula_names"]
    grad = model.gradient
    forward = {n.id for n in topological([model.loss])}
    back = [n for n in grad.nodes if n.id not in forward and not n.is_leaf and not hidden(n)]
    note = (f"{len(back)} gradient operations over {len(forward)} forward nodes (reverse "
            "accumulation: one vector-Jacobian rule per node type, sympy.diff of each map, "
            "einsum adjoints by index rearrangement; no Jacobian is formed); the first "
            f"{min(len(back), MAX_ADJOINTS)}:")
    lines = [Formula(note=note)] + [node_line(n, names) for n in back[:MAX_ADJOINTS]]
    sections.append(("As computed (the gradient program symgrad derives and runs)", lines))
    return sections
