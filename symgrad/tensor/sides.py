"""Every side of the kinks a tensor model's compared samples reach, for the one comparer.

For each sample row with reached kinks (``symgrad.tensor.kinks.reached``) the oracle's table
evaluates the sided gradient program with the selectors each combination of sides sets, as the
scalar oracle does (``symgrad.sides``, the same decision rules, the same ``KinkSides`` and
``Sides`` for ``symgrad.compare``): up to ``MAX_COMBINATIONS`` combinations every one; beyond,
the base (each kink on its first side) and each single change, groups of kinks whose changes
move a common entry (each enumerated with the others at the base), and two passes at random
points *between* the sides (fractional selectors) that must equal the base plus each group's own
change to 2^-``INTERACTION_BITS`` of the gradient's scale: then the subgradients are the
Minkowski sum of the groups' hulls (``"separable"``), decided exactly by
``compare.separable_combination``. Otherwise (interacting kinks: stacked ReLU layers at 0) some
more combinations (the all-last-side base and its single changes, one side per class of
kinks as ``symgrad.compare.kinks.class_combos`` picks, random ones) form an inner hull
(``"relaxed"``), one pass in ball arithmetic with every reached selector the ball [0, 1] gives
a proven enclosure of every subgradient (outside it: a mismatch); a backend's gradient in the
enclosure but outside the hull makes ``rejudge`` evaluate one more combination, the sides
nearest to it (``symgrad.tensor.nearest``: a local search), and what is still between the two
is **inconclusive** with the reason. Sides' rows over ``MAX_SIDE_BYTES``: only the base and
the search, one row at a time. More than ``MAX_KEYS`` reached kinks in one sample: that
sample's gradient entries are inconclusive (cost stays proportional). Atoms that are one kink
(``symgrad.tensor.links``: ``Max(0, z)`` and ``Abs(z)`` of a stable BCE) are one key whose two
options set every member's side consistently. Where every side agrees (a smooth function
written with Abs/Max) the sides' value replaces the oracle's, uncertain (as on the scalar side).
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np
from flint import arb

from ..backends.arb import Between, Imprecise
from ..compare import KinkSides
from ..compare.kinks import (EXTRA_VERTICES, INTERACTION_BITS, MAX_COMBINATIONS, Sides,
                             class_combos, linked_groups, with_interval)
from ..errors import SymgradError
from ..precise.arb import ARB_OPS
from .interpret import evaluate
from .kinks import Keys, sided
from .links import distinct, names, side_words
from .nearest import searcher
from .rejudging import rejudge  # noqa: F401 - where the pipeline imports it from
from .model import TensorModel
from .program import topological
from .views import flat_balls

ENCLOSE_UP_TO = 20_000  # parameters: up to here a relaxed sample's subgradients get balls
ENCLOSURE_BITS = 128
MAX_KEYS = 256  # reached kinks per sample evaluated (passes grow with them); beyond: inconclusive
MAX_SIDE_BYTES = 1 << 29  # the sides' rows (float64) one sample keeps; beyond: the base and a
LEAN_SWEEPS = 3  # search of this many sweeps over every kink's single changes (``_lean``)
REUSE_UP_TO = 1 << 24  # entries of the sided gradient program (one sample) up to which a row
#                        keeps every value of its reference passes (16 B each in double-double)
REFERENCES = 2  # passes kept per row: the first-side base and the last-side base


class _Row:
    """One sample's passes: the sided gradient with selectors set per choice of sides."""

    def __init__(self, model: TensorModel, one: Mapping, keys: list, base: dict, table):
        self.s = sided(model)
        self.model, self.one, self.keys, self.base, self.table = model, one, keys, base, table
        self.references: list = []  # (selectors, node id -> value) of remembered passes
        self.reuse = sum(n.size for n in topological(self.s.gradient.outputs)) <= REUSE_UP_TO

    def run(self, choice: dict, remember: bool = False) -> np.ndarray:
        """The gradient row (value, then every parameter entry, hi + lo) with key q on the
        weights ``choice[q]`` (option -> weight), the other kinks at their actual side.
        The pass reuses every value that equals the one of the remembered pass whose
        selectors differ from these in the fewest entries (``interpret.evaluate``'s
        ``reference``: the same bits, computed once); ``remember`` keeps this pass's values
        for later ones (up to ``REFERENCES``)."""
        sel = {node: np.array(arr, dtype=np.float64) for node, arr in self.base.items()}
        for q, weights in choice.items():
            key = self.keys[q]
            site = self.s.sites[key.site]
            if key.links:  # a linked kink: each member on the piece of the key's sign
                for i, j, e, picks in key.links:
                    for k, node in enumerate(self.s.sites[i].atoms[j].selectors):
                        sel[node].reshape(-1)[e] = sum(w for o, w in weights.items()
                                                       if picks[o] == k)
            elif key.atom < 0:
                flat = sel[site.selector].reshape(-1)
                flat[site.index[key.entry]] = 0.0
                for o, w in weights.items():
                    flat[site.index[key.entry, o]] = w
            else:
                for k, node in enumerate(site.atoms[key.atom].selectors):
                    sel[node].reshape(-1)[key.entry] = weights.get(k, 0.0)
        leaves = dict(self.one)
        leaves.update({node.name: arr for node, arr in sel.items()})
        reference = self._closest(sel)
        kept: dict | None = {} if remember and self.reuse else None
        outs = evaluate(self.s.gradient.outputs, self.table, leaves, reference=reference,
                        on_node=None if kept is None else (lambda n, v: kept.__setitem__(n.id, v)))
        if kept is not None:
            self.references = (self.references + [(sel, kept)])[-REFERENCES:]
        row = []
        for b, v in zip((None,) + self.model.param_blocks, outs):
            h, lo = self.table.to_float64(v)
            shape = (1,) if b is None else (1,) + b.shape
            row.append((np.broadcast_to(np.asarray(h, np.float64), shape)
                        + np.broadcast_to(np.asarray(lo, np.float64), shape)).reshape(-1))
        return np.concatenate(row)

    def _closest(self, sel: dict) -> dict | None:
        """The values of the remembered pass nearest to selectors ``sel`` (None: none kept)."""
        def apart(ref: dict) -> int:
            return sum(int(np.count_nonzero(ref[node] != arr)) for node, arr in sel.items())
        return min(self.references, key=lambda r: apart(r[0]), default=(None, None))[1]

    def vertex(self, combo: tuple, remember: bool = False) -> np.ndarray:
        return self.run({q: {c: 1.0} for q, c in enumerate(combo)}, remember)

    def label(self, combo: tuple, changed_only: bool) -> str:
        parts = []
        for q, c in enumerate(combo):
            key = self.keys[q]
            if changed_only and c == key.options[0]:
                continue
            parts.append(_side_words(self.s, key, c))
        if changed_only:
            first = _side_words(self.s, self.keys[0], self.keys[0].options[0])
            return ("; ".join(parts) + ", the other kinks from their first side" if parts else
                    f"each of the {len(self.keys)} reached kinks from its first side "
                    f"({first}, ...)")
        return "; ".join(parts)


