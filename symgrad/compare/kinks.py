"""Kinks in the one comparer: the sides of the kinks a sample reaches (``KinkSides``; how they
are described beyond enumeration is ``Sides``, with the limits of that enumeration), and the
exact decisions on them -
is the backend's gradient a convex combination of the sides (``convex_combination``), or, where
the kinks are separable in groups, of each group's sides added to the base
(``separable_combination``)? Built by ``symgrad.tensor.sides``, read by
``symgrad.compare.entries.compare``.

>>> import numpy as np
>>> V = np.eye(3)  # a three-way max tie: each argument wins in turn
>>> fair, summed = np.full(3, 1 / 3), np.ones(3)
>>> convex_combination(V, fair, np.zeros(3)), convex_combination(V, summed, np.zeros(3))
(True, False)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

MAX_COMBINATIONS = 64  # combinations enumerated per sample, or per group of interacting
#                        kinks beyond (more: relaxed)
INTERACTION_BITS = 40  # G between the sides within 2^-40 of its scale of the prediction
EXTRA_VERTICES = 8  # relaxed: random combinations added to the inner hull


@dataclass(frozen=True)
class KinkSides:
    """The exact outputs from every side of the kinks reached at a sample.

    ``vertices[i]`` is an (m, K) array for sample row i: one row per combination of sides
    (ReLU argument from the left / right, which tied argument of a Max wins, ...).
    """

    vertices: dict  # sample row -> (m, K) float64
    labels: dict | None = None  # sample row -> each side in words ("w*x → 0−")
    low: np.ndarray | None = None  # only for from_interval
    high: np.ndarray | None = None
    # sample row -> ``Sides`` where the sides were not all enumerated:
    # "separable" (vertices: the base and each group's sides; the hull: their Minkowski sum) or
    # "relaxed" (vertices are an inner hull; low/high a proven enclosure)
    structure: dict | None = None
    # sample row -> a callable giving (K,) the largest rounding-error bound E of any side's own
    # computation (the allowance of code on a side whose terms are larger than the base's)
    bounds: dict | None = None

    @classmethod
    def from_interval(cls, low: np.ndarray, high: np.ndarray) -> "KinkSides":
        return cls({}, None, low, high)

    def interval(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if self.low is not None:
            return self.low, self.high
        low, high = np.full(shape, np.nan), np.full(shape, np.nan)
        for i, V in self.vertices.items():
            info = (self.structure or {}).get(i)
            if info is not None and info.low is not None:
                low[i], high[i] = info.low, info.high
            else:
                low[i], high[i] = V.min(axis=0), V.max(axis=0)
        return low, high

    def enclosure(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """A proven range of each entry over every subgradient: the sides' interval, except
        on relaxed rows (interacting kinks beyond enumeration), where the sides evaluated are
        only some of them: there, the oracle's ball enclosure."""
        low, high = self.interval(shape)
        low, high = low.copy(), high.copy()
        for i, info in (self.structure or {}).items():
            if info.kind == "relaxed":
                low[i], high[i] = info.outer_low, info.outer_high
        return low, high

    def differs(self, shape: tuple) -> np.ndarray:
        """Entries whose sides disagree (a real kink; equal sides: the function is smooth);
        on relaxed rows also those whose enclosure is wider than the rounding of its ends."""
        low, high = self.interval(shape)
        with np.errstate(invalid="ignore"):
            scale = np.fmax(np.abs(low), np.abs(high))
            out = np.isfinite(low) & np.isfinite(high) & (high - low > 2.0**-60 * scale)
            for i, info in (self.structure or {}).items():
                if info.kind == "relaxed":
                    lo_, hi_ = info.outer_low, info.outer_high
                    out[i] |= hi_ - lo_ > 4 * np.spacing(np.fmax(np.abs(lo_), np.abs(hi_)))
        return out


