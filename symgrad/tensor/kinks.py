"""The kinks each compared sample of a tensor model reaches, on its sided program
(``symgrad.tensor.sided``, re-exported here).

Where the exact argument of an atom is at its kink, or within its own rounding-error bound of it
(``reached``: ``|d| <= allowance(E_d)``, E_d the tensor bound of that argument, in the widest
compared dtype; a constant member, its rounding to that dtype), each such entry is a *key*
with its *options* (the sides it may take); atoms that are one kink (``symgrad.tensor.links``)
are one key. A kink of a map without sites (``Sided.bare``) has no sides: the entries a sample
reaching one reaches are inconclusive (``unsided``). A side's own rounding bound
(``side_bounds``) is the allowance of code on that side where the actual side's fails it.

>>> import numpy as np, sympy as sp, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> w = st.param("w", (3,))
>>> m = TensorModel("relu", st.sum_(st.map_(sp.Max(0, st.X[0]), w)))
>>> len(sided(m).sites), float(_midpoint(np.array([True, True, True])).sum())
(1, 1.0)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

import numpy as np
import sympy as sp

from ..compare import Tolerance, allowance, tie_band
from ..domains import round_to
from .bound import evaluate_bound
from .interpret import evaluate
from .links import groups as linked_groups, linked_values, names, place_words
from .model import TensorModel
from .program import map_, topological
from .sided import (KINK_FUNCTIONS, RELATIONS, Atom, Sided, Site, has_sites, live,  # noqa: F401
                    sided)

MIDPOINT_BITS = 40  # an exact tie's base weights (``_midpoint``): multiples of 2^-40


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
    bare: dict = field(default_factory=dict)  # row -> [(bare map, atom, entry)] reached on a
    #   map without sites (``Sided.bare``): no sides, so those entries are inconclusive
    dtypes: tuple = ()  # the compared dtypes and the tolerance the reach was decided with
    tol: Tolerance | None = None  # (each side's own bound: ``side_bounds``)

    def any(self) -> bool:
        """Does some compared sample reach a kink (with sides or without)?"""
        return any(self.rows.values()) or any(self.bare.values())


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
    nb = len(s.sites)  # the bare maps' atoms are (nb + b, atom, decider)
    for i, site in enumerate(s.sites + s.bare):
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
                else:  # a constant member (relu's 0, a clamp's eps): its rounding to a dtype
                    got[(i, j, k)] = (np.full((n, site.node.size), float(d)),
                                      np.full((n, site.node.size), _rounding(d, tuple(dtypes))))
    leaves = {k: np.asarray(v) for k, v in sub.items()}
    vals = _values(deciders, table, leaves)
    E = evaluate_bound(deciders, leaves, mode=tol.entry_bound, sigmas=tol.entry_sigmas,
                       sqrt_terms=tol.entry_sqrt_terms, tie=tie_band(dtypes, tol))
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
    bare: dict[int, list] = {}
    for b, site in enumerate(s.bare):
        for j, atom in enumerate(site.atoms):
            opened = _open(atom, [got[(nb + b, j, k)] for k in range(len(atom.deciders))])
            for row, e in zip(*np.nonzero(opened)):
                bare.setdefault(int(row), []).append((b, j, int(e)))
    return Keys(rows, base, bare, tuple(dtypes), tol)


@functools.lru_cache(maxsize=256)
def _rounding(c: sp.Expr, dtypes: tuple) -> float:
    """How far a constant member lies from its nearest number of the widest compared dtype
    (torch compares a float32 input with float32(1e-6), not 1e-6: one tie)."""
    v = float(c)
    return max(abs(float((c - sp.Rational(float(round_to(np.array([v]), d)[0]))).evalf(30)))
               for d in dtypes)


def _open(atom: Atom, parts: list) -> np.ndarray:
    """(N, entries): where rounding (or an exact tie) leaves an atom's side open, from each
    decider's (values, reach): two members of a max / min within reach of its top, a
    Piecewise condition or a two-sided atom's argument within reach of 0."""
    v = np.stack([p[0] for p in parts], axis=2)
    reach = np.stack([p[1] for p in parts], axis=2)
    with np.errstate(over="ignore", invalid="ignore"):  # as in _map_atom
        if atom.kind in ("max", "min"):
            sign = 1.0 if atom.kind == "max" else -1.0
            top = np.max(sign * v, axis=2, keepdims=True)
            win = np.take_along_axis(reach, np.argmax(sign * v, axis=2)[..., None], 2)
            return (top - sign * v <= reach + win).sum(axis=2) > 1
        live = np.array([rel is not None for rel in atom.relations] or [True])
        return ((np.abs(v) <= reach) & live).any(axis=2)


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
    with np.errstate(over="ignore", invalid="ignore"):  # as in _map_atom
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
        with np.errstate(over="ignore", invalid="ignore"):  # two reaches past float64: inf,
            #  anything is near (right); inf - inf is NaN: not near, as compared unguarded
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
            return _branches(truth[r, e], close[r, e], atom)
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
    if atom.kind != "piecewise":  # an undefined argument (sqrt(x) at x < 0): no side is the
        #                           atom's (argmax takes the NaN member's piece, whose
        #                           derivative in w is 0): NaN selectors make the side NaN
        hot[np.isnan(np.stack([p[0] for p in parts], axis=2)).any(axis=2)] = np.nan
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
    """Weights over the last axis: about 1/m on each of the m tied entries, dyadic
    (``MIDPOINT_BITS``) and summing to 1 exactly, so that the sided program's value at a tie is
    exact (a float 1/3, three times, is not 1; x * S of a float64 x is an integer of at most
    53 + 40 bits in units of 2^-40 ulp(x), and so is every partial sum: exact in a
    double-double's 106). 40 bits, not 20: torch's even split (amax, vector_norm(inf): 1/k
    each) is then within 2^-40 of the base, not 2^-20 (8 to 27 float32 ULPs of symgrad's own
    making, reported as the error of correct code; now 0.3). Not 50: in float64 the even
    split would be "ok" 13 ULPs from the base (0.65 of its allowance) instead of a kink
    judged by its sides."""
    m = tied.sum(axis=-1, keepdims=True)
    share = np.floor(2.0**MIDPOINT_BITS / np.maximum(m, 1)) / 2.0**MIDPOINT_BITS
    w = np.where(tied, share, 0.0)
    last = tied.shape[-1] - 1 - np.argmax(tied[..., ::-1], axis=-1)[..., None]
    np.put_along_axis(w, last, np.take_along_axis(w, last, -1) + 1.0 - (share * m), -1)
    return np.where(m > 0, w, 0.0)