def _side_words(s, key, c: int) -> str:
    site, j = s.sites[key.site], key.atom
    where = f"{site.label}[{key.entry}]"
    if key.links:  # the first member's piece on that side
        c = key.links[0][3][c]
    if j < 0:
        return f"entry {c} wins the max at {where}"
    atom = site.atoms[j]
    two = side_words(site.node, atom, c)
    if two is not None:
        return f"{two} at {where}"
    if atom.kind in ("max", "min"):
        return f"{atom.pieces[c].xreplace(names(site.node))} wins the {atom.kind} at {where}"
    if atom.kind == "piecewise":
        return f"branch {c} of the Piecewise at {where}"
    return f"{atom.deciders[0]} → 0{'+' if c else '−'} at {where}"


def kink_sides(model: TensorModel, sub: Mapping[str, np.ndarray], keys: Keys, table,
               hi: np.ndarray, lo: np.ndarray) -> tuple[KinkSides, np.ndarray, dict]:
    """The sides of every row's reached kinks.

    Arguments:
        model, sub: the model and its compared samples.
        keys: from ``symgrad.tensor.kinks.reached``.
        table: the oracle's array table.
        hi, lo: the oracle's rows (N, K); entries where every side agrees are set to the sides'
            value in place (the exact pass took a convention there).
    Returns:
        (``KinkSides`` over the rows with kinks, an (N, K) mask of uncertain entries, row ->
        why the row's gradient is uncertain).
    """
    vertices, labels, structure = {}, {}, {}
    uncertain = np.zeros(hi.shape, bool)
    why: dict = {}
    copies: dict = {}  # site -> which entries of its operand are copies of one (``distinct``)
    for r, ks in keys.rows.items():
        ks = distinct(sided(model), ks, copies)  # a tie between copies of one entry: no kink
        if not ks:
            continue
        size = _side_rows(ks) * 8.0 * hi.shape[1]  # bytes of the sides' rows
        if len(ks) > MAX_KEYS:
            uncertain[r, 1:] = True
            why[r] = (f"{len(ks)} kinks reached in one sample (more than {MAX_KEYS} are not "
                      "evaluated side by side)")
            continue
        one = {k: np.asarray(v)[r:r + 1] for k, v in sub.items()}
        row = _Row(model, one, ks, keys.base[r], table)
        V, names, info = _sides(row, ks) if size <= MAX_SIDE_BYTES else _lean(row, ks, size)
        vertices[r], labels[r] = V, names
        same = np.ptp(V, axis=0) == 0
        if info is not None:
            info = with_interval(info, V)
            structure[r] = info
            if info.kind == "relaxed":
                same &= info.outer_high - info.outer_low <= 0
        for k in np.flatnonzero(same & (V[0] != hi[r] + lo[r])):
            hi[r, k], lo[r, k] = V[0, k], 0.0
            uncertain[r, k] = True
    return KinkSides(vertices, labels, structure=structure), uncertain, why


