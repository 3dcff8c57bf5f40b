"""The sided program of a tensor model: its kink sites, and the program whose sides can be
chosen entry by entry.

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
(``symgrad.tensor.kinks``, ``symgrad.tensor.sides``). A map whose operands and selectors are
more than ``X`` has symbols has its atoms moved into maps of their own (``_split``); a wide
sum (a second-order step's terms) is two maps of half its terms each. A map that fits none of
these is *bare* (``Sided.bare``): its kinks have no sides, and the entries a sample reaching one
of them reaches are inconclusive (``symgrad.tensor.kinks.unsided``), never judged by sympy's
convention at the kink (``Heaviside(0) = 1/2``).

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

import numpy as np
import sympy as sp

from .derive import Gradient, gradient
from .links import canonical
from .model import TensorModel
from .program import X, Node, input as leaf_input, map_, sum_, topological

KINK_FUNCTIONS = (sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign, sp.Piecewise)
RELATIONS = {sp.StrictGreaterThan: np.greater, sp.GreaterThan: np.greater_equal,
             sp.StrictLessThan: np.less, sp.LessThan: np.less_equal}


@dataclass
class Atom:
    """One kink function of a site's body: its sides' smooth pieces and the expressions (of
    the node's operands) whose values decide the side."""

    kind: str  # "max", "min", "abs", "step", "sign", "piecewise"
    expr: sp.Expr
    pieces: tuple  # one expression per side
    deciders: tuple  # max/min: the members; abs/step/sign: (a,); piecewise: lhs - rhs per cond
    relations: tuple = ()  # piecewise: the numpy comparison of each condition (None: True)
    keys: tuple = ()  # piecewise: each condition's (key, orient) (``links.canonical``): one
    #                   key is one kink, its conditions decided by one sign
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
    bare: list = field(default_factory=list)  # maps whose atoms no site holds (``Site``s of
    #   the model's nodes, no selectors): too wide to split; their kinks have no sides
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
    (a softmax's max shift and the masked map under it are not on the gradient's path); a
    user's stop-gradient (``attrs["user"]``) is passed through: its value, which a kink under
    it moves, is read by the gradient (``logp * (r - b).detach()``)."""
    out, stack = set(), [loss]
    while stack:
        n = stack.pop()
        if n.id in out:
            continue
        out.add(n.id)
        if n.op not in ("stop", "onehot") or n.attrs.get("user"):
            stack.extend(n.args)
    return out


def has_sites(model: TensorModel) -> bool:
    """Does the model have a kink site at all? (None: no extra work anywhere.)"""
    on = live(model.loss)
    return any(n.id in on and (n.op == "max" or (n.op == "map" and _atoms(n.attrs["expr"])))
               for n in topological([model.loss]))


def _atoms(expr: sp.Expr) -> list[sp.Expr]:
    """The kink functions of ``expr``, inner ones first (each once)."""
    return list(dict.fromkeys(e for e in sp.postorder_traversal(expr)
                              if isinstance(e, KINK_FUNCTIONS) and _supported(e)))


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
    keys = tuple(canonical(sp.expand(d)) for d in deciders)
    return Atom("piecewise", e, pieces, deciders, relations, keys=keys)


CASES_CAP = 36  # most one-hot leaves a site's body may have (prod of (pieces + 1)); more: split


def _cases(found: list) -> int:
    n = 1
    for e in found:
        n *= len(_atom(e).pieces) + 1
    return n


def _rewrite(e: sp.Expr, chosen: dict) -> sp.Expr:
    """``e`` as a Piecewise over its atoms' one-hot sides: where ``S_k`` is exactly 1 the atom
    is replaced by ``piece_k`` BEFORE sympy differentiates (a constant piece gives a constant:
    ``sqrt(Max(w, 0)) + w`` on the side 0 is ``sqrt(0) + w``, d/dw 1, never inf * 0), and only
    the last branch (fractional selectors, between sides) is the mix ``sum_k S_k piece_k``. Atoms
    nest (outermost first, its pieces may hold inner ones): the branches of one atom are
    Piecewises over the next, within one term of a sum (one factor of a product) only. A side
    where the body is undefined outright (``log(0**2)``: sympy's ``zoo``) is ``_undefined``:
    NaN in value and in every derivative, never a finite slope
    that a selector cancelled out of (``log(S**2 v**2)``'s 2/v). Untaken Piecewise branches
    never reach the taken one (log(w) taken only for w > 1: 0 * NaN would be NaN)."""
    present = [a for a in chosen if e.has(a)]
    if not present:
        return e
    if isinstance(e, sp.Add):  # linear: each term nests only over its own atoms
        return sp.Add(*[_rewrite(t, chosen) for t in e.args])
    if isinstance(e, sp.Mul):  # c * f(atoms): c's derivative times f's value, or c times f's
        kinked = [f for f in e.args if any(f.has(a) for a in present)]
        if len(kinked) == 1:
            rest = [f for f in e.args if f is not kinked[0]]
            return sp.Mul(*rest, _rewrite(kinked[0], chosen))
    if e in chosen and _linear(*chosen[e]):  # a bare relu/abs/step term: the mix is exact
        atom, syms = chosen[e]
        return sp.Add(*[s * p for s, p in zip(syms, atom.pieces)])
    a = next(x for x in present if not any(o != x and o.has(x) for o in present))
    atom, syms = chosen[a]
    branches = []
    for s, p in zip(syms, atom.pieces):
        sub = _rewrite(e.xreplace({a: p}), chosen)
        if sub.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            sub = _undefined(e, s)
        branches.append((sub, sp.Eq(s, 1)))
    mix = sp.Add(*[s * p for s, p in zip(syms, atom.pieces)])
    rest = _rewrite(e.xreplace({a: mix}), chosen)
    if rest.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        rest = _undefined(e, syms[0])
    return sp.Piecewise(*branches, (rest, True))


def _linear(atom: Atom, syms: list) -> bool:
    """Is the bare mix of ``atom`` exact at every one-hot side? Its derivative is
    ``sum_k S_k piece_k'``: with polynomial pieces (relu, abs, step, sign, max of operands) no
    piece's derivative is infinite or NaN, so a 0 selector gives 0, never 0 * inf."""
    ops = sorted(set().union(*[p.free_symbols for p in atom.pieces]) - set(syms), key=str)
    return atom.kind != "piecewise" and all(p.is_polynomial(*ops) for p in atom.pieces)


def _undefined(e: sp.Expr, s: sp.Symbol) -> sp.Expr:
    """NaN wherever ``s`` is 1 (0 * log 0), with a NaN derivative in every symbol of ``e``."""
    nan = (s - 1) * sp.log(s - 1)
    return nan * (1 + sp.Add(*sorted(e.free_symbols - {s}, key=str)))


def sided(model: TensorModel) -> Sided:
    """The model's sided program (cached on the model)."""
    if "sided" in model._cache:
        return model._cache["sided"]
    on = live(model.loss)
    memo: dict[int, Node] = {}
    sites: list[Site] = []
    bare: list[Site] = []
    for node in topological([model.loss]):
        args = tuple(memo[a.id] for a in node.args)
        new = node if node.is_leaf or args == node.args else Node(
            node.op, args, node.shape, dict(node.attrs), node.name)
        if node.id in on and node.op == "map" and _atoms(node.attrs["expr"]):
            site = _map_site(node, args, sites) or _split(node, args, sites, bare)
            if site is None:
                bare.append(_bare(node))
            new = site or new
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
    out = Sided(sites, memo[model.loss.id], params, bare)
    model._cache["sided"] = out
    return out


def _map_site(node: Node, args: tuple, sites: list) -> Node | None:
    """Map ``node`` (of the model) as a site: its body with every atom a mix of its pieces,
    reading ``args`` (the sided operands) and the selectors; None if the operands and
    selectors are more than ``X`` has symbols."""
    found = _atoms(node.attrs["expr"])
    k = len(node.args) + sum(len(_atom(a).pieces) for a in found)
    if k >= len(X) or _cases(found) > CASES_CAP:  # its derivative reads one symbol more
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


def _bare(node: Node) -> Site:
    """A map of the model whose atoms get no sides: its atoms, without selectors."""
    return Site(node, [_atom(e) for e in _atoms(node.attrs["expr"])])


def _split(node: Node, args: tuple, sites: list, bare: list) -> Node | None:
    """A map too wide to be a site (three windows' ``v * Max(0, a, b, c)`` of 12 operands and
    12 pieces; ``Max(|a|, |b|, |c|)``, vector_norm(inf), of 3 * 3 * 3 * 4 one-hot cases): its
    atoms move into maps of their own (``_hoist``), which the body reads as operands (the same
    function, exactly); None where that does not fit either (the map keeps its own
    derivative, without sides: a bare map)."""
    found = _hoist(node.attrs["expr"], node.args, args, node.name, sites, bare, top=True)
    return None if found is None else found[1]


def _outermost(*exprs: sp.Expr) -> list[sp.Expr]:
    """The atoms of ``exprs`` not inside another atom, each once: every atom of the body is
    inside one of them (``Max(a, b)`` both inside a ``Piecewise`` condition and on its own is
    one of them itself)."""
    out: list = []
    for expr in exprs:
        walk = sp.preorder_traversal(expr)
        for e in walk:
            if isinstance(e, KINK_FUNCTIONS) and _supported(e):
                walk.skip()  # the atoms inside it are inside one of them
                if e not in out:
                    out.append(e)
    return out


def _plan(body: sp.Expr) -> tuple[list, list, sp.Expr, list] | None:
    """How ``_hoist`` splits ``body``: the expressions hoisted, their symbols, the body
    reading them, and its symbols in operand order; None where no split fits ``X``."""
    found = _atoms(body)
    for outer in (_outermost(body), [e for e in found
                                     if not any(o != e and o.has(e) for o in found)]):
        if outer == [body]:  # one atom: hoist the outermost atoms of its arguments
            outer = _outermost(*body.args)
            if not outer and isinstance(body, (sp.Max, sp.Min)) and len(body.args) > 2:
                half = len(body.args) // 2
                tmp = [sp.Dummy("half0"), sp.Dummy("half1")]
                return ([type(body)(*body.args[:half]), type(body)(*body.args[half:])], tmp,
                        type(body)(*tmp), tmp)
        tmp = [sp.Dummy(f"atom{q}") for q in range(len(outer))]
        rest = body.xreplace(dict(zip(outer, tmp)))
        used = [v for v in X if v in rest.free_symbols] + [t for t in tmp
                                                          if t in rest.free_symbols]
        if outer and len(used) < len(X):  # a map's derivative reads one symbol more
            return outer, tmp, rest, used
    if isinstance(body, sp.Add):  # a wide sum (a second-order step's terms): two maps of
        #                           half the terms each, terms with the same atoms together
        terms = sorted(body.args, key=lambda t: sorted(map(str, _atoms(t))))
        tmp = [sp.Dummy("terms0"), sp.Dummy("terms1")]
        half = len(terms) // 2
        return [sp.Add(*terms[:half]), sp.Add(*terms[half:])], tmp, tmp[0] + tmp[1], tmp
    return None


def _hoist(body: sp.Expr, margs: tuple, sargs: tuple, name: str, sites: list, bare: list,
           top: bool = False) -> tuple[Node, Node] | None:
    """``map(body)`` of the model's operands ``margs`` and the sided ones ``sargs``, as
    (the model's node, the sided node): a site if its atoms fit one (not at ``top``: the
    caller tried), else each outermost atom a map of its own, hoisted the same way, read as
    an operand - and where the body is one atom, the atoms inside its arguments (``Max(|a|,
    |b|, |c|)``: three ``Abs`` sites, and a ``Max`` site of three members). A tie of the
    outer atom is then a site's tie: its sides are every member's (a k-way tie: k options,
    the hull of k vertices), never sympy's ``Heaviside(0) = 1/2`` for each member. Where the
    atoms outside every other one are too many to be operands, only those inside no other
    are hoisted (an atom also inside one stays in the body, without sides, as it did); None
    where nothing fits (the sites this call added are taken back). A ``Max`` / ``Min`` too
    wide itself (15 members: 30 operands and selectors) is a tree of two halves, each hoisted:
    its sides are still every member's (a tie across the halves takes the outer side and an
    inner one: the same one-hot vertices)."""
    if not top:
        model = map_(body, *margs, name=name)
        if not _atoms(body):  # a half of a wide Max that is one member
            return model, map_(body, *sargs, name=name)
        site = _map_site(model, map_(body, *sargs).args, sites)
        if site is not None:
            return model, site
    plan = _plan(body)
    if plan is None:
        return None
    outer, tmp, rest, used = plan
    before, bare_before, subs = len(sites), len(bare), []
    for e in outer:
        inside = sorted(e.free_symbols, key=X.index)
        sub = _hoist(e.xreplace({v: X[q] for q, v in enumerate(inside)}),
                     tuple(margs[X.index(v)] for v in inside),
                     tuple(sargs[X.index(v)] for v in inside), name, sites, bare)
        if sub is None:
            del sites[before:], bare[bare_before:]
            return None
        subs.append(sub)
    pick = [(margs[X.index(v)], sargs[X.index(v)]) if v in X else subs[tmp.index(v)]
            for v in used]
    expr = rest.xreplace({v: X[q] for q, v in enumerate(used)})
    model = map_(expr, *[m for m, _ in pick], name=name)
    site = _map_site(model, map_(expr, *[s for _, s in pick]).args, sites) if _atoms(
        expr) else None
    if site is None and _atoms(expr):  # an atom inside another one, left in the body
        bare.append(_bare(model))
    return model, site or map_(expr, *[s for _, s in pick], name=name)
