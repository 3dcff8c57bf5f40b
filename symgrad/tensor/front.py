"""The sympy front-end: a plain ``sg.Model`` as a tensor program (the mirror of ``lower``).

Each named step of the scalar program becomes one shape-``()`` ``map`` node whose body is the
step's sympy expression of its operands, so sympy stays inside map bodies (and ``sympy.diff`` of
them gives the local derivatives). The blocks become ``param`` / ``input`` leaves of their
shapes and domains; one entry is picked from a block by existing node kinds only:

    float block entry    einsum("i,i->", flat block, constant one-hot)   (exact: x * 1 + 0s)
    integer block entry  einsum("iv,i,v->", onehot(ids), one-hot, 0..V-1) (the id as a float)

Pick nodes carry the user's entry names (``W[0,1]``) and step nodes the step's name. For
readers (``explain``, the report's textbook forms) the front end's own forms travel with the
program: each step's map node carries a ``FrontStep`` in ``attrs["step"]`` (its symbol, the
expression as explanations write it, the ``ops`` call that made it: ``ops.basic.Group``), and each
block leaf its entry symbols in ``attrs["symbols"]`` (row-major); no view of the program reads
them.

Two limits of the tensor program shape the result, both exact rewrites:

- a map reads at most ``MAX_ARGS`` operands (``X`` has 16 symbols and a map's derivative needs
  one more), so a wider step (a long sum, a lookup over many rows) is split into parts
  (``z~1``, ``z~2``...), each a map node;
- a node's gradient adds its users' contributions in one map, so a node read by more than
  ``MAX_ARGS`` others is read through exact copies (a reshape and back), each with at most
  ``MAX_ARGS`` users.

>>> import sympy as sp, symgrad as sg
>>> x, w = sp.symbols("x w")
>>> m = sg.Model("square", (w * x) ** 2, params=[w], inputs={x: sg.Uniform(-1, 1)})
>>> tm = to_program(m)
>>> [b.name for b in tm.blocks], tm.loss.op, tm.loss.shape
(['w', 'x'], 'map', ())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import sympy as sp

from ..errors import SymgradError
from .model import TensorBlock, TensorModel
from .program import X, Node, const, einsum, input, map_, onehot, param, reshape
from .rename import rename

if TYPE_CHECKING:  # sg.Model builds its program here (``Model.as_program``): no import back
    from ..model import Block, Model

MAX_ARGS = 15  # operands of one map (X[0..15]; its VJP map adds the cotangent X[0])


@dataclass(frozen=True)
class FrontStep:
    """One step of a plain model, as its map node carries it (``node.attrs["step"]``).

    ``symbol``: the step's sympy symbol (an ``Intermediate``: its label prints); ``expr``: the
    step as explanations write it (``sigma(z)``, the textbook form in ``textbook_program``),
    over block entry symbols and earlier steps' symbols; ``operands``: the symbols it reads;
    ``kind``: the op's kind (``"linear"``); ``group``: the ``ops`` call on a matrix that made
    it (``symgrad.ops.basic.Group``: op, label, operand names, shape), or None; ``partials``:
    the op's own local derivatives, (operand, d step / d operand in terms of the step's
    symbol) pairs (a softmax's exp(x - lse), tanh's 1 - tanh^2), as frameworks write them."""

    symbol: sp.Symbol
    expr: sp.Expr
    operands: tuple[sp.Symbol, ...]
    kind: str
    group: object | None
    partials: tuple[tuple[sp.Symbol, sp.Expr], ...] = ()


class _Fan:
    """Hands out a node to its users, at most ``MAX_ARGS`` per node: past that, users read an
    exact copy (reshape to (1, ...) and back), itself read at most ``MAX_ARGS`` times."""

    def __init__(self, make: Callable[[], Node]) -> None:
        self.make = make
        self.current: Node | None = None
        self.used = 0

    def get(self) -> Node:
        if self.current is None:
            self.current = self.make()
        elif self.used == MAX_ARGS - 1:  # the last slot goes to the next copy
            x = self.current
            self.current = reshape(reshape(x, (1,) + x.shape), x.shape)
            self.used = 0
        self.used += 1
        return self.current


def _leaf(b: Block) -> Node:
    """The block's param / input leaf with its shape and domain."""
    if b.is_param:
        return param(b.name, b.shape, b.domain)
    return input(b.name, b.shape, b.domain, integer=b.domain.integer)