def _lean(row: _Row, ks: list, size: float) -> tuple[np.ndarray, list, Sides]:
    """Sides whose rows would take more than ``MAX_SIDE_BYTES``: the base alone and the proven
    enclosure, relaxed; a backend's gradient outside that makes the search walk from the base
    over every kink (``LEAN_SWEEPS`` sweeps of single changes at most), one row at a time."""
    options = [k.options for k in ks]
    base = tuple(o[0] for o in options)
    V = row.vertex(base, remember=True)[None]
    low, high = _enclosure(row, V.shape[1])
    passes = LEAN_SWEEPS * sum(len(o) - 1 for o in options)
    search = searcher(row.vertex, lambda c: row.label(c, True), options, range(len(ks)),
                      [base], V, passes=passes)
    return V, [row.label(base, True)], Sides(
        "relaxed", [[0]], low, high,
        f"{len(ks)} reached kinks: their sides' rows would take {size / 2**30:.3g} GiB (more "
        f"than {MAX_SIDE_BYTES / 2**30:.3g}), so only the base and a search of at most "
        f"{passes} single changes were evaluated: got lies in the proven enclosure of every "
        "subgradient but no evaluated side fits it", search=search)


def _side_rows(ks: list) -> int:
    """About how many rows ``_sides`` evaluates and keeps for these kinks."""
    options = [len(k.options) for k in ks]
    if math.prod(options) <= MAX_COMBINATIONS:
        return math.prod(options)
    return 2 * (1 + sum(n - 1 for n in options)) + 16 + EXTRA_VERTICES + MAX_COMBINATIONS


def _sides(row: _Row, ks: list) -> tuple[np.ndarray, list, Sides | None]:
    options = [k.options for k in ks]
    if math.prod(len(o) for o in options) <= MAX_COMBINATIONS:
        combos = list(itertools.product(*options))
        return (np.array([row.vertex(c, remember=i == 0) for i, c in enumerate(combos)]),
                [row.label(c, False) for c in combos], None)
    base = tuple(o[0] for o in options)
    verts, labels, unit = [row.vertex(base, remember=True)], [row.label(base, True)], []
    combos = [base]  # the combination of each row of verts
    for q, o in enumerate(options):
        unit.append([0])
        for c in o[1:]:
            combo = base[:q] + (c,) + base[q + 1:]
            unit[-1].append(len(verts))
            verts.append(row.vertex(combo))
            labels.append(row.label(combo, True))
            combos.append(combo)
    groups = linked_groups(len(unit), ((q, int(k)) for q, rs in enumerate(unit)  # kinks that
                                       for r in rs[1:]  # move a common entry
                                       for k in np.flatnonzero(verts[r] != verts[0])))
    rows, why = [], None
    for g in groups:
        if len(g) == 1:
            rows.append(unit[g[0]])
            continue
        if math.prod(len(options[q]) for q in g) > MAX_COMBINATIONS:
            why = f"a group of interacting kinks has more than {MAX_COMBINATIONS} combinations"
            break
        rows.append([0])
        for part in itertools.product(*[options[q] for q in g]):
            combo = list(base)
            for q, c in zip(g, part):
                combo[q] = c
            if tuple(combo) != base:
                rows[-1].append(len(verts))
                verts.append(row.vertex(tuple(combo)))
                labels.append(row.label(tuple(combo), True))
                combos.append(tuple(combo))
    rng = np.random.default_rng(len(ks))
    if why is None:
        why = _interaction(row, options, verts, groups, rows, rng)
    if why is None:
        return np.array(verts), labels, Sides("separable", rows)
    sig = _signatures(row, options, verts, labels, unit, combos)
    extra = class_combos(sig, options)
    extra += [tuple(o[int(rng.integers(len(o)))] for o in options) for _ in range(EXTRA_VERTICES)]
    for combo in extra:
        verts.append(row.vertex(combo))
        labels.append(row.label(combo, True))
        combos.append(combo)
    low, high = _enclosure(row, len(verts[0]))
    active = [q for q, moves in enumerate(sig) if any(moves)]  # the others move nothing
    verts = np.array(verts)  # the rows once (the search starts from them too)
    search = searcher(row.vertex, lambda c: row.label(c, True), options, active, combos, verts)
    count = math.prod(len(o) for o in options)
    return verts, labels, Sides(
        "relaxed", unit, low, high,
        f"{len(ks)} reached kinks interact ({why}); {count:.3g} combinations of sides, "
        f"{len(verts)} evaluated: got lies in the proven enclosure of every subgradient but "
        "not in the hull of the evaluated sides", search=search)


