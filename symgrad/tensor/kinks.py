"""Kink sites of a tensor program, and the program whose sides can be chosen entry by entry.

A *kink site* is a ``map`` node on the gradient's path (not only under ``stop_gradient``) whose
sympy body holds a kink function - ``Max``, ``Min``, ``Abs``, ``Heaviside``, ``sign``,
``Piecewise`` with relational conditions (relu, clamp, hinge, abs...) - or a ``max`` reduction
on that path. Each kink function (an *atom*) is smooth on each of its *sides*: ``Max(a, b)`` is
``a`` or ``b``, ``Abs(a)`` is ``-a`` or ``a``, ``Heaviside(a)`` 0 or 1, a Piecewise one of its
branches, a max reduction one of its entries. The *sided program* replaces every atom by
``sum_k S_k piece_k``, the selectors ``S_k`` extra inputs of the node's shape (a max reduction:
``sum(x * S)``); with one-hot selectors at the actual side it is the model itself near the
point, with another side's selector its one-sided derivative, with fractional selectors a point
between the sides (a subgradient's local derivative). Its exact gradient is derived once
(``sided``), and the oracle evaluates it with the selectors a side choice sets
(``symgrad.tensor.sides``).

Where the exact argument of an atom is at its kink, or within its own rounding-error bound of it
(``reached``: ``|d| <= allowance(E_d)``, E_d the tensor bound of that argument, in the widest
compared dtype), each such entry is a *key* with its *options* (the sides it may take).

>>> import sympy as sp, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> w = st.param("w", (3,))
>>> m = TensorModel("relu", st.sum_(st.map_(sp.Max(0, st.X[0]), w)))
>>> s = sided(m)
>>> len(s.sites), s.sites[0].atoms[0].kind
(1, 'max')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

import numpy as np
import sympy as sp

from ..compare import Tolerance, allowance
from .bound import evaluate_bound
from .derive import Gradient, gradient
from .interpret import evaluate
from .links import groups as linked_groups, linked_values
from .model import TensorModel
from .program import X, Node, input as leaf_input, map_, sum_, topological

KINK_FUNCTIONS = (sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign, sp.Piecewise)
RELATIONS = {sp.StrictGreaterThan: np.greater, sp.GreaterThan: np.greater_equal,
             sp.StrictLessThan: np.less, sp.LessThan: np.less_equal}
MAX_CONDITIONS = 6  # reached conditions of one Piecewise entry enumerated (2^6 truth values)


@dataclass
class Atom:
    """One kink function of a site's body: its sides' smooth pieces and the expressions (of
    the node's operands) whose values decide the side."""

    kind: str  # "max", "min", "abs", "step", "sign", "piecewise"
    expr: sp.Expr
    pieces: tuple  # one expression per side
    deciders: tuple  # max/min: the members; abs/step/sign: (a,); piecewise: lhs - rhs per cond
    relations: tuple = ()  # piecewise: the numpy comparison of each condition (None: True)
    selectors: tuple = ()  # the selector input nodes, one per piece


@dataclass
class Site:
    """A kink site: a map node (with its atoms) or a max reduction (``atoms`` empty)."""

    node: Node
    atoms: list = field(default_factory=list)
    selector: Node | None = None  # a max reduction's selector, of its operand's shape
    index: np.ndarray | None = None  # max: (out entries, reduced entries) -> operand entry

    @property
    def label(self) -> str:
        return self.node.name or f"{self.node.op} {self.node.attrs.get('expr', '')}".strip()


@dataclass
class Sided:
    """The sided program of a model: its sites, and the exact gradient with selectors
    (derived on first use: only when a sample reaches a kink)."""

    sites: list
    loss: Node
    params: tuple
    _gradient: Gradient | None = None
    _links: list | None = None  # ``symgrad.tensor.links.groups``, on first use

    @property
    def gradient(self) -> Gradient:
        if self._gradient is None:
            self._gradient = Gradient(self.loss, self.params,
                                      tuple(gradient(self.loss, self.params)))
        return self._gradient


def live(loss: Node) -> set[int]:
    """Ids of the nodes with a path to ``loss`` that does not pass through ``stop_gradient``
    (a softmax's max shift and the masked map under it are not on the gradient's path)."""
    out, stack = set(), [loss]
    while stack:
        n = stack.pop()
        if n.id in out:
            continue
        out.add(n.id)
        if n.op not in ("stop", "onehot"):
            stack.extend(n.args)
    return out


def has_sites(model: TensorModel) -> bool:
    """Does the model have a kink site at all? (None: no extra work anywhere.)"""
    on = live(model.loss)
    return any(n.id in on and (n.op == "max" or (n.op == "map" and _atoms(n.attrs["expr"])))
               for n in topological([model.loss]))


def _atoms(expr: sp.Expr) -> list[sp.Expr]:
    """The kink functions of ``expr``, inner ones first (each once)."""
    out: list = []

    def visit(e):
        for a in e.args:
            if isinstance(a, sp.Basic):
                visit(a)
        if isinstance(e, KINK_FUNCTIONS) and e not in out and _supported(e):
            out.append(e)
    visit(expr)
    return out


def _supported(e) -> bool:
    if isinstance(e, sp.Piecewise):
        return all(c == sp.true or type(c) in RELATIONS for _, c in e.args)
    return True


def _atom(e: sp.Expr) -> Atom:
    if isinstance(e, (sp.Max, sp.Min)):
        return Atom("max" if isinstance(e, sp.Max) else "min", e, tuple(e.args), tuple(e.args))
    if isinstance(e, sp.Abs):
        return Atom("abs", e, (-e.args[0], e.args[0]), (e.args[0],))
    if isinstance(e, sp.Heaviside):
        return Atom("step", e, (sp.Integer(0), sp.Integer(1)), (e.args[0],))
    if isinstance(e, sp.sign):
        return Atom("sign", e, (sp.Integer(-1), sp.Integer(1)), (e.args[0],))
    pieces = tuple(v for v, _ in e.args)
    deciders = tuple(sp.Integer(1) if c == sp.true else c.lhs - c.rhs for _, c in e.args)
    relations = tuple(None if c == sp.true else RELATIONS[type(c)] for _, c in e.args)
    return Atom("piecewise", e, pieces, deciders, relations)


def _rewrite(e: sp.Expr, chosen: dict) -> sp.Expr:
    """``e`` with every atom replaced by sum_k S_k piece_k (pieces rewritten too). A Piecewise
    atom takes branch k alone where S_k is exactly 1 (the mix only between sides): its untaken
    branches may be undefined where the model is not (log(w) taken only for w > 1), and
    0 * NaN is NaN."""
    if e in chosen:
        atom, syms = chosen[e]
        pieces = [_rewrite(p, chosen) for p in atom.pieces]
        mix = sp.Add(*[s * p for s, p in zip(syms, pieces)])
        if atom.kind != "piecewise":
            return mix
        return sp.Piecewise(*[(p, sp.Eq(s, 1)) for s, p in zip(syms, pieces)], (mix, True))
    if not e.args or not isinstance(e, sp.Expr):
        return e
    return e.func(*[_rewrite(a, chosen) if isinstance(a, sp.Expr) else a for a in e.args])


def sided(model: TensorModel) -> Sided:
    """The model's sided program (cached on the model)."""
    if "sided" in model._cache:
        return model._cache["sided"]
    on = live(model.loss)
    memo: dict[int, Node] = {}
    sites: list[Site] = []
    for node in topological([model.loss]):
        args = tuple(memo[a.id] for a in node.args)
        new = node if node.is_leaf or args == node.args else Node(
            node.op, args, node.shape, dict(node.attrs), node.name)
        if node.id in on and node.op == "map" and _atoms(node.attrs["expr"]):
            new = _map_site(node, args, sites) or _split(node, args, sites) or new
        elif node.id in on and node.op == "max":
            x = node.args[0]
            axes = node.attrs["axes"]
            sel = leaf_input(f"kink{len(sites)}", x.shape)
            new = sum_(map_(X[0] * X[1], args[0], sel), axes)
            order = np.moveaxis(np.arange(x.size).reshape(x.shape), axes,
                                tuple(range(x.ndim - len(axes), x.ndim)))
            sites.append(Site(node, selector=sel, index=order.reshape(node.size, -1)))
        memo[node.id] = new
    params = tuple(b.node for b in model.param_blocks)
    out = Sided(sites, memo[model.loss.id], params)
    model._cache["sided"] = out
    return out


def _map_site(node: Node, args: tuple, sites: list) -> Node | None:
    """Map ``node`` (of the model) as a site: its body with every atom a mix of its pieces,
    reading ``args`` (the sided operands) and the selectors; None if the operands and
    selectors are more than ``X`` has symbols."""
    found = _atoms(node.attrs["expr"])
    k = len(node.args) + sum(len(_atom(a).pieces) for a in found)
    if k > len(X):
        return None
    site, chosen, syms = Site(node), {}, list(X[len(node.args):k])
    for e in found:
        atom = _atom(e)
        mine = [syms.pop(0) for _ in atom.pieces]
        atom.selectors = tuple(leaf_input(f"kink{len(sites)}_{len(site.atoms)}_{j}", node.shape)
                               for j in range(len(mine)))
        chosen[e] = (atom, mine)
        site.atoms.append(atom)
    body = _rewrite(node.attrs["expr"], chosen)
    sel = [n for a in site.atoms for n in a.selectors]
    sites.append(site)
    return Node("map", args + tuple(sel), node.shape, {"expr": body}, node.name)


def _split(node: Node, args: tuple, sites: list) -> Node | None:
    """A map too wide to be a site (three windows' ``v * Max(0, a, b, c)`` of 12 operands and
    12 pieces): each outermost atom becomes a map of its own operands (a site), which the
    body reads as an operand (the same function, exactly); None where that does not fit
    either (the map keeps its own derivative: no sides)."""
    body = node.attrs["expr"]
    found = _atoms(body)
    outer = [e for e in found if not any(o != e and o.has(e) for o in found)]
    tmp = [sp.Dummy(f"atom{q}") for q in range(len(outer))]
    subs = []
    for e in outer:
        used = sorted(e.free_symbols, key=X.index)
        expr = e.xreplace({v: X[q] for q, v in enumerate(used)})
        model_sub = map_(expr, *[node.args[X.index(v)] for v in used], name=node.name)
        sided_args = map_(expr, *[args[X.index(v)] for v in used]).args
        sub = _map_site(model_sub, sided_args, sites)
        if sub is None:
            return None
        subs.append(sub)
    rest = body.xreplace(dict(zip(outer, tmp)))
    used = [v for v in X if v in rest.free_symbols] + [t for t in tmp if t in rest.free_symbols]
    if len(used) >= len(X):  # a map's derivative reads one symbol more
        return None
    operands = [args[X.index(v)] if v in X else subs[tmp.index(v)] for v in used]
    expr = rest.xreplace({v: X[q] for q, v in enumerate(used)})
    return Node("map", tuple(operands), node.shape, {"expr": expr}, node.name)


class Key(NamedTuple):
    """One reached kink of one sample: ``options``, the sides it may take, of atom ``atom`` of
    site ``site`` at entry ``entry`` (atom -1: a max reduction's output entry, options the
    tied entries); a linked kink (``symgrad.tensor.links``) has options (0, 1), its key
    negative or positive, and ``links``: per member ``(site, atom, entry, picks)``, the
    member's piece per option (the first member is also ``site, atom, entry``)."""

    site: int
    atom: int
    entry: int
    options: tuple
    links: tuple = ()


@dataclass
class Keys:
    """The reached kinks of the compared samples: per sample row, a list of ``Key``, and the
    selectors at every entry's base side (``base[row]``: selector node -> array): the actual
    side, the midpoint of the tied sides at an exact tie of an atom of its own (sympy's
    H(0) = 1/2, as the scalar oracle's exact pass: a backend on any side is a kink accepted,
    and named), one consistent side of a linked kink."""

    rows: dict
    base: dict


def _values(nodes: list, table, leaves: Mapping) -> list[np.ndarray]:
    """Float64 values (hi + lo) of ``nodes`` under the oracle's table, batch axis first."""
    out = []
    for v in evaluate(nodes, table, leaves):
        h, lo = table.to_float64(v)
        out.append(np.asarray(h, np.float64) + np.asarray(lo, np.float64))
    return out


def reached(model: TensorModel, sub: Mapping[str, np.ndarray], table, dtypes, tol: Tolerance
            ) -> Keys:
    """The kinks each compared sample reaches, and every selector at its actual side.

    Arguments:
        model: the tensor model (``sided(model)`` must have sites).
        sub: the compared samples, block name -> (N, *shape).
        table: the oracle's array table (decides which side an argument is on).
        dtypes: the compared backends' dtypes: reach is the widest allowance among them.
        tol: the tolerance (its allowance and bound mode).
    Returns:
        ``Keys``.
    """
    s = sided(model)
    n = max(np.shape(v)[0] for v in sub.values())
    deciders, where, got = [], [], {}  # (site, atom, decider) -> (values, reach), (N, entries)
    for i, site in enumerate(s.sites):
        ops = site.node.args
        if site.selector is not None:
            deciders.append(site.node.args[0])
            where.append((i, -1, 0))
            continue
        for j, atom in enumerate(site.atoms):
            for k, d in enumerate(atom.deciders):
                if d.free_symbols:
                    deciders.append(map_(d, *ops))
                    where.append((i, j, k))
                else:  # a constant member (relu's 0): exact
                    got[(i, j, k)] = (np.full((n, site.node.size), float(d)),
                                      np.zeros((n, site.node.size)))
    leaves = {k: np.asarray(v) for k, v in sub.items()}
    vals = _values(deciders, table, leaves)
    E = evaluate_bound(deciders, leaves, mode=tol.entry_bound, sigmas=tol.entry_sigmas,
                       sqrt_terms=tol.entry_sqrt_terms)
    for q, (w, v, e) in enumerate(zip(where, vals, E)):
        r = np.max([allowance(np.asarray(e, np.float64), d, tol) for d in dtypes], axis=0)
        shape = (n,) + deciders[q].shape
        got[w] = (np.broadcast_to(v, shape).reshape(n, -1),
                  np.nan_to_num(np.broadcast_to(r, shape).reshape(n, -1), nan=np.inf))
    rows: dict[int, list] = {r: [] for r in range(n)}
    base: dict[int, dict] = {r: {} for r in range(n)}
    links = linked_groups(s)
    linked = {(i, j) for g in links for i, j, _, _ in g}
    for i, site in enumerate(s.sites):
        if site.selector is not None:
            _reduction(i, site, *got[(i, -1, 0)], rows, base)
            continue
        for j, atom in enumerate(site.atoms):
            parts = [got[(i, j, k)] for k in range(len(atom.deciders))]
            _map_atom(i, j, site, atom, parts, rows, base, (i, j) not in linked)
    for members in links:
        _linked(s, members, got, rows, base)
    return Keys(rows, base)


def _linked(s: Sided, members: list, got: dict, rows, base) -> None:
    """Atoms that are one kink: where any member is within rounding of it, one key with two
    options (the key negative, positive), every reached member on the side of that sign, the
    others on their actual side; the base takes one consistent side (the sign of the first
    reached member's argument, 0 counted negative), so that where every consistent side agrees
    the oracle's own pass is that value."""
    v, reach = linked_values(s, members, got)
    near = np.abs(v) <= reach
    for row, e in zip(*np.nonzero(near.any(axis=2))):
        who = np.flatnonzero(near[row, e])
        sign = int(v[row, e, who[0]] > 0)
        parts = []
        for m in who:
            i, j, _, picks = members[m]
            for k, node in enumerate(s.sites[i].atoms[j].selectors):
                base[row][node].reshape(-1)[e] = float(k == picks[sign])
            parts.append((i, j, int(e), picks))
        rows[int(row)].append(Key(parts[0][0], parts[0][1], int(e), (0, 1), tuple(parts)))


def _onehot(side: np.ndarray, m: int) -> np.ndarray:
    return (side[..., None] == np.arange(m)).astype(np.float64)


def _reduction(i: int, site: Site, v: np.ndarray, r: np.ndarray, rows, base) -> None:
    """A max reduction: the entries within rounding of the maximum (their own reach and the
    winner's) are its options."""
    x = v[:, site.index]  # (N, out, red)
    reach = r[:, site.index]
    win = np.argmax(x, axis=2)
    top = np.take_along_axis(x, win[..., None], 2)
    near = (top - x) <= reach + np.take_along_axis(reach, win[..., None], 2)
    weight = _midpoint(x == top)  # exact ties: the midpoint of the tied entries; else the winner
    sel = np.zeros(v.shape)
    index = np.broadcast_to(site.index, x.shape)
    for row in range(v.shape[0]):
        sel[row, index[row].reshape(-1)] = weight[row].reshape(-1)
        base[row][site.selector] = sel[row:row + 1].reshape((1,) + site.node.args[0].shape)
    for row, e in zip(*np.nonzero(near.sum(axis=2) > 1)):
        rows[int(row)].append(Key(i, -1, int(e),
                                  tuple(int(k) for k in np.flatnonzero(near[row, e]))))


def _map_atom(i: int, j: int, site: Site, atom: Atom, parts: list, rows, base,
              keys: bool = True) -> None:
    """One atom of a map site: its base side per entry (``Keys``), and (``keys``: not a
    linked atom) the entries whose side rounding (or an exact tie) leaves open."""
    shape = (1,) + site.node.shape
    m = len(atom.pieces)
    tie = None  # exact ties: (N, entries, pieces) of the tied sides (Piecewise: none)
    if atom.kind in ("max", "min"):
        x = np.stack([p[0] for p in parts], axis=2)  # (N, entries, members)
        reach = np.stack([p[1] for p in parts], axis=2)
        sign = 1.0 if atom.kind == "max" else -1.0
        side = np.argmax(sign * x, axis=2)
        top = np.take_along_axis(x, side[..., None], 2)
        near = (sign * (top - x) <= reach + np.take_along_axis(reach, side[..., None], 2))

        def options(r, e):
            return tuple(int(k) for k in np.flatnonzero(near[r, e]))
        open_ = near.sum(axis=2) > 1
        tie = x == top
    elif atom.kind == "piecewise":
        v = np.stack([p[0] for p in parts], axis=2)
        reach = np.stack([p[1] for p in parts], axis=2)
        truth = np.stack([np.ones(v.shape[:2], bool) if rel is None else rel(v[..., k], 0)
                          for k, rel in enumerate(atom.relations)], axis=2)
        side = np.argmax(truth, axis=2)
        close = (np.abs(v) <= reach) & np.array([rel is not None for rel in atom.relations])

        def options(r, e):
            return _branches(truth[r, e], close[r, e])
        open_ = close.any(axis=2)
    else:
        a, reach = parts[0]
        side = (a > 0).astype(int)

        def options(r, e):
            return (0, 1)
        open_ = np.abs(a) <= reach
        tie = np.broadcast_to((a == 0)[..., None], a.shape + (m,))
    hot = _onehot(side, m)
    if tie is not None:
        at = tie.sum(axis=2) > 1
        hot[at] = _midpoint(tie[at])
    for row in range(hot.shape[0]):
        for k, node in enumerate(atom.selectors):
            base[row][node] = np.ascontiguousarray(hot[row, :, k]).reshape(shape)
    if not keys:
        return
    for row, e in zip(*np.nonzero(open_)):  # only the entries near a kink cost a loop
        opts = options(row, e)
        if len(opts) > 1:
            rows[int(row)].append(Key(i, j, int(e), opts))


def _midpoint(tied: np.ndarray) -> np.ndarray:
    """Weights over the last axis: about 1/m on each of the m tied entries, dyadic (20 bits)
    and summing to 1 exactly, so that the sided program's value at a tie is exact (a float
    1/3, three times, is not 1)."""
    m = tied.sum(axis=-1, keepdims=True)
    share = np.floor(2.0**20 / np.maximum(m, 1)) / 2.0**20
    w = np.where(tied, share, 0.0)
    last = tied.shape[-1] - 1 - np.argmax(tied[..., ::-1], axis=-1)[..., None]
    np.put_along_axis(w, last, np.take_along_axis(w, last, -1) + 1.0 - (share * m), -1)
    return np.where(m > 0, w, 0.0)


def _branches(truth: np.ndarray, close: np.ndarray) -> tuple[int, ...]:
    """The branches a Piecewise entry may take when each condition within rounding of its
    boundary may go either way."""
    open_ = np.flatnonzero(close)[:MAX_CONDITIONS]
    found = set()
    for bits in range(1 << len(open_)):
        t = truth.copy()
        for b, c in enumerate(open_):
            t[c] = bool(bits >> b & 1)
        found.add(int(np.argmax(t)) if t.any() else len(t) - 1)
    return tuple(sorted(found))


def oracle_program(model: TensorModel, keys: Keys) -> tuple[list, dict[str, np.ndarray]]:
    """What the oracle evaluates for a model with kink sites: the sided gradient program's
    outputs, and every selector at each sample's actual side, block-like arrays (N, *shape).
    Off a kink it is the model's own derivative; at one, one of its sides (each is judged
    against all of them), and in ball arithmetic no selector is a tie to decide."""
    rows = sorted(keys.base)
    first = keys.base[rows[0]] if rows else {}
    extra = {node.name: np.concatenate([keys.base[r][node] for r in rows]) for node in first}
    return list(sided(model).gradient.outputs), extra
