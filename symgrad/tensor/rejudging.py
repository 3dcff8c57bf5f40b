"""The rows of a comparison that reach a kink, compared again with their sides
(``symgrad.tensor.sides.kink_sides``) by the one comparer; a relaxed row the comparison leaves
undecided gets one more vertex, the sides nearest to the backend's gradient
(``symgrad.tensor.nearest``). Re-exported by ``symgrad.tensor.sides``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..compare import MISMATCH, SUSPECT, Comparison, KinkSides, Tolerance, allowance, compare
from .nearest import with_nearest


def rejudge(comp: Comparison, kinks: tuple, hi: np.ndarray, lo: np.ndarray, got: np.ndarray,
            E: np.ndarray, tol: Tolerance, rigorous: Callable | None = None) -> Comparison:
    """``comp`` with the rows that reach a kink compared again by ``symgrad.compare.compare``
    with their sides (``kink_sides``): the same kink and subgradient decisions as the scalar
    pipeline. Rows without a kink keep their entries as they are (no extra work).

    Arguments:
        comp: the backend's comparison (``compare_compact``).
        kinks: ``kink_sides``'s (sides, uncertain, why).
        hi, lo, got, E: the oracle's rows, the backend's rows and the bound, (N, K).
        tol: the tolerance.
        rigorous: the lazy enclosure (rows -> radii), or None.
    Returns:
        The comparison with those rows' statuses, kink positions, sides used and reasons.
    """
    sides, uncertain, why = kinks
    rows = np.array(sorted(set(sides.vertices) | set(np.flatnonzero(uncertain.any(axis=1)))), int)
    if not rows.size:
        return comp
    at = {int(r): i for i, r in enumerate(rows)}
    local = KinkSides({at[r]: v for r, v in sides.vertices.items()},
                      {at[r]: v for r, v in (sides.labels or {}).items()},
                      structure={at[r]: v for r, v in (sides.structure or {}).items()})
    ask = None if rigorous is None else (lambda rr: rigorous(rows[np.asarray(rr, int)]))
    args = (np.asarray(hi[rows], np.float64), np.asarray(lo[rows], np.float64),
            np.asarray(got[rows], np.float64), np.array(E[rows], np.float64))
    c = compare(*args, backend=comp.backend, dtype=comp.dtype, tol=tol, kink=local,
                uncertain=uncertain[rows], rigorous=ask)
    if _widen(rows, c.status, sides.bounds, args[3]):  # again, with the sides' own bounds
        c = compare(*args, backend=comp.backend, dtype=comp.dtype, tol=tol, kink=local,
                    uncertain=uncertain[rows], rigorous=ask)
    if c.undecided:  # relaxed rows: one more vertex, the sides nearest to this gradient
        allow = np.nan_to_num(allowance(args[3], comp.dtype, tol), nan=np.inf)
        more = with_nearest(local, sorted(c.undecided), args[2], allow)
        if more is not None:
            c = compare(*args, backend=comp.backend, dtype=comp.dtype, tol=tol, kink=more,
                        uncertain=uncertain[rows], rigorous=ask)
    status = comp.status.copy()
    status[rows] = c.status
    position = np.full(status.shape, np.nan)
    position[rows] = c.kink_position
    joint = np.zeros(status.shape, bool)
    joint[rows] = c.not_subgradient
    undecided = {int(rows[i]): v for i, v in (c.undecided or {}).items()}
    undecided.update({r: w for r, w in why.items()})
    radius = comp.rigorous
    if radius is not None and c.rigorous is not None:
        radius = radius.copy()
        radius[rows] = np.where(np.isnan(c.rigorous), radius[rows], c.rigorous)
    return replace(comp, status=status, kink_position=position, not_subgradient=joint,
                   side={int(rows[i]): v for i, v in (c.side or {}).items()},
                   undecided=undecided, rigorous=radius)


def _widen(rows: np.ndarray, status: np.ndarray, bounds: dict | None, E: np.ndarray) -> bool:
    """The rows whose comparison at the actual side's bound has a mismatch or a suspect entry
    take, in place in ``E``, each side's own bound where larger (``kinks.side_bounds``: code on
    a side with larger terms rounds by more); True if any row did. Only those rows: a wider
    allowance elsewhere would turn entries ok at their own side's bound inconclusive."""
    hit = False
    for i, r in enumerate(rows):
        if r in (bounds or {}) and np.isin(status[i], (MISMATCH, SUSPECT)).any():
            E[i] = np.fmax(E[i], bounds[int(r)]())
            hit = True
    return hit
