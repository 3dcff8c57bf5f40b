"""A model undefined on its own declared domains: refused before any backend runs.

Where the oracle proves the loss value undefined (NaN in the exact program: a log or square
root of a negative number, 0/0; ``precise.arbdomain`` proves every NaN it keeps, an unproven one
stays open and is not counted) at a sample drawn from the model's declared domains, the model is
not a function on those domains: no backend can be right or wrong there, and a verdict would
read as a verdict on the gradients ("FAIL" while every line says "not a backend error"). The run
stops with one line (``domains.UndefinedOnDomain``, a ``SymgradError``: the CLI's exit 2, bad
input) naming the first step of the program that is undefined at the first such sample, the
sample, how many samples are undefined, and the declared domains the step's inputs come from.
Points the user chose (``at=``) are not refused: there a "domain" entry says the point is
outside the model's domain.

>>> import sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> w, x = sp.symbols("w x")
>>> m = to_program(sg.Model("logwx", sp.log(w * x), params={w: sg.Uniform(0.5, 2)},
...                         inputs={x: sg.Uniform(-1, 1)}))
>>> values = {"w": np.array([1.5, 1.0]), "x": np.array([0.5, -0.25])}
>>> hi = np.array([[np.log(0.75), 1 / 1.5], [np.nan, 1.0]])
>>> try:
...     refuse_undefined(m, values, hi, {}, drawn=True)
... except sg.SymgradError as e:
...     print(str(e)[:90])
model 'logwx' is undefined on its declared domains: log(w*x) is undefined at sample 1 of 2
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..domains import UndefinedOnDomain
from .interpret import evaluate
from .model import TensorModel
from .program import X, Node, topological
from .tables import oracle_ops


def undefined_rows(hi: np.ndarray, open_: dict) -> list[int]:
    """The samples whose loss value (column 0) the oracle proves undefined: NaN, and not an
    entry the balls left open (``open_``: row -> open columns, ``views.oracle_view``)."""
    return [int(r) for r in np.flatnonzero(np.isnan(hi[:, 0]))
            if 0 not in np.asarray(open_.get(int(r), ()))]


def refuse_undefined(model: TensorModel, values: dict[str, np.ndarray], hi: np.ndarray,
                     open_: dict, *, drawn: bool) -> None:
    """Raise ``UndefinedOnDomain`` where the loss is proven undefined at a drawn sample.

    Arguments:
        model: the tensor model verified.
        values: the compared samples, block name -> (N, *shape), as the oracle had them.
        hi: the oracle's high parts, (N, 1 + parameters), after its limits are filled in.
        open_: row -> the columns the oracle's balls left open (not proven).
        drawn: the samples were drawn from the declared domains (no ``at=``).
    Returns:
        None (nothing undefined, or the points were the user's own).
    """
    rows = undefined_rows(hi, open_) if drawn else []
    if not rows:
        return
    r = rows[0]
    leaves = {b.name: np.asarray(values[b.name])[r:r + 1] for b in model.blocks}
    step, uses = _first_undefined(model, leaves)
    point = ", ".join(f"{k}={_short(v[0])}" for k, v in leaves.items())
    domains = ", ".join(f"{b.name} ~ {b.domain.describe()}" for b in model.blocks
                        if b.name in uses)
    raise UndefinedOnDomain(
        f"model {model.name!r} is undefined on its declared domains: {step} is undefined at "
        f"sample {r} of {hi.shape[0]} ({point}; {len(rows)} of {hi.shape[0]} samples undefined), "
        f"whose values come from {domains}; narrow those domains to where the model is "
        f"defined (or guard the expression there), or verify at chosen points with at= "
        f"(CLI: --at)")


def _first_undefined(model: TensorModel, leaves: dict) -> tuple[str, set[str]]:
    """The first step whose exact value (the oracle's table) is NaN from finite operands, in
    words, and the blocks it reads; the loss itself when none is found."""
    program = model.written_program if model.written_program is not None else model
    table = oracle_ops()
    found: list[Node] = []

    def step(node: Node, args: list, out) -> None:
        if found or node.op != "map":
            return
        if _nan(table, out) and not any(_nan(table, a) for a in args):
            found.append(node)
    with np.errstate(all="ignore"):
        try:
            evaluate([program.loss], table, leaves, on_step=step)
        except (ArithmeticError, ValueError):  # no step located: the loss itself is named
            found.clear()
    node = found[0] if found else program.loss
    uses = {n.name for n in topological([node]) if n.op in ("param", "input")}
    return _words(node), uses


def _nan(table, value) -> bool:
    try:
        return bool(np.isnan(np.asarray(table.to_float64(value)[0], dtype=np.float64)).any())
    except (TypeError, ValueError):
        return False


def _words(node: Node) -> str:
    """A map step as the user wrote it (its ``FrontStep``), else its body over its operands'
    names; any other node by its kind."""
    tag = node.attrs.get("step")
    if tag is not None:
        return _lookup(tag.expr) or str(tag.expr)
    if node.op == "map":
        names = {X[i]: sp.Symbol(a.name or f"x{i}") for i, a in enumerate(node.args)}
        expr = node.attrs["expr"].xreplace(names)
        return _lookup(expr) or str(expr)
    return f"the {node.op} step{f' {node.name}' if node.name else ''}"


def _lookup(expr) -> str | None:
    """A table lookup (a Piecewise of Eq(index, k) rows, NaN otherwise: ``ops.embedding``) in
    words: the index and the rows it has, not the Piecewise.

    >>> i, a, b = sp.symbols("i a b")
    >>> _lookup(sp.Piecewise((a, sp.Eq(i, 0)), (b, sp.Eq(i, 1)), (sp.nan, True)))
    'a lookup by i with no row for the index drawn (rows for i = 0, 1 only)'
    """
    if not isinstance(expr, sp.Piecewise) or expr.args[-1].expr is not sp.nan:
        return None
    conds = [c for _, c in expr.args[:-1]]
    if not conds or not all(isinstance(c, sp.Eq) and c.rhs.is_Integer for c in conds) \
            or len({c.lhs for c in conds}) != 1:
        return None
    index = conds[0].lhs
    return (f"a lookup by {index} with no row for the index drawn (rows for {index} = "
            f"{', '.join(str(c.rhs) for c in conds)} only)")


def _short(v) -> str:
    a = np.asarray(v)
    return f"{float(a):.4g}" if a.size == 1 else f"array of shape {a.shape}"
