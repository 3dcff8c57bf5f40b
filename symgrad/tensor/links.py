"""Kink atoms that are one kink: linked, so that they take their sides together.

A smooth function written with kink functions - softplus as ``Max(z, 0) + log(1 +
e^-|z|)`` - has atoms (``Max(0, z)``, ``Abs(z)``) whose arguments are one comparison: each is on
the side of the sign of ``z``. Left free, the atoms take their sides independently and the
hull of the sides holds combinations no input reaches (Max on ``z > 0`` with Abs on ``z < 0``),
so a wrong gradient at ``z = 0`` passes. So the atoms of two-sided kinks are keyed by their
argument up to a positive factor and sign, written in the program's nodes (``canonical``): atoms
with one key, within one map body or across maps of one shape reading the same operands, are one
kink with two sides, the sign of the key (``groups``); where every consistent side agrees the
function is smooth there and that side's value is its derivative.

The two-sided atoms: ``Abs``, ``Heaviside``, ``sign`` of ``a`` (key ``a``); ``Max``/``Min``
of two members ``a``, ``b`` (key ``a - b``); a Piecewise of one condition ``lhs op rhs`` and an
otherwise branch (key ``lhs - rhs``). An n-ary Max or a Piecewise of several conditions stays
an atom of its own.

>>> import sympy as sp, symgrad.tensor as st
>>> from symgrad.tensor.kinks import sided
>>> from symgrad.tensor.model import TensorModel
>>> z = st.param("z", (2,))
>>> body = sp.Max(0, st.X[0]) + sp.log(1 + sp.exp(-sp.Abs(st.X[0])))
>>> s = sided(TensorModel("softplus", st.sum_(st.map_(body, z))))
>>> [[(i, j) for i, j, _, _ in g] for g in groups(s)]
[[(0, 0), (0, 1)]]
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from ..entries import entry_name
from .program import X, Node


def canonical(arg: sp.Expr) -> tuple[sp.Expr, int]:
    """``(key, orient)`` with ``arg = orient * c * key``, c > 0: one key for ``arg``, ``-arg``
    and ``2 arg`` (a common factor of a sum taken out too).

    >>> a, b = sp.symbols("a b")
    >>> canonical(b - a), canonical(2 * a - 2 * b)
    ((a - b, -1), (a - b, 1))
    """
    c, rest = arg.as_content_primitive()[1].as_coeff_Mul()
    orient = 1 if c >= 0 else -1
    if rest.could_extract_minus_sign():
        rest, orient = -rest, -orient
    return rest, orient


def operand_symbol(n: Node) -> sp.Symbol:
    """A symbol for an operand's value: reshapes are followed to their source (a reshape is
    its source's entries in order), so two reshapes of one node to one shape are one value."""
    root = n
    while root.op == "reshape":
        root = root.args[0]
    return sp.Symbol(f"n{root.id}_" + "x".join(map(str, n.shape)))


def _decider(atom) -> sp.Expr | None:
    """The argument whose sign decides a two-sided atom, in ``X`` symbols (None: not one)."""
    if atom.kind in ("abs", "step", "sign"):
        return atom.deciders[0]
    if atom.kind in ("max", "min") and len(atom.pieces) == 2:
        return atom.pieces[0] - atom.pieces[1]
    if atom.kind == "piecewise" and len(atom.pieces) == 2 and atom.relations[1] is None \
            and atom.relations[0] is not None:
        return atom.deciders[0]
    return None


def picks(atom) -> tuple[int, int]:
    """The piece a two-sided atom takes where its decider is negative, and where positive."""
    if atom.kind in ("abs", "step", "sign"):
        return (0, 1)
    if atom.kind == "max":
        return (1, 0)
    if atom.kind == "min":
        return (0, 1)
    rel = atom.relations[0]
    return (0 if rel(-1, 0) else 1, 0 if rel(1, 0) else 1)


def link_key(atom, node: Node) -> tuple[tuple, int] | None:
    """``((key, shape), orient)`` of a two-sided atom of map ``node``, its decider written in
    the node's operands; None for an atom of its own, or a decider that is a constant."""
    d = _decider(atom)
    if d is None or not d.free_symbols:
        return None
    subs = {X[k]: operand_symbol(a) for k, a in enumerate(node.args)}
    key, orient = canonical(sp.expand(d.xreplace(subs)))
    return (key, node.shape), orient