def _signatures(row: _Row, options: list, verts: list, labels: list, unit: list,
                combos: list) -> list:
    """The all-last-side base and its single changes (appended to ``verts``, their
    combinations to ``combos``), and per kink
    whether its single changes move anything at the first and at the last base (the classes
    of ``symgrad.compare.kinks.class_combos``: one convention per layer of stacked ReLUs)."""
    last = tuple(o[-1] for o in options)
    more = []
    verts.append(row.vertex(last, remember=True))
    labels.append(f"each of the {len(options)} reached kinks from its last side")
    combos.append(last)
    at = len(verts) - 1
    for q, o in enumerate(options):
        more.append([at])
        for c in o[:-1]:
            combo = last[:q] + (c,) + last[q + 1:]
            more[-1].append(len(verts))
            verts.append(row.vertex(combo))
            labels.append(_side_words(row.s, row.keys[q], c)
                          + ", the other kinks from their last side")
            combos.append(combo)

    def moved(rows: list) -> bool:
        b = verts[rows[0]]
        return any(bool(np.any((verts[r] != b) & ~(np.isnan(verts[r]) & np.isnan(b))))
                   for r in rows[1:])
    return [tuple(moved(rows[q]) for rows in (unit, more)) for q in range(len(options))]


def _enclosure(row: _Row, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every gradient entry over all selectors between the sides at once: one pass of the
    sided program in ball arithmetic (``symgrad.precise.arb``) with each reached selector the
    ball [0, 1] (an enclosure of every subgradient, looser than the simplex it stands for);
    (-inf, inf) where it cannot be computed or the model is too large for balls."""
    low, high = np.full(width, -np.inf), np.full(width, np.inf)
    if row.model.n_parameters > ENCLOSE_UP_TO:
        return low, high
    ops = ARB_OPS.at(ENCLOSURE_BITS)
    sel = {node: ops.asarray(arr) for node, arr in row.base.items()}
    whole = arb(0.5, 0.5)
    for i, j, e, opts, links in row.keys:
        site = row.s.sites[i]
        if links:  # each member over both its pieces (wider than the key's two sides)
            for li, lj, le, picks in links:
                for k, node in enumerate(row.s.sites[li].atoms[lj].selectors):
                    sel[node].reshape(-1)[le] = whole if k in picks else arb(0)
        elif j < 0:
            flat = sel[site.selector].reshape(-1)
            flat[site.index[e]] = arb(0)
            for o in opts:
                flat[site.index[e, o]] = whole
        else:
            for k, node in enumerate(site.atoms[j].selectors):
                sel[node].reshape(-1)[e] = whole if k in opts else arb(0)
    leaves = dict(row.one)
    leaves.update({node.name: arr for node, arr in sel.items()})
    try:
        balls = flat_balls(row.model, evaluate(row.s.gradient.outputs, ops, leaves))
    except (ArithmeticError, ValueError, SymgradError, Between, Imprecise):
        return low, high
    hi, lo = ops.to_float64(balls)
    rad = ops.radius(balls)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = hi + lo
        ok = np.isfinite(mid) & np.isfinite(rad)
        low = np.where(ok, np.nextafter(mid - rad, -np.inf), -np.inf)
        high = np.where(ok, np.nextafter(mid + rad, np.inf), np.inf)
    return low, high


def _interaction(row: _Row, options: list, verts: list, groups: list, rows: list,
                 rng) -> str | None:
    """None if the gradient at two random points between the sides is the separable
    prediction (the base plus each group's own change) to 2^-INTERACTION_BITS of its scale."""
    base = verts[0]
    scale = max(float(np.max(np.abs(np.array(verts)[np.isfinite(verts)]), initial=0.0)), 0.0)
    tol = 2.0**-INTERACTION_BITS * scale
    for _ in range(2):
        weights = []
        for o in options:
            w = rng.integers(1, 1 << 20, size=len(o)).astype(np.float64)
            weights.append(dict(zip(o, w / w.sum())))
        got = row.run(dict(enumerate(weights)))
        pred = base.copy()
        for g, rs in zip(groups, rows):
            if len(g) == 1:
                q = g[0]
                for opt, r in zip(options[q][1:], rs[1:]):
                    pred = pred + weights[q][opt] * (verts[r] - base)
                continue
            part = row.run({q: weights[q] for q in g})
            pred = pred + (part - base)
        if not np.all(np.abs(got - pred) <= tol):
            return "the gradient between the sides is not separable in groups of kinks"
    return None