def _branches(truth: np.ndarray, close: np.ndarray, atom: Atom) -> tuple[int, ...]:
    """The branches a Piecewise entry may take when each condition within rounding of its
    boundary may go either way: the conditions of one key (``w > 0``,
    ``w >= 0``, ``-w < 0``) take one sign together, those of different keys independently.
    Branch k is reachable when some sign per key makes condition k true and every earlier one
    false (the last branch also when every condition may be false); exact, for any number of
    open conditions."""
    n = len(truth)
    by: dict = {}
    for c in np.flatnonzero(close):
        by.setdefault(atom.keys[c][0], []).append(int(c))

    def value(c: int, s: int) -> bool:  # condition c with its key of sign s
        return bool(atom.relations[c](atom.keys[c][1] * s, 0))

    def possible(want: dict) -> bool:  # condition -> truth wanted, for some signs of the keys
        fixed = all(bool(truth[c]) == w for c, w in want.items() if not close[c])
        return fixed and all(any(all(value(c, s) == want[c] for c in cs if c in want)
                                 for s in (-1, 1)) for cs in by.values())
    found = [k for k in range(n) if possible({**{c: False for c in range(k)}, k: True})]
    if possible({c: False for c in range(n)}):
        found.append(n - 1)
    return tuple(sorted(set(found)))