def _unit(size: int, k: int, name: str) -> Node:
    e = np.zeros(size)
    e[k] = 1.0
    return const(e, name)


def _entry_fans(b: Block, leaf: Node) -> list[_Fan]:
    """One fan per entry of a block (row-major, as ``Block.symbols``)."""
    names = b.entry_names()
    size = len(names)
    if not b.shape and not b.domain.integer:
        shared = _Fan(lambda: leaf)
        return [shared]
    if b.domain.integer:
        low, high = getattr(b.domain, "low", None), getattr(b.domain, "high", None)
        if low is None or high is None or low < 0:
            raise SymgradError(f"to_program: integer input {b.name!r} needs a domain "
                               f"sg.Integers(low >= 0, high), got {b.domain.describe()}")
        V = int(high) + 1
        hot = _Fan(lambda: reshape(onehot(leaf, V), (size, V)) if b.shape
                   else reshape(onehot(leaf, V), (1, V)))
        values = const(np.arange(V, dtype=np.float64), f"{b.name}_values")
        return [_Fan(lambda k=k: einsum("iv,i,v->", hot.get(), _unit(size, k, f"e{k}"),
                                        values, name=names[k])) for k in range(size)]
    flat = _Fan(lambda: leaf if len(b.shape) == 1 else reshape(leaf, (size,)))
    return [_Fan(lambda k=k: einsum("i,i->", flat.get(), _unit(size, k, f"e{k}"),
                                    name=names[k])) for k in range(size)]


