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
more combinations (the all-last-side base and its single changes, one side per class of kinks as
``symgrad.compare.kinks.class_combos`` picks, random ones) form an inner hull (``"relaxed"``),
one pass in ball arithmetic with every reached selector the ball [0, 1] gives a proven enclosure
of every subgradient (``symgrad.tensor.enclosure``; outside it: a mismatch); a backend's
gradient in the enclosure but outside the hull makes ``rejudge`` evaluate one more combination,
the sides nearest to it (``symgrad.tensor.nearest``: a local search), and what is still between
the two is **inconclusive** with the reason. Sides' rows over ``MAX_SIDE_BYTES``: only the base
and the search, one row at a time; so too for more than ``MAX_KEYS`` reached kinks in one
sample (the search's passes for ``MAX_KEYS`` kinks at most). A kink of a map without sites
(``kinks.unsided``): the entries it reaches are inconclusive. A max reduction's tie between
copies of one entry (``links.distinct``) or between constants of the program
(``constant_ties``: a max-pool's ReLU zeros) is no kink. Atoms
that are one kink (``symgrad.tensor.links``: ``Max(0, z)`` and ``Abs(z)`` of a stable BCE) are
one key whose two options set every member's side consistently. Where every side agrees (a
smooth function written with Abs/Max) the sides' value replaces the oracle's, uncertain. Passes
known together are one walk, stacked on the batch axis (``interpret.evaluate_walks``: bitwise
the rows of a pass each, ``STACK_ENTRIES`` entries at most): every combination; a base and its
single changes; the groups'; both points between the sides; the extra ones. The search's
passes are one at a time.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Mapping

import numpy as np

from ..compare import KinkSides
from ..compare.kinks import (EXTRA_VERTICES, INTERACTION_BITS, MAX_COMBINATIONS, Sides,
                             class_combos, linked_groups, with_interval)
from .constant_ties import constant_ties
from .enclosure import curved, enclosure
from .interpret import evaluate, evaluate_walks
from .kinks import Keys, side_bounds, sided, unsided
from .links import distinct, key_words
from .nearest import searcher
from .rejudging import rejudge  # noqa: F401 - where the pipeline imports it from
from .model import TensorModel
from .program import topological

MAX_KEYS = 256  # reached kinks per sample evaluated side by side; beyond: ``_lean``
MAX_SIDE_BYTES = 1 << 29  # the sides' rows (float64) one sample keeps; beyond: the base and a
LEAN_SWEEPS = 3  # search of this many sweeps over every kink's single changes (``_lean``)
REUSE_UP_TO = 1 << 24  # entries of the sided gradient program (one sample) up to which a row
#                        keeps every value of its reference passes (16 B each in double-double)
REFERENCES = 2  # passes kept per row: the first-side base and the last-side base
STACK_ENTRIES = 1 << 21  # passes a row knows together: one walk, entries x passes up to this


class _Row:
    """One sample's passes: the sided gradient with selectors set per choice of sides."""

    def __init__(self, model: TensorModel, one: Mapping, keys: list, base: dict, table):
        self.s = sided(model)
        self.model, self.one, self.keys, self.base, self.table = model, one, keys, base, table
        self.references: list = []  # (selectors, node id -> value) of remembered passes
        self.size = size = sum(n.size for n in topological(self.s.gradient.outputs))
        self.reuse = size <= REUSE_UP_TO
        self.stack = (max(1, STACK_ENTRIES // max(size, 1))
                      if getattr(table, "per_sample", None) is not None else 1)
        self.ready: dict = {}  # combination -> its row, from a stacked pass (``vertices``)

    def selectors(self, choice: dict) -> dict:
        """Selector node -> its array (1, ...) with key q on the weights ``choice[q]`` (option
        -> weight), the other kinks at their actual side."""
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
        return sel

    def run(self, choice: dict, remember: bool = False) -> np.ndarray:
        """The gradient row (value, then every parameter entry, hi + lo) with the selectors
        of ``choice`` (``selectors``). The pass reuses every value that equals the one of the
        remembered pass whose selectors differ from these in the fewest entries
        (``interpret.evaluate``'s ``reference``: the same bits, computed once); ``remember``
        keeps this pass's values for later ones (up to ``REFERENCES``)."""
        sel = self.selectors(choice)
        leaves = dict(self.one)
        leaves.update({node.name: arr for node, arr in sel.items()})
        kept: dict | None = {} if remember and self.reuse else None
        outs = evaluate(self.s.gradient.outputs, self.table, leaves,
                        reference=self._closest(sel),
                        on_node=None if kept is None else (lambda n, v: kept.__setitem__(n.id, v)))
        if kept is not None:
            self.references = (self.references + [(sel, kept)])[-REFERENCES:]
        return self._rows(outs, 1)[0]

    def runs(self, choices: list, remember: tuple = ()) -> np.ndarray:
        """``run`` of each choice (rows), in passes of up to ``stack`` choices stacked on the
        batch axis (``interpret.evaluate_walks``: bitwise the rows of one pass each); the
        choices at ``remember`` are kept as references (``run``)."""
        out = []
        for s in range(0, len(choices), self.stack):
            part = choices[s:s + self.stack]
            keep = tuple(i - s for i in remember if s <= i < s + len(part))
            if len(part) == 1:
                out.append(self.run(part[0], bool(keep))[None])
                continue
            sels = [self.selectors(c) for c in part]
            walks = [{node.name: arr for node, arr in sel.items()} for sel in sels]
            kept: dict | None = {} if keep and self.reuse else None
            outs = evaluate_walks(
                self.s.gradient.outputs, self.table, self.one, walks,
                reference=self._closest(sels[0]),
                on_node=None if kept is None else (lambda n, v: kept.__setitem__(n.id, v)))
            for i in keep if kept is not None else ():
                one = {k: v if np.shape(v)[0] == 1 else v[i:i + 1] for k, v in kept.items()}
                self.references = (self.references + [(sels[i], one)])[-REFERENCES:]
            out.append(self._rows(outs, len(part)))
        return np.concatenate(out) if out else np.empty((0, 0))

    def _rows(self, outs: list, n: int) -> np.ndarray:
        """The (n, value + parameters) rows, hi + lo, of a pass's outputs."""
        row = []
        for b, v in zip((None,) + self.model.param_blocks, outs):
            h, lo = self.table.to_float64(v)
            shape = (n,) if b is None else (n,) + b.shape
            row.append((np.broadcast_to(np.asarray(h, np.float64), shape)
                        + np.broadcast_to(np.asarray(lo, np.float64), shape)).reshape(n, -1))
        return np.concatenate(row, axis=1)

    def _closest(self, sel: dict) -> dict | None:
        """The values of the remembered pass nearest to selectors ``sel`` (None: none kept)."""
        def apart(ref: dict) -> int:
            return sum(int(np.count_nonzero(ref[node] != arr)) for node, arr in sel.items())
        return min(self.references, key=lambda r: apart(r[0]), default=(None, None))[1]

    def vertex(self, combo: tuple, remember: bool = False) -> np.ndarray:
        """The row of one combination of sides (computed already by ``vertices``, or now)."""
        got = self.ready.get(combo)
        return got if got is not None else self.run(_choice(combo), remember)

    def vertices(self, combos: list, remember: tuple = ()) -> list:
        """``vertex`` of each combination, their passes stacked (``runs``)."""
        self.ready = dict(zip(combos, self.runs([_choice(c) for c in combos], remember)))
        try:
            return [self.vertex(c) for c in combos]
        finally:
            self.ready = {}

    def label(self, combo: tuple, changed_only: bool) -> str:
        parts = []
        for q, c in enumerate(combo):
            key = self.keys[q]
            if changed_only and c == key.options[0]:
                continue
            parts.append(key_words(self.s, key, c))
        if changed_only:
            first = key_words(self.s, self.keys[0], self.keys[0].options[0])
            return ("; ".join(parts) + ", the other kinks from their first side" if parts else
                    f"each of the {len(self.keys)} reached kinks from its first side "
                    f"({first}, ...)")
        return "; ".join(parts)


def _choice(combo: tuple) -> dict:
    return {q: {c: 1.0} for q, c in enumerate(combo)}


def kink_sides(model: TensorModel, sub: Mapping[str, np.ndarray], keys: Keys, table,
               hi: np.ndarray, lo: np.ndarray) -> tuple[KinkSides, np.ndarray, dict]:
    """The sides of every row's reached kinks.

    Arguments:
        model, sub: the model and its compared samples.
        keys: from ``symgrad.tensor.kinks.reached``.
        table: the oracle's array table.
        hi, lo: the oracle's rows (N, K); where every side agrees, set to their value in place.
    Returns:
        (``KinkSides`` over the rows with kinks, an (N, K) mask of uncertain entries, row ->
        why the row's gradient is uncertain).
    """
    vertices, labels, structure, bounds = {}, {}, {}, {}
    uncertain = np.zeros(hi.shape, bool)
    why: dict = {}
    copies: dict = {}  # site -> which entries of its operand are copies of one (``distinct``)
    constants: dict = {}  # site -> the map site its operand copies (``constant_ties``)
    for r, ks in keys.rows.items():
        ks = distinct(sided(model), ks, copies)  # a tie between copies of one entry: no kink
        ks = constant_ties(sided(model), ks, keys.base[r], constants)  # nor of constants
        if not ks:
            continue
        size = _side_rows(ks) * 8.0 * hi.shape[1]  # bytes of the sides' rows
        one = {k: np.asarray(v)[r:r + 1] for k, v in sub.items()}
        row = _Row(model, one, ks, keys.base[r], table)
        V, names, info = (_sides(row, ks) if size <= MAX_SIDE_BYTES and len(ks) <= MAX_KEYS
                          else _lean(row, ks, size))
        vertices[r], labels[r] = V, names
        if info is None and len(V) * row.size <= STACK_ENTRIES:  # every side: each one's bound,
            bounds[r] = functools.cache(functools.partial(  # evaluated only where asked for
                _bounds, model, one, ks, keys, r, table))
        same = np.ptp(V, axis=0) == 0
        if info is not None:
            info = with_interval(info, V)
            structure[r] = info
            if info.kind == "relaxed":
                same &= info.outer_high - info.outer_low <= 0
        for k in np.flatnonzero(same & (V[0] != hi[r] + lo[r])):
            hi[r, k], lo[r, k] = V[0, k], 0.0
            uncertain[r, k] = True
    unsided(model, keys, uncertain, why)  # kinks of a map without sites: no sides, undecided
    return KinkSides(vertices, labels, structure=structure, bounds=bounds), uncertain, why


def _bounds(model: TensorModel, one: Mapping, ks: list, keys: Keys, r: int, table) -> np.ndarray:
    """Every side's own rounding bound (``kinks.side_bounds``) of sample row ``r``, (K,)."""
    row = _Row(model, one, ks, keys.base[r], table)
    combos = itertools.product(*[k.options for k in ks])
    return side_bounds(model, one, [row.selectors(_choice(c)) for c in combos], keys)


def _lean(row: _Row, ks: list, size: float) -> tuple[np.ndarray, list, Sides]:
    """Sides whose rows would take more than ``MAX_SIDE_BYTES``, or of more than ``MAX_KEYS``
    kinks: the base alone and the proven enclosure (a pass each, however many the kinks),
    relaxed; a backend's gradient outside that makes the search walk from the base over every
    kink (``LEAN_SWEEPS`` sweeps of single changes, ``MAX_KEYS`` kinks' worth at most), one
    row at a time."""
    options = [k.options for k in ks]
    base = tuple(o[0] for o in options)
    V = row.vertex(base, remember=True)[None]
    low, high = enclosure(row.model, row.s, row.keys, row.base, row.one)
    passes = LEAN_SWEEPS * min(sum(len(o) - 1 for o in options), MAX_KEYS)
    search = searcher(row.vertex, lambda c: row.label(c, True), options, range(len(ks)),
                      [base], V, passes=passes)
    many = (f"more than {MAX_KEYS} are not evaluated side by side" if len(ks) > MAX_KEYS else
            f"their sides' rows would take {size / 2**30:.3g} GiB, more than "
            f"{MAX_SIDE_BYTES / 2**30:.3g}")
    return V, [row.label(base, True)], Sides(
        "relaxed", [[0]], low, high,
        f"{len(ks)} reached kinks ({many}), so only the base and a search of at most "
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
        V = np.array(row.vertices(combos, remember=(0,)))  # order 2: H(z) H(z) is off the hull
        return V, [row.label(c, False) for c in combos], curved(row, options, combos, V)
    base = tuple(o[0] for o in options)
    combos, unit = [base], []  # the combination of each row of verts
    for q, o in enumerate(options):
        unit.append([0])
        for c in o[1:]:
            unit[-1].append(len(combos))
            combos.append(base[:q] + (c,) + base[q + 1:])
    verts = row.vertices(combos, remember=(0,))
    labels = [row.label(c, True) for c in combos]
    groups = linked_groups(len(unit), ((q, int(k)) for q, rs in enumerate(unit)  # kinks that
                                       for r in rs[1:]  # move a common entry
                                       for k in np.flatnonzero(verts[r] != verts[0])))
    rows, why, more = [], None, []
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
                rows[-1].append(len(combos) + len(more))
                more.append(tuple(combo))
    _add(row, more, verts, labels, combos)
    rng = np.random.default_rng(len(ks))
    if why is None:
        why = _interaction(row, options, verts, groups, rows, rng)
    if why is None:
        return np.array(verts), labels, Sides("separable", rows)
    sig = _signatures(row, options, verts, labels, unit, combos)
    extra = class_combos(sig, options)
    extra += [tuple(o[int(rng.integers(len(o)))] for o in options) for _ in range(EXTRA_VERTICES)]
    _add(row, extra, verts, labels, combos)
    low, high = enclosure(row.model, row.s, row.keys, row.base, row.one)
    active = [q for q, moves in enumerate(sig) if any(moves)]  # the others move nothing
    verts = np.array(verts)  # the rows once (the search starts from them too)
    search = searcher(row.vertex, lambda c: row.label(c, True), options, active, combos, verts)
    count = math.prod(len(o) for o in options)
    return verts, labels, Sides(
        "relaxed", unit, low, high,
        f"{len(ks)} reached kinks interact ({why}); {count:.3g} combinations of sides, "
        f"{len(verts)} evaluated: got lies in the proven enclosure of every subgradient but "
        "not in the hull of the evaluated sides", search=search)


def _add(row: _Row, more: list, verts: list, labels: list, combos: list) -> None:
    """Combinations ``more`` evaluated (stacked), appended to the rows, labels and combos."""
    verts.extend(row.vertices(more))
    labels.extend(row.label(c, True) for c in more)
    combos.extend(more)


def _last_side(options: list) -> list:
    """The all-last-side base, then its single changes (kink by kink, option by option)."""
    last = tuple(o[-1] for o in options)
    return [last] + [last[:q] + (c,) + last[q + 1:]
                     for q, o in enumerate(options) for c in o[:-1]]


def _signatures(row: _Row, options: list, verts: list, labels: list, unit: list,
                combos: list) -> list:
    """The all-last-side base and its single changes (``_last_side``, one stacked pass)
    appended to ``verts`` (their combinations to ``combos``), and per kink whether its single
    changes move anything at the first and at the last base (the classes of
    ``symgrad.compare.kinks.class_combos``: one convention per layer of stacked ReLUs)."""
    lasts = _last_side(options)
    rows = row.vertices(lasts, remember=(0,))
    at = len(verts)
    more, k = [], at + 1
    labels.append(f"each of the {len(options)} reached kinks from its last side")
    for q, o in enumerate(options):
        more.append([at] + list(range(k, k + len(o) - 1)))
        k += len(o) - 1
        labels.extend(key_words(row.s, row.keys[q], c)
                      + ", the other kinks from their last side" for c in o[:-1])
    verts.extend(rows)
    combos.extend(lasts)

    def moved(rows: list) -> bool:
        b = verts[rows[0]]
        return any(bool(np.any((verts[r] != b) & ~(np.isnan(verts[r]) & np.isnan(b))))
                   for r in rows[1:])
    return [tuple(moved(rows[q]) for rows in (unit, more)) for q in range(len(options))]


def _interaction(row: _Row, options: list, verts: list, groups: list, rows: list,
                 rng) -> str | None:
    """None if the gradient at two random points between the sides is the separable
    prediction (the base plus each group's own change) to 2^-INTERACTION_BITS of its scale."""
    base = verts[0]
    tol = 2.0**-INTERACTION_BITS * np.max(np.abs(np.array(verts)[np.isfinite(verts)]), initial=0.0)
    rounds, states = [], []  # both rounds' points drawn first, evaluated in one pass
    for _ in range(2):
        weights = []
        for o in options:
            w = rng.integers(1, 1 << 20, size=len(o)).astype(np.float64)
            weights.append(dict(zip(o, w / w.sum())))
        rounds.append(weights)
        states.append(rng.bit_generator.state)
    choices = [[dict(enumerate(w))] + [{q: w[q] for q in g} for g in groups if len(g) > 1]
               for w in rounds]
    got_all = iter(row.runs(choices[0] + choices[1]))
    for weights, state in zip(rounds, states):
        got, parts = next(got_all), iter([next(got_all) for _ in choices[0][1:]])
        pred = base.copy()
        for g, rs in zip(groups, rows):
            if len(g) == 1:
                q = g[0]
                for opt, r in zip(options[q][1:], rs[1:]):
                    pred = pred + weights[q][opt] * (verts[r] - base)
                continue
            pred = pred + (next(parts) - base)
        with np.errstate(invalid="ignore"):  # inf - inf at an infinite side: NaN, not separable
            if not np.all(np.abs(got - pred) <= tol):
                rng.bit_generator.state = state  # as if the next round had not been drawn
                return "the gradient between the sides is not separable in groups of kinks"
    return None