def convex_combination(V: np.ndarray, got: np.ndarray, allow: np.ndarray) -> bool:
    """Is ``got`` within ``allow`` (per entry) of some convex combination of the rows of V?

    Two rows: exact interval arithmetic on the weight; more: a linear program (scipy HiGHS)
    on entries scaled to their magnitude. An entry with an infinite allowance constrains
    nothing, and a non-finite one is judged elsewhere (non-finite / overflow): both are left out.
    """
    keep = np.isfinite(got) & np.isfinite(allow) & np.isfinite(V).all(axis=0)
    if not keep.all():
        V, got, allow = V[:, keep], got[keep], allow[keep]
    if V.shape[0] == 1:
        return bool(np.all(np.abs(V[0] - got) <= allow))
    if V.shape[0] == 2:
        d = V[1] - V[0]
        lo_t, hi_t = 0.0, 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (got - allow - V[0]) / d
            b = (got + allow - V[0]) / d
        flat = d == 0
        if np.any(flat & (np.abs(V[0] - got) > allow)):
            return False
        lo_t = max(lo_t, float(np.max(np.fmin(a, b)[~flat], initial=0.0)))
        hi_t = min(hi_t, float(np.min(np.fmax(a, b)[~flat], initial=1.0)))
        return lo_t <= hi_t
    scale = np.fmax(np.fmax(np.abs(V).max(axis=0), np.abs(got)), allow)
    scale = np.where(scale > 0, scale, 1.0)
    A = V.T / scale[:, None]
    g, a = got / scale, allow / scale
    m = V.shape[0]
    up, down = binding(A, g + a, a - g)
    if not (up.any() or down.any()):
        return True  # every side within the allowance of every entry: each one is a member
    return feasible(np.vstack([A[up], -A[down]]), np.concatenate([(g + a)[up], (a - g)[down]]),
                    np.ones((1, m)), np.ones(1))


FIRST_ROWS = 1024  # inequality rows of the first linear program of ``feasible``
MORE_ROWS = 1024  # violated rows added per round
ROW_SLACK = 1e-9  # a row violated by less holds (HiGHS's own feasibility tolerance: 1e-7)


def feasible(A_ub: np.ndarray, b_ub: np.ndarray, A_eq: np.ndarray, b_eq: np.ndarray) -> bool:
    """Has ``A_ub w <= b_ub, A_eq w = b_eq, w >= 0`` a solution (scipy HiGHS)?

    By rows as needed (constraint generation): first the ``FIRST_ROWS`` rows the most violated
    at the best single side (or all, if fewer), then the rows the last solution violates, up
    to ``MORE_ROWS`` at a time, until it violates none by more than ``ROW_SLACK`` (feasible)
    or the rows taken have no solution (then neither has the whole system: infeasible). The
    answer is the whole system's in one program; rows that hold at every solution found are
    never passed to HiGHS (a kink's 440 sides against 40,000 entries: a few thousand rows
    instead of 80,000).
    A program HiGHS cannot finish (iteration limit, numerical trouble) is solved whole.

    Arguments:
        A_ub, b_ub: (rows, m) and (rows,) the inequalities.
        A_eq, b_eq: (groups, m) and (groups,) the equalities (the simplex of each group).
    Returns:
        Whether a solution exists.

    >>> A = np.array([[1.0, -1.0], [-1.0, 1.0]])  # |w0 - w1| <= 0.1 on the simplex: w0 ~ 1/2
    >>> feasible(A, np.full(2, 0.1), np.ones((1, 2)), np.ones(1))
    True
    >>> feasible(np.vstack([A, [[-1.0, 0.0]]]), np.array([0.1, 0.1, -0.9]), np.ones((1, 2)),
    ...          np.ones(1))
    False
    """
    from scipy.optimize import linprog
    m = A_ub.shape[1]

    def solve(rows):
        return linprog(np.zeros(m), A_ub=A_ub[rows], b_ub=b_ub[rows], A_eq=A_eq, b_eq=b_eq,
                       bounds=[(0, None)] * m, method="highs")
    if len(b_ub) <= FIRST_ROWS:
        return bool(solve(slice(None)).status == 0)
    over = A_ub.min(axis=1) - b_ub  # each row's violation at its best side
    taken = np.zeros(len(b_ub), bool)
    taken[np.argsort(-over, kind="stable")[:FIRST_ROWS]] = True
    while True:
        res = solve(taken)
        if res.status == 2:
            return False  # these rows alone have no solution
        if res.status != 0:
            return bool(solve(slice(None)).status == 0)
        slack = np.where(taken, -np.inf, A_ub @ res.x - b_ub)
        violated = slack > ROW_SLACK
        if not violated.any():
            return True
        taken[np.argsort(-slack, kind="stable")[:min(MORE_ROWS, int(violated.sum()))]] = True