class _Builder:
    """Symbols of the scalar program -> fans of tensor nodes; steps -> map nodes."""

    def __init__(self) -> None:
        self.env: dict[sp.Symbol, _Fan] = {}
        self.parts = 0

    def node(self, expr: sp.Expr, label: str) -> Node:
        """``expr`` (over symbols in ``env``) as a map node, split when it is too wide."""
        ops = sorted(expr.free_symbols, key=sp.default_sort_key)
        missing = [s for s in ops if s not in self.env]
        if missing:
            raise SymgradError(f"to_program: step {label!r} reads {missing}, which no block "
                               "or earlier step defines")
        if len(ops) > MAX_ARGS:
            return self.node(self._narrow(expr, label), label)
        if not ops:
            raise SymgradError(f"to_program: step {label!r} is the constant {expr}; a step "
                               "must read a block or an earlier step")
        body = rename(expr, {s: X[i] for i, s in enumerate(ops)})
        return map_(body, *[self.env[s].get() for s in ops], name=label)

    def _part(self, expr: sp.Expr, label: str) -> sp.Symbol:
        """A sub-expression as its own map node, named ``label~k``; its symbol."""
        self.parts += 1
        sym = sp.Dummy(f"{label}~{self.parts}", real=True)
        made = self.node(expr, f"{label}~{self.parts}")
        self.env[sym] = _Fan(lambda: made)
        return sym

    def _narrow(self, expr: sp.Expr, label: str) -> sp.Expr:
        """The same function with fewer free symbols: wide arguments become parts."""
        if isinstance(expr, (sp.Add, sp.Mul, sp.Max, sp.Min)):
            groups: list[list[sp.Expr]] = [[]]
            seen: set = set()
            for a in expr.args:
                syms = a.free_symbols
                if groups[-1] and len(seen | syms) > MAX_ARGS:
                    groups.append([])
                    seen = set()
                groups[-1].append(a)
                seen |= syms
            args = [g[0] if len(g) == 1 and len(g[0].free_symbols) <= 1
                    else self._part(expr.func(*g), label) for g in groups]
            return expr.func(*args, evaluate=False)
        if isinstance(expr, sp.Piecewise):
            pieces = list(expr.args)
            half = max(1, len(pieces) // 2)
            head = [(self._part(e, label) if len(e.free_symbols) > 1 else e, c)
                    for e, c in pieces[:half]]
            rest = sp.Piecewise(*pieces[half:]) if len(pieces) > half + 1 else pieces[half][0]
            return sp.Piecewise(*head, (self._part(rest, label), True))
        args = [self._part(a, label) if len(a.free_symbols) > 1 else a for a in expr.args]
        if all(a is b for a, b in zip(args, expr.args)):
            raise SymgradError(f"to_program: step {label!r} reads {len(expr.free_symbols)} "
                               f"values in one {type(expr).__name__}; at most {MAX_ARGS} fit "
                               "one map node: split the step")
        return expr.func(*args)


def to_program(model: Model, *, name: str | None = None) -> TensorModel:
    """The scalar ``model`` as a tensor program: one map node per step, block leaves.

    Arguments:
        model: an ``sg.Model`` (its executed, stable ``graph`` is translated).
        name: the tensor model's name (default: the model's own, so reports read the same).
    Returns:
        A ``TensorModel`` with the same blocks (names, shapes, domains, order), the same loss
        and the model's ``reference``; verified by ``sg.verify`` through the tensor views.
        Where the scalar program has stable rewrites or textbook (display) forms, its
        ``textbook_program`` is the same function built from those forms, over the same leaves: a
        user's torch_fn is allowed the larger of the two programs' rounding (as the scalar
        pipeline does); symgrad's own backends, the stable program's only. Where it has stable
        rewrites (``symgrad.stable``), ``written_program`` is the formula as written, over the
        same leaves: the oracle evaluates it, so every run checks that the rewrite is the same
        function (a wrong rule fails the value, as on the scalar pipeline).
    """
    leaves = {b.name: _leaf(b) for b in model.blocks}
    for b in model.blocks:  # the entry symbols the steps read (``FrontStep.expr``)
        leaves[b.name].attrs["symbols"] = tuple(model.real[s] for s in b.symbols)
    loss = _program(model, model.graph, leaves)
    out = TensorModel(name or model.name, loss, description=model.description,
                      reference=model.reference,
                      params=[leaves[b.name] for b in model.param_blocks])
    out.rewrites = tuple(model.graph.rewrites)  # named on the report's "as computed" section
    out.layer_names = model.layer_names  # the zoo's layer-numbered names (W1 as W^(1))
    if model.graph.rewrites:  # the oracle's program: the formula as written (checks the rewrite)
        out.written_program = _same_blocks(TensorModel(
            f"{out.name} (as written)", _program(model, model.written_graph, leaves),
            params=[leaves[b.name] for b in model.param_blocks]), model, leaves)
    if bool(model.graph.rewrites) or any(getattr(n.symbol, "display", None) is not None
                                         for n in model.graph.nodes):
        out.textbook_program = _same_blocks(TensorModel(
            f"{out.name} (textbook)", _program(model, model.display_graph, leaves),
            params=[leaves[b.name] for b in model.param_blocks]), model, leaves)
    return _same_blocks(out, model, leaves)


def _program(model: Model, graph, leaves: dict[str, Node]) -> Node:
    """One view of the scalar program (``model.graph``, or ``model.display_graph``: the
    textbook forms) over the block ``leaves``: one map node per step; the loss node."""
    build = _Builder()
    for b in model.blocks:
        fans = _entry_fans(b, leaves[b.name])
        for k, s in enumerate(b.symbols):
            build.env[model.real[s]] = fans[0] if len(fans) == 1 else fans[k]
    loss = None
    for step in graph.nodes:
        loss = build.node(step.expr, step.name)
        shown = getattr(step.symbol, "shown", None)
        loss.attrs["step"] = FrontStep(step.symbol, shown if shown is not None else step.expr,
                                       tuple(step.operands), step.kind,
                                       getattr(step.symbol, "group", None),
                                       tuple((step.partials or {}).items()))
        build.env[step.symbol] = _Fan(lambda made=loss: made)
    return loss


def _same_blocks(out: TensorModel, model: Model, leaves: dict[str, Node]) -> TensorModel:
    """``out`` with the scalar ``model``'s block order (params, then inputs as given): draws
    with the same seed give the same samples; an input the loss does not read is still a block
    (torch_fn takes it)."""
    out.blocks = tuple(TensorBlock(b.name, b.shape, b.domain, b.is_param, leaves[b.name])
                       for b in model.blocks)
    return out
