"""The combination of kink sides nearest to a backend's gradient, found by a local search.

Where a sample reaches many interacting kinks (train-mode BatchNorm couples every entry of a
channel, so one ReLU at 0 in the last stage moves ~all 40,000 gradient entries of a width-4
ResNet-18), the combinations of sides are far too many to enumerate (2^19 and more) and a
backend's gradient, which took *one* side per kink (its own float32 forward's), lies at a
vertex the relaxed inner hull (``symgrad.tensor.sides``) has not evaluated. ``nearest`` looks
for that vertex: from the evaluated combination that fits ``got`` best, it changes one kink's
side at a time and keeps a change that fits better (fewer entries outside their allowance,
then less total excess), until none does, ``got`` fits, or the pass budget is spent.

Sound by construction: every combination it evaluates is one of the sides the relaxed hull
accepts (the exact sided gradient with each reached kink on one of its sides), whichever way it
was picked; the search only chooses *which* vertices are evaluated. It never makes an entry
outside the proven enclosure acceptable, and where it finds no fitting vertex the entries stay
inconclusive.

>>> import numpy as np
>>> def run(combo):  # two interacting kinks: the gradient is (a, b, a * b)
...     a, b = combo
...     return np.array([a, b, a * b], float)
>>> got, allow = np.array([1.0, 1.0, 1.0]), np.full(3, 1e-9)
>>> combo, V, passes = nearest(run, [(0, 1), (0, 1)], [0, 1], [((0, 0), run((0, 0)))], got,
...                            allow)
>>> combo, passes
((1, 1), 2)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from ..compare import KinkSides
from ..compare.kinks import with_interval

SEARCH_PASSES = 160  # sided-gradient passes one search may take (per row and backend)


def misfit(V: np.ndarray, got: np.ndarray, allow: np.ndarray) -> tuple[int, float]:
    """How far ``got`` is from vertex ``V``: (entries outside their allowance, their summed
    excess over the allowance, in units of it). Non-finite entries are left out.

    >>> misfit(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]), np.full(3, 0.25))
    (1, 1.0)
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        keep = np.isfinite(V) & np.isfinite(got) & np.isfinite(allow)
        over = np.abs(V - got) - allow
        out = keep & (over > 0)
        excess = over[out] / np.maximum(allow[out], np.finfo(np.float64).tiny)
    return int(out.sum()), float(np.sum(excess))


def nearest(run: Callable[[tuple], np.ndarray], options: Sequence[tuple], active: Sequence[int],
            starts: Sequence[tuple], got: np.ndarray, allow: np.ndarray, *,
            passes: int = SEARCH_PASSES) -> tuple[tuple, np.ndarray, int]:
    """The combination of sides whose exact gradient fits ``got`` best, by local search.

    Arguments:
        run: a combination (one option per kink) -> the exact gradient row at those sides.
        options: each kink's sides.
        active: the kinks whose side may change (those whose change moves an entry).
        starts: (combination, its row) pairs already evaluated: the best-fitting one is the
            start.
        got, allow: the backend's row and each entry's absolute allowance.
        passes: the most ``run`` calls.
    Returns:
        (the best combination found, its gradient row, the ``run`` calls taken).
    """
    if not starts:
        raise ValueError("nearest: starts is empty (give at least one combination of sides)")
    taken = 0
    best, best_v, best_fit = None, None, None
    for s, v in starts:
        fit = misfit(v, got, allow)
        if best_fit is None or fit < best_fit:
            best, best_v, best_fit = tuple(s), v, fit
    improved = True
    while improved and best_fit[0] > 0 and taken < passes:
        improved = False
        for q in active:
            for c in options[q]:
                if c == best[q] or taken >= passes:
                    continue
                combo = best[:q] + (c,) + best[q + 1:]
                v = run(combo)
                taken += 1
                fit = misfit(v, got, allow)
                if fit < best_fit:
                    best, best_v, best_fit, improved = combo, v, fit, True
                    break
            if best_fit[0] == 0 or taken >= passes:
                break
    return best, best_v, taken


def searcher(vertex: Callable[[tuple], np.ndarray], label: Callable[[tuple], str],
             options: Sequence[tuple], active: Sequence[int], combos: Sequence[tuple],
             verts: Sequence[np.ndarray], *, passes: int = SEARCH_PASSES
             ) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """A relaxed row's ``Sides.search``: (got, allowance) -> (the exact row of the sides
    nearest to got, their label), starting from the evaluated ``combos`` (rows ``verts``).

    Arguments:
        vertex, label: a combination -> its exact row, its words (``tensor.sides._Row``).
        options, active: as ``nearest``.
        combos, verts: the combinations evaluated so far and their rows.
        passes: the most passes one search takes.
    Returns:
        The search.
    """
    starts = list(zip(combos, verts))

    def search(got: np.ndarray, allow: np.ndarray) -> tuple[np.ndarray, str]:
        combo, v, taken = nearest(vertex, options, active, starts, got, allow, passes=passes)
        return v, (f"the sides nearest to this backend's gradient ({taken} passes of a local "
                   f"search): {label(combo) or 'every kink on its first side'}")
    return search


def with_nearest(sides: KinkSides, rows: Sequence[int], got: np.ndarray,
                 allow: np.ndarray) -> KinkSides | None:
    """``sides`` with one more vertex on each relaxed row of ``rows`` that has a search: the
    sides nearest to that row of ``got`` (``Sides.search``); None where no row has one.

    Arguments:
        sides: the kink sides, rows indexed as ``got``'s.
        rows: the rows to search (those a comparison left undecided).
        got, allow: the backend's rows and their absolute allowances.
    Returns:
        The widened sides (the structure's ranges over the evaluated sides widened too), or
        None. A vertex that fits its row within every allowance replaces that row's others
        (it alone makes the row a member; a copy of hundreds of rows of a wide model is not
        made for it).
    """
    vertices, labels = dict(sides.vertices), dict(sides.labels or {})
    structure = dict(sides.structure or {})
    found = False
    for i in rows:
        info = structure.get(i)
        if info is None or info.kind != "relaxed" or info.search is None or i not in vertices:
            continue
        g, a = np.asarray(got[i], np.float64), np.asarray(allow[i], np.float64)
        v, words = info.search(g, a)
        if misfit(v, g, a)[0] == 0:  # it fits: that side alone decides (no copy of the rest)
            vertices[i] = v[None]
            labels[i] = [words]
        else:
            vertices[i] = np.vstack([vertices[i], v[None]])
            labels[i] = list(labels.get(i, [""] * (len(vertices[i]) - 1))) + [words]
        wide = with_interval(info, v[None])  # the ranges over every side evaluated
        structure[i] = replace(wide, low=np.fmin(info.low, wide.low),
                               high=np.fmax(info.high, wide.high))
        found = True
    if not found:
        return None
    return replace(sides, vertices=vertices, labels=labels or None, structure=structure)