def groups(s) -> list[list[tuple]]:
    """The linked atoms of a sided program (``symgrad.tensor.kinks.Sided``), cached on it:
    per group of two or more atoms with one key, ``(site, atom, orient, picks)`` with
    ``picks[0 or 1]`` the atom's piece where the key is negative or positive."""
    if s._links is not None:
        return s._links
    by: dict = {}
    for i, site in enumerate(s.sites):
        for j, atom in enumerate(site.atoms):
            k = link_key(atom, site.node)
            if k is None:
                continue
            p = picks(atom)
            oriented = p if k[1] > 0 else p[::-1]
            by.setdefault(k[0], []).append((i, j, k[1], oriented))
    s._links = [g for g in by.values() if len(g) > 1]
    return s._links


def labels(node: Node) -> tuple[str, ...]:
    """The name of each operand of ``node`` (the user's entry or step name)."""
    return tuple(a.name or f"{a.op}{a.id}" for a in node.args)


def names(node: Node) -> dict:
    """``X[k]`` -> a symbol named as operand k of ``node`` (``labels``)."""
    return {X[k]: sp.Symbol(a) for k, a in enumerate(labels(node))}


# Labels: a kink's words are asked for each option of each reached kink and each vertex of
# its sides (hundreds of times per verify for a few distinct steps), and each asks sympy to
# rebuild the step in its operands' names; both pure functions of their (hashable) keys, kept
# in bounded caches (the distinct steps of the models verified recently; older ones recomputed).
@functools.lru_cache(maxsize=4096)
def _named_key(d: sp.Expr, labels: tuple[str, ...]) -> tuple:
    """``canonical`` of the decider ``d`` with ``X[k]`` named ``labels[k]`` (``names``)."""
    return canonical(sp.expand(d.xreplace({X[k]: sp.Symbol(a) for k, a in enumerate(labels)})))


@functools.lru_cache(maxsize=4096)
def _shown(expr: sp.Expr) -> str:
    """A step's expression in its entries' names, cut to ``SHOWN`` characters."""
    text = str(expr.xreplace({v: sp.Symbol(entry_name(v)) for v in expr.free_symbols
                              if isinstance(v, sp.Symbol)}))
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def side_words(node: Node, atom, piece: int) -> str | None:
    """A two-sided atom's side in words (``w*x → 0−``), in the operands' names; None for an
    atom of its own."""
    d = _decider(atom)
    if d is None or not d.free_symbols:
        return None
    key, orient = _named_key(d, labels(node))
    p = picks(atom)
    negative = (p[0] if orient > 0 else p[1]) == piece
    return f"{key} → 0{'−' if negative else '+'}"


