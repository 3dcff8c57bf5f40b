"""A non-finite entry at a singular point reached by rounding: inconclusive, not a failure.

The entry rule (``entries``) reads a NaN or inf from the backend where the exact value is
finite as **non-finite**, a failure: 0/0, an overflow, a NaN leaking from an untaken branch.
One case is no evidence of a bug: where the rigorous enclosure of what correct code computes
(``symgrad.rigorous``: every operation widened by its own rounding in the dtype) holds the
singular point of an operation's argument - a norm's or a square root's 0, where its
derivative is infinite - correct code may round onto that point and compute NaN or inf
(``torch.nn.functional.triplet_margin_loss``'s double backward at x = 0, y = 1e-6: torch's
x - y + 1e-6 is exactly 0, the exact H v 1e14 in float32). Such an entry is **inconclusive**,
its row saying which operation's enclosure reached which point. The proof is the enclosure's,
so an overflow is no excuse (``rigorous.singular`` walks the balls without the dtype's range:
exp(w) / exp(w) at w = 1000 encloses 1, and float64's NaN there stays a failure), nor is a
NaN where every argument's enclosure stays clear of its singular points.

>>> import numpy as np
>>> from .entries import NONFINITE, INCONCLUSIVE, compare
>>> from .tolerance import Tolerance
>>> c = compare(np.array([[1.0, 1e14]]), np.zeros((1, 2)), np.array([[1.0, np.nan]]),
...             np.ones((1, 2)), backend="torch", dtype="float32", tol=Tolerance())
>>> int(c.status[0, 1]) == NONFINITE
True
>>> class Reached:  # as ``symgrad.rigorous.Enclosure`` answers at the triplet loss's apex
...     def __init__(self, mask): self.mask = np.array([mask])
...     def singular(self, rows): return self.mask, {0: "the norm's argument holds 0"}
>>> d = mark_singular(c, Reached([False, True]))
>>> int(d.status[0, 1]) == INCONCLUSIVE, d.undecided[0]
(True, "the norm's argument holds 0")
>>> bool(mark_singular(c, Reached([False, False])).status[0, 1] == NONFINITE)
True
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np

from .entries import INCONCLUSIVE, NONFINITE, Comparison


class Reaches(Protocol):
    """What ``mark_singular`` asks (``symgrad.rigorous.Enclosure``)."""

    def singular(self, rows: np.ndarray) -> tuple[np.ndarray, dict]: ...


def mark_singular(comp: Comparison, enclosure: Reaches | None) -> Comparison:
    """``comp`` with its non-finite entries that the enclosure proves within rounding of a
    singular point inconclusive, each such row saying why (module docstring).

    Arguments:
        comp: one backend's comparison, (N, K).
        enclosure: its ``singular(rows)`` gives ((len(rows), K) bool, row position ->
            reason): the entries whose rigorous enclosure reaches a singular point
            (``rigorous.Enclosure.singular``), asked only for the rows with a non-finite
            entry; None (no enclosure: tensor programs above 200k parameters): no change.
    Returns:
        ``comp`` itself when nothing changes, else a copy.
    """
    if enclosure is None:
        return comp
    rows = np.flatnonzero((comp.status == NONFINITE).any(axis=1))
    if not rows.size:
        return comp
    mask, why = enclosure.singular(rows)
    if not np.asarray(mask).any():
        return comp
    status = comp.status.copy()
    undecided = dict(comp.undecided or {})
    for i, row in enumerate(rows):
        hit = np.asarray(mask[i], bool) & (status[row] == NONFINITE)
        if not hit.any():
            continue
        status[row, hit] = INCONCLUSIVE
        words = why.get(i, "the rigorous enclosure reaches a singular point")
        undecided[int(row)] = (f"{undecided[int(row)]}; {words}" if int(row) in undecided
                               else words)
    return replace(comp, status=status, undecided=undecided)