def binding(A: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The constraints ``A w <= upper`` and ``-A w <= lower`` that some point of the simplex
    (w >= 0, sum w = 1) violates: on the simplex ``A w`` lies between the row's least and
    greatest entry, so a row whose greatest entry is within ``upper`` (least within
    ``-lower``) holds for every w and leaves the linear program's answer as it is (a kink's
    sides mostly differ by far less than the entry's allowance: most rows drop).

    Arguments:
        A: (rows, m) the sides, one column per side.
        upper, lower: (rows,) the bounds.
    Returns:
        (rows of ``A w <= upper`` to keep, rows of ``-A w <= lower`` to keep), boolean masks.

    >>> binding(np.array([[0.0, 1.0], [0.0, 3.0]]), np.array([2.0, 2.0]), np.array([0.0, 1.0]))
    (array([False,  True]), array([False, False]))
    """
    return A.max(axis=1) > upper, -A.min(axis=1) > lower


def separable_combination(V: np.ndarray, groups: list, got: np.ndarray,
                          allow: np.ndarray) -> bool:
    """Is ``got`` within ``allow`` of base + sum_g (a convex combination of group g's changes)?

    At separable kinks the gradient is the base plus each group's own change: ``V[0]`` is the
    base (every kink on its first side), ``V[groups[g]]`` group g's sides (row 0 first; a
    ReLU: its two sides; a group of interacting kinks: their combinations). Groups that share
    no entry are independent: each set of groups linked through shared entries is one small
    problem (one group alone: ``convex_combination`` of its sides, exact for two), several one
    linear program over their weights (scipy HiGHS).
    """
    keep = np.isfinite(got) & np.isfinite(allow) & np.isfinite(V).all(axis=0)
    if not keep.all():
        V, got, allow = V[:, keep], got[keep], allow[keep]
    base = V[0]
    deltas = [V[rows] - base for rows in groups]
    touches = [np.flatnonzero(np.any(d != 0, axis=0)) for d in deltas]
    free = np.ones(len(base), bool)
    for t in touches:
        free[t] = False
    if np.any(np.abs(base[free] - got[free]) > allow[free]):
        return False
    for members in linked_groups(len(groups), ((i, int(c)) for i, t in enumerate(touches)
                                               for c in t)):
        if not touches[members[0]].size:  # a group that moves no entry is linked to none
            continue
        cols = np.unique(np.concatenate([touches[i] for i in members]))
        if len(members) == 1:
            if not convex_combination(V[groups[members[0]]][:, cols], got[cols], allow[cols]):
                return False
            continue
        D = np.vstack([deltas[i][:, cols] for i in members])  # one row per side
        target = got[cols] - base[cols]
        scale = np.fmax(np.fmax(np.abs(D).max(axis=0), np.abs(target)), allow[cols])
        scale = np.where(scale > 0, scale, 1.0)
        A, g, a = D.T / scale[:, None], target / scale, allow[cols] / scale
        eq = np.zeros((len(members), D.shape[0]))
        r = 0
        for j, i in enumerate(members):
            eq[j, r:r + len(groups[i])] = 1.0
            r += len(groups[i])
        if not feasible(np.vstack([A, -A]), np.concatenate([g + a, a - g]), eq,
                        np.ones(len(members))):
            return False
    return True


@dataclass
class Sides:
    """How the sides of one sample's reached kinks are described (beyond enumeration).

    kind: "separable" (G is a sum over groups of kinks of a function of that group's local
    derivatives: ``groups[g]`` are the rows of group g's sides in the sample's vertices, row 0,
    the base, first; the hull is the Minkowski sum of the groups' hulls) or "relaxed" (the
    vertices are an inner hull; ``outer_low``/``outer_high`` a proven enclosure of every
    subgradient, per entry; -inf/inf where none could be computed).
    """

    kind: str
    groups: list = field(default_factory=list)
    outer_low: np.ndarray | None = None  # relaxed: the proven enclosure (separable: None)
    outer_high: np.ndarray | None = None
    reason: str = ""
    low: np.ndarray | None = None  # each entry's range over the sides (separable: exact;
    high: np.ndarray | None = None  # relaxed: over the evaluated ones)
    # relaxed: (got, allowance) -> (one more combination's exact row, its label): the sides
    # nearest to a backend's gradient (``symgrad.tensor.nearest``), another vertex of the hull
    search: Callable | None = None


def with_interval(info: Sides, V: np.ndarray) -> Sides:
    """Each entry's interval over the sides: separable, the base plus each group's most
    negative and most positive change (exact, every subgradient); relaxed, over the evaluated
    sides (the enclosure, ``outer_low``/``outer_high``, widened to hold them too)."""
    if info.kind == "separable":
        base = V[0]
        low, high = base.copy(), base.copy()
        for rows in info.groups:
            d = V[rows] - base
            low += np.minimum(d.min(axis=0), 0)
            high += np.maximum(d.max(axis=0), 0)
        return replace(info, low=low, high=high)
    return replace(info, low=V.min(axis=0), high=V.max(axis=0),
                   outer_low=np.fmin(info.outer_low, V.min(axis=0)),
                   outer_high=np.fmax(info.outer_high, V.max(axis=0)))


def class_combos(sig: list, options: list) -> list[tuple]:
    """Combinations where every kink of one class takes the same side (first or last): a
    class is the kinks whose single changes move something, or nothing, at each base
    (``sig[i]``: kink i's tuple of moved-or-not, per base; two stacked ReLU layers at 0: at
    the all-left base the first layer's changes move nothing). A backend uses one convention
    per op, and ops differ by layer, so these are the likely subgradients (torch.relu in one
    layer, H(0) = 1 in the next). At most 2^4 classes' worth. Shared by the scalar and the
    tensor oracle (``symgrad.tensor.sides``).

    >>> class_combos([(True, False), (False, True), (False, True)], [(0, 1)] * 3)
    [(1, 0, 0), (0, 1, 1)]
    """
    classes = sorted(set(sig))
    if len(classes) < 2 or len(classes) > 4:
        return []
    out = []
    for pick in itertools.product((0, -1), repeat=len(classes)):
        side = dict(zip(classes, pick))
        combo = tuple(o[side[s]] for o, s in zip(options, sig))
        if len(set(side.values())) > 1:  # all-first and all-last are evaluated already
            out.append(combo)
    return out


def linked_groups(n: int, moves) -> list[list[int]]:
    """Kinks 0..n-1 grouped when they move a common entry: ``moves`` yields ``(kink, entry)``
    pairs (an entry that kink's single change moves); union-find over shared entries.

    >>> linked_groups(3, [(0, 5), (1, 7), (2, 5)])
    [[0, 2], [1]]
    """
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    owner: dict[int, int] = {}
    for i, k in moves:
        if k in owner:
            parent[find(i)] = find(owner[k])
        else:
            owner[k] = i
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(find(i), []).append(i)
    return list(out.values())
