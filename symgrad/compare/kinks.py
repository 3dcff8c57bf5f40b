"""Kinks in the one comparer: the sides of the kinks a sample reaches (``KinkSides``; how they
are described beyond enumeration is ``symgrad.sides.Sides``), and the exact decisions on them -
is the backend's gradient a convex combination of the sides (``convex_combination``), or, where
the kinks are separable in groups, of each group's sides added to the base
(``separable_combination``)? Built by ``symgrad.oracle`` (scalar programs) and
``symgrad.tensor.sides`` (tensor programs), read by ``symgrad.compare.entries.compare``.

>>> import numpy as np
>>> V = np.eye(3)  # a three-way max tie: each argument wins in turn
>>> fair, summed = np.full(3, 1 / 3), np.ones(3)
>>> convex_combination(V, fair, np.zeros(3)), convex_combination(V, summed, np.zeros(3))
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    from scipy.optimize import linprog
    scale = np.fmax(np.fmax(np.abs(V).max(axis=0), np.abs(got)), allow)
    scale = np.where(scale > 0, scale, 1.0)
    A = V.T / scale[:, None]
    g, a = got / scale, allow / scale
    m = V.shape[0]
    res = linprog(np.zeros(m), A_ub=np.vstack([A, -A]), b_ub=np.concatenate([g + a, a - g]),
                  A_eq=np.ones((1, m)), b_eq=[1.0], bounds=[(0, None)] * m, method="highs")
    return bool(res.status == 0)


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
    parent = list(range(len(groups)))  # union-find of keys that share an entry

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    owner = np.full(len(base), -1)
    for i, t in enumerate(touches):
        for c in t:
            if owner[c] < 0:
                owner[c] = i
            else:
                parent[find(i)] = find(int(owner[c]))
    components: dict[int, list[int]] = {}
    for i in range(len(groups)):
        if touches[i].size:
            components.setdefault(find(i), []).append(i)
    for members in components.values():
        cols = np.unique(np.concatenate([touches[i] for i in members]))
        if len(members) == 1:
            if not convex_combination(V[groups[members[0]]][:, cols], got[cols], allow[cols]):
                return False
            continue
        from scipy.optimize import linprog
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
        res = linprog(np.zeros(D.shape[0]), A_ub=np.vstack([A, -A]),
                      b_ub=np.concatenate([g + a, a - g]), A_eq=eq, b_eq=np.ones(len(members)),
                      bounds=[(0, None)] * D.shape[0], method="highs")
        if res.status != 0:
            return False
    return True
