"""The sides of the kinks one sample reaches, for the certified oracle (``symgrad.oracle``): the
exact pass, then every combination of sides (up to ``MAX_COMBINATIONS``), or beyond that the
structure of the subdifferential: separable in groups of kinks (its hull exact, a Minkowski sum)
or relaxed (an inner hull and a proven ball enclosure of every subgradient), described by
``Sides``.

>>> side_label(("select", "Max", ("w1", "w2")), 1), side_label(("heaviside", "w*x"), -1)
('w2 wins the Max', 'w*x → 0−')
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from flint import arb, fmpq

from .backends import arb as arb_backend
from .compare.kinks import (EXTRA_VERTICES, INTERACTION_BITS, MAX_COMBINATIONS, Sides,
                            class_combos, linked_groups)
from .precise.ladder import double_double


def sample_sides(fn, args):
    """The exact pass, then the passes over the sides of the reached kinks: every combination
    up to ``MAX_COMBINATIONS``, else the base and each single change (then ``_beyond``).
    Returns (outputs, sides' outputs, ``Sides`` or None)."""
    kinks = fn.kinks
    kinks.dirs, kinks.reached, kinks.weights = {}, {}, {}
    outs = [arb_backend._a(o) for o in fn(args)]
    known = {k: set(v) for k, v in kinks.reached.items()}
    if not known:
        return outs, [], None
    for _ in range(4):  # a side can reach new kinks (a Piecewise branch): widen and redo
        keys = sorted(known, key=repr)
        options = [sorted(known[k]) for k in keys]
        enumerate_all = math.prod(len(o) for o in options) <= MAX_COMBINATIONS
        if enumerate_all:
            combos = list(itertools.product(*options))
        else:
            base = tuple(o[0] for o in options)
            combos = [base] + [base[:i] + (c,) + base[i + 1:]
                               for i, o in enumerate(options) for c in o[1:]]
        verts, grew, labels = [], False, []
        kinks.labels = labels
        for combo in combos:
            grew |= _vertex(fn, args, keys, combo, known, verts)
            labels.append(_combo_label(keys, combo, options, enumerate_all))
        if not grew:
            break
    info = None if enumerate_all else _beyond(fn, args, keys, options, verts, labels)
    kinks.dirs, kinks.weights = {}, {}
    return outs, verts, info


def _vertex(fn, args, keys, combo, known, verts) -> bool:
    """One pass with each reached kink on the side ``combo`` gives; True if it reached more."""
    kinks = fn.kinks
    kinks.dirs, kinks.reached, kinks.weights = dict(zip(keys, combo)), {}, {}
    verts.append([arb_backend._a(o) for o in fn(args)])
    grew = False
    for k, v in kinks.reached.items():
        if not v <= known.get(k, set()):
            known.setdefault(k, set()).update(v)
            grew = True
    return grew


def _combo_label(keys, combo, options, enumerate_all: bool) -> str:
    """The side in words; beyond enumeration, the base and what one change moved."""
    if enumerate_all:
        return "; ".join(side_label(k, c) for k, c in zip(keys, combo))
    changed = [(k, c) for k, c, o in zip(keys, combo, options) if c != o[0]]
    first = side_label(keys[0], options[0][0])
    base = (f"each of the {len(keys)} reached kinks from its first side ({first}, ...)")
    if not changed:
        return base
    return "; ".join(side_label(k, c) for k, c in changed) + ", the other kinks from their first side"


def _beyond(fn, args, keys, options, verts, labels) -> Sides:
    """Beyond enumeration: separable in groups of kinks (checked at two random points between
    the sides), or relaxed (more combinations for an inner hull, and a ball enclosure).

    The base (row 0) and each single change are in ``verts``. Kinks whose changes move common
    entries (at the base, or, on a second try, also at the all-last-side base) form a group;
    a group of several kinks is enumerated with the others at the base (up to
    ``MAX_COMBINATIONS``). G is separable when G(h) = base + sum over groups of
    (G(h_group, others at the base) - base): then the hull is the Minkowski sum of each group's
    hull (``symgrad.compare.separable_combination``), exact."""
    unit, r = [], 1
    for o in options:
        unit.append([0] + list(range(r, r + len(o) - 1)))
        r += len(o) - 1
    rng = np.random.default_rng(len(keys))
    known = {k: set(o) for k, o in zip(keys, options)}
    bases = [unit]
    why, grew = "not tried", False
    for attempt in range(2):
        if attempt:  # the all-last-side base and its single changes: links hidden at the first
            last = tuple(o[-1] for o in options)
            first = len(verts)
            grew |= _vertex(fn, args, keys, last, known, verts)
            labels.append(f"each of the {len(keys)} reached kinks from its last side")
            more, r = [], first + 1
            for i, o in enumerate(options):
                more.append([first] + list(range(r, r + len(o) - 1)))
                for c in o[:-1]:
                    grew |= _vertex(fn, args, keys, last[:i] + (c,) + last[i + 1:], known, verts)
                    labels.append(side_label(keys[i], c) + ", the other kinks from their last side")
                r += len(o) - 1
            bases.append(more)
        groups = _groups(verts, bases, len(keys))
        if any(math.prod(len(options[i]) for i in g) > MAX_COMBINATIONS for g in groups):
            why = "a group of interacting kinks has more than {} combinations".format(
                MAX_COMBINATIONS)
            continue
        rows = []
        for g in groups:
            if len(g) == 1:
                rows.append(unit[g[0]])
                continue
            base = tuple(o[0] for o in options)
            rows.append([0])
            for combo in itertools.product(*[options[i] for i in g]):
                full = list(base)
                for i, c in zip(g, combo):
                    full[i] = c
                if tuple(full) == base:
                    continue
                rows[-1].append(len(verts))
                grew |= _vertex(fn, args, keys, tuple(full), known, verts)
                labels.append("; ".join(side_label(keys[i], c) for i, c in zip(g, combo))
                              + ", the other kinks from their first side")
        why = ("a side reaches another kink" if grew else
               _interaction(fn, args, keys, options, verts, groups, rows, rng))
        if why is None:
            return Sides("separable", rows)
    extra = class_combos(_signatures(verts, bases, len(options)), options)
    extra += [tuple(o[int(rng.integers(len(o)))] for o in options)
              for _ in range(EXTRA_VERTICES)]
    for combo in extra:
        _vertex(fn, args, keys, combo, known, verts)
        labels.append(_combo_label(keys, combo, options, False))
    low, high = _enclosure(fn, args, keys, options, len(verts[0]))
    count = math.prod(len(o) for o in options)
    return Sides("relaxed", unit, low, high,
                 f"{len(keys)} reached kinks interact ({why}); {count:.3g} combinations of "
                 f"sides, {len(verts)} evaluated: got lies in the proven enclosure of every "
                 "subgradient but not in the hull of the evaluated sides")


def _signatures(verts, bases, n: int) -> list[tuple]:
    """Per kink, whether its single changes move anything, at each base (balls compared as
    their double-doubles)."""
    return [tuple(any(double_double(a) != double_double(b)
                      for row in rows[i][1:] for a, b in zip(verts[row], verts[rows[i][0]]))
                  for rows in bases) for i in range(n)]


def _groups(verts, bases, n: int) -> list[list[int]]:
    """Kinks linked through an entry that their single changes move (at any base)."""
    return linked_groups(n, ((i, k) for rows in bases for i, rs in enumerate(rows)
                             for row in rs[1:]
                             for k, (a, b) in enumerate(zip(verts[row], verts[rs[0]]))
                             if double_double(a) != double_double(b)))  # equal balls: unmoved


def _fractional(key, opts, rng) -> object:
    """A random local derivative strictly between the sides of one reached kink."""
    if key[0] == "select":
        w = [int(rng.integers(1, 1 << 20)) for _ in opts]
        return {m: arb(fmpq(x, sum(w))) for m, x in zip(opts, w)}
    return arb(fmpq(int(rng.integers(-(1 << 20) + 1, 1 << 20)), 1 << 20))


def _pass(fn, args, dirs: dict, weights: dict) -> tuple[list | None, str | None]:
    """One pass with sides ``dirs`` and local derivatives ``weights``: (outputs, why not)."""
    kinks = fn.kinks
    kinks.dirs, kinks.reached, kinks.weights = dirs, {}, weights
    try:
        return [arb_backend._a(o) for o in fn(args)], None
    except arb_backend.Between:
        return None, "a Piecewise condition has no side in between"
    finally:
        kinks.weights = {}


def _interaction(fn, args, keys, options, verts, groups, rows, rng) -> str | None:
    """None if G at two random points between the sides is the separable prediction: the base
    plus, per group, G with that group between its sides and the others at the base (a lone
    kink: its affine interpolation), to 2^-INTERACTION_BITS of the gradient's scale; else why
    not. G is a polynomial in the local derivatives: one that is not separable differs from the
    prediction at a random point with probability 1."""
    base = verts[0]
    base_dirs = {k: o[0] for k, o in zip(keys, options)}
    scale = max((abs(float(o.mid())) for v in verts for o in v if o.is_finite()), default=0.0)
    tol = arb(2) ** -INTERACTION_BITS * arb(scale)
    for _ in range(2):
        weights = {k: _fractional(k, o, rng) for k, o in zip(keys, options)}
        got, why = _pass(fn, args, {}, weights)
        if got is None:
            return why
        if set(fn.kinks.reached) - set(keys):
            return "a side in between reaches another kink"
        pred = list(base)
        for g, rs in zip(groups, rows):
            if len(g) == 1:
                key, opts = keys[g[0]], options[g[0]]
                w = weights[key]
                for opt, row in zip(opts[1:], rs[1:]):
                    lam = w[opt] if isinstance(w, dict) else (1 + w) / 2
                    pred = [p + lam * (verts[row][k] - base[k]) for k, p in enumerate(pred)]
                continue
            dirs = {k: d for k, d in base_dirs.items() if k not in {keys[i] for i in g}}
            part, why = _pass(fn, args, dirs, {keys[i]: weights[keys[i]] for i in g})
            if part is None:
                return why
            pred = [p + (q - b) for p, q, b in zip(pred, part, base)]
        for col, p in zip(got, pred):
            diff = col - p
            if not diff.is_finite() or not bool(abs(diff) <= tol):
                return "the gradient between the sides is not separable in groups of kinks"
    return None


def _enclosure(fn, args, keys, options, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every output over all local derivatives between the sides at once: one pass with each a
    ball over its range; (-inf, inf) where a branch or domain cannot be decided for a ball."""
    kinks = fn.kinks
    weights = {k: ({m: arb(0.5, 0.5) for m in o} if k[0] == "select" else arb(0, 1))
               for k, o in zip(keys, options)}
    kinks.dirs, kinks.reached, kinks.weights = {}, {}, weights
    low, high = np.full(width, -np.inf), np.full(width, np.inf)
    try:
        outs = [arb_backend._a(o) for o in fn(args)]
    except (arb_backend.Between, arb_backend.Imprecise, ValueError, ZeroDivisionError):
        return low, high
    finally:
        kinks.weights = {}
    for k, o in enumerate(outs):
        if o.is_finite():
            a, b = o.lower(), o.upper()
            lo_, hi_ = float(a), float(b)
            low[k] = lo_ if bool(arb(lo_) <= a) else np.nextafter(lo_, -np.inf)  # outward
            high[k] = hi_ if bool(arb(hi_) >= b) else np.nextafter(hi_, np.inf)
    return low, high


def side_label(key, choice) -> str:
    """``w*x → 0−`` (the left side of that kink) or ``w2 wins the max``."""
    if key[0] == "select":
        return f"{key[2][choice]} wins the {key[1]}"
    return f"{key[1]} → 0{'+' if choice > 0 else '−'}"