def linked_values(s, members: list, got: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each member's decider in the key's sign and its reach, stacked (N, entries, members);
    ``got``: (site, atom, decider) -> (values, reach), as ``symgrad.tensor.kinks.reached``
    computes them."""
    vals, reach = [], []
    for i, j, orient, _ in members:
        if s.sites[i].atoms[j].kind in ("max", "min"):  # a - b, within both members' reach
            (a, ra), (b, rb) = got[(i, j, 0)], got[(i, j, 1)]
            v, r = a - b, ra + rb
        else:
            v, r = got[(i, j, 0)]
        vals.append(orient * v)
        reach.append(r)
    return np.stack(vals, axis=2), np.stack(reach, axis=2)


EXACT_IDS = 2.0**40  # entries of the selected node up to which its ids stay exact sums


def sources(x: Node) -> np.ndarray | None:
    """Per entry of ``x``, the flat entry of the node it is a copy of (-1: a constant 0), where
    ``x`` only selects entries of one node through reshapes, transposes and einsums with 0/1
    constants (a max-pool's windows, ``symgrad.capture.conv``, edge-replicated: the windows at
    an edge hold one entry two or four times); None where it is not such a selection.

    Proof that an entry is a copy: the path is linear with nonnegative integer weights (sums of
    products of 0s and 1s); evaluated at all ones it gives each entry's total weight, and where
    every total is 0 or 1 an entry is one member taken once (or none); evaluated at the ids
    ``1..n`` (exact integers in float64) it names that member.

    Arguments:
        x: a node (a max reduction's operand).
    Returns:
        An int64 array of ``x.shape``, or None.

    >>> import symgrad.tensor as st
    >>> from symgrad.tensor.program import const, einsum
    >>> v = st.param("v", (3,))
    >>> pad = const(np.array([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]))  # v0 twice
    >>> sources(einsum("j,ij->i", v, pad)).tolist()
    [0, 0, 1, 2]
    >>> sources(einsum("j,ij->i", v, const(np.ones((2, 3))))) is None  # sums: no copies
    True
    """
    found = sources_of(x)
    return None if found is None or found[0] is x else found[1]


def sources_of(x: Node) -> tuple[Node, np.ndarray] | None:
    """``sources`` with the node whose entries they are: (that node, the ids), or None."""
    path, node = [], x
    while True:
        if node.op in ("reshape", "transpose"):
            path.append((node, 0))
        elif node.op == "einsum":
            free = [k for k, a in enumerate(node.args) if a.op != "const"]
            if len(free) != 1 or not all(np.isin(a.attrs["value"], (0.0, 1.0)).all()
                                         for a in node.args if a.op == "const"):
                break
            path.append((node, free[0]))
        else:
            break
        node = node.args[path[-1][1]]
    if node.size >= EXACT_IDS:
        return None
    count = np.ones(node.shape)
    ids = np.arange(1, node.size + 1, dtype=np.float64).reshape(node.shape)
    for n, k in reversed(path):
        count, ids = _select(n, k, count), _select(n, k, ids)
    if not np.isin(count, (0.0, 1.0)).all():
        return None
    return node, ids.astype(np.int64) - 1


def _select(n: Node, k: int, v: np.ndarray) -> np.ndarray:
    """Node ``n`` with operand ``k`` at ``v`` (its other operands constants)."""
    if n.op == "reshape":
        return v.reshape(n.shape)
    if n.op == "transpose":
        return v.transpose(n.attrs["perm"])
    args = [v if i == k else a.attrs["value"] for i, a in enumerate(n.args)]
    return np.einsum(n.attrs["spec"], *args)


def distinct(s, keys: list, cache: dict) -> list:
    """``keys`` with each max reduction's options that are copies of one entry (``sources``)
    kept once, and the keys left with one option dropped: a tie between copies of one value
    is no kink (any split of the derivative between the copies reaches that entry whole).

    Arguments:
        s: the sided program (``symgrad.tensor.kinks.Sided``).
        keys: one sample's reached kinks (``symgrad.tensor.kinks.Key``).
        cache: site -> its operand's ``sources`` (filled here).
    Returns:
        The keys that remain kinks.
    """
    out = []
    for k in keys:
        site = s.sites[k.site]
        if k.atom >= 0 or k.links:
            out.append(k)
            continue
        if k.site not in cache:
            cache[k.site] = sources(site.node.args[0])
        src = cache[k.site]
        if src is None:
            out.append(k)
            continue
        flat, seen, options = src.reshape(-1), set(), []
        for o in k.options:
            who = int(flat[site.index[k.entry, o]])
            if who not in seen:
                seen.add(who)
                options.append(o)
        if len(options) > 1:
            out.append(k._replace(options=tuple(options)))
    return out


SHOWN = 60  # characters of a step's expression a kink's place shows


def place_words(node: Node, entry: int, loss: Node | None = None) -> str:
    """Where a kink is, in the user's terms: a plain model's step by its own expression (the
    step ``to_program`` tags the node with: ``in the loss Abs(w*x)``, ``in h = Max(0, w*x)``;
    not the program's name for an unnamed loss, ``L[0]``), any other node by its name, with
    the entry where it has several (``at h0_att[3]``), an unnamed one by the entry alone.

    >>> from symgrad.tensor.program import map_, param
    >>> w = param("w", (3,))
    >>> place_words(map_(sp.Abs(X[0]), w, name="h"), 2)
    'at h[2]'
    """
    step = node.attrs.get("step")
    if step is None:
        if not node.name:
            return f"at entry {entry}"
        return f"at {node.name}" + (f"[{entry}]" if int(np.prod(node.shape)) > 1 else "")
    expr = _shown(step.expr)
    if loss is not None and node.name == loss.name:
        return f"in the loss {expr}"
    return f"in {step.symbol} = {expr}"


def key_words(s, key, c: int) -> str:
    """Option ``c`` of a reached kink ``key`` (``symgrad.tensor.kinks.Key``) of the sided
    program ``s``, in words: ``w*x → 0−`` in its step (``place_words``), the member that wins
    a max."""
    site, j = s.sites[key.site], key.atom
    where = place_words(site.node, key.entry, s.loss)
    if key.links:  # the first member's piece on that side
        c = key.links[0][3][c]
    if j < 0:
        return f"entry {c} wins the max {where}"
    atom = site.atoms[j]
    two = side_words(site.node, atom, c)
    if two is not None:
        return f"{two} {where}"
    if atom.kind in ("max", "min"):
        return f"{atom.pieces[c].xreplace(names(site.node))} wins the {atom.kind} {where}"
    if atom.kind == "piecewise":
        return f"branch {c} of the Piecewise {where}"
    return f"{atom.deciders[0]} → 0{'+' if c else '−'} {where}"