def oracle_program(model: TensorModel, keys: Keys) -> tuple[list, dict[str, np.ndarray]]:
    """What the oracle evaluates for a model with kink sites: the sided gradient program's
    outputs, and every selector at each sample's actual side, block-like arrays (N, *shape).
    Off a kink it is the model's own derivative; at one, one of its sides (each is judged
    against all of them), and in ball arithmetic no selector is a tie to decide."""
    rows = sorted(keys.base)
    first = keys.base[rows[0]] if rows else {}
    extra = {node.name: np.concatenate([keys.base[r][node] for r in rows]) for node in first}
    return list(sided(model).gradient.outputs), extra


JUMPS = ("step", "sign", "piecewise")  # atoms whose value may jump: every entry reads them


def unsided(model: TensorModel, keys: Keys, uncertain: np.ndarray, why: dict) -> None:
    """The fallback where a sample reaches a kink of a map without sites (``Sided.bare``): no
    side of it is evaluated, so no entry it reaches can be judged - they are marked uncertain
    (inconclusive, never ok and never a failure) in place, with the reason in ``why[row]``.
    A max / min / abs is continuous: it reaches the gradient of the parameters it reads; a
    step, sign or Piecewise may jump: every entry, the value too.

    Arguments:
        model: the tensor model.
        keys: from ``reached`` (``keys.bare``).
        uncertain: the (N, K) mask of uncertain entries (value, then every parameter entry).
        why: row -> reason, added to.
    """
    s = sided(model)
    spans, a = [], 1
    for b in model.param_blocks:
        size = int(np.prod(b.shape, dtype=np.int64))
        spans.append((b.node, a, a + size))
        a += size
    for row, hits in keys.bare.items():
        for b, j, e in hits:
            site = s.bare[b]
            if site.atoms[j].kind in JUMPS:
                uncertain[row, :] = True
            else:
                read = {n.id for n in topological([site.node])}
                for node, lo, hi in spans:
                    if node.id in read:
                        uncertain[row, lo:hi] = True
        b, j, e = hits[0]
        node = s.bare[b].node
        expr = str(s.bare[b].atoms[j].expr.xreplace(names(node)))
        expr = expr if len(expr) <= 60 else expr[:57] + "..."
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        why[row] = (f"at a kink with no sides: {expr} {place_words(node, e, s.loss)} is "
                    f"within rounding of its kink{more}, in a step too wide to split into kink "
                    "sites")


def side_bounds(model: TensorModel, one: Mapping, selectors: list, keys: Keys) -> np.ndarray:
    """The largest rounding-error bound E of the sided gradient program over some sides of one
    sample: the allowance of correct code on any of them. The run's E is the bound at the
    actual side; a side whose terms are far larger (torch's gaussian_nll_loss at var = float32
    of its eps: the clamp not taken, d/dvar 1e12 where the actual side's is 0) rounds by far
    more, and such code is correct.

    Arguments:
        model: the tensor model.
        one: the sample's blocks, (1, *shape) each.
        selectors: per side, selector node -> its (1, *shape) array (``_Row.selectors``).
        keys: from ``reached`` (its dtypes and tolerance).
    Returns:
        (K,) float64: value, then every parameter entry, the maximum over the sides.
    """
    s, m, tol = sided(model), len(selectors), keys.tol or Tolerance()
    leaves = {k: np.repeat(np.asarray(v), m, axis=0) for k, v in one.items()}
    for node in selectors[0]:
        leaves[node.name] = np.concatenate([sel[node] for sel in selectors])
    E = evaluate_bound(s.gradient.outputs, leaves, mode=tol.entry_bound, sigmas=tol.entry_sigmas,
                       sqrt_terms=tol.entry_sqrt_terms, tie=tie_band(keys.dtypes, tol))
    rows = [np.broadcast_to(np.asarray(e, np.float64), (m,) + o.shape).reshape(m, -1)
            for e, o in zip(E, s.gradient.outputs)]
    return np.nan_to_num(np.concatenate(rows, axis=1), nan=np.inf).max(axis=0)
