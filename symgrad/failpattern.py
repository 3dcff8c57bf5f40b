"""How a failing block's errors look, in one line: by how much and where.

A failure line names one entry, its expected and got values and its error in ULPs; a reader
of ``print(result)`` still has to work out from the ten lines shown (of perhaps hundreds) what
the bug *is*. The block's failing entries over every compared sample often say it at once
(newuser13): one relative error shared by all of them (a backward scaled by 1 + 1e-9: "got =
exact x (1 + 1e-09) at every one"), a flipped sign (got = -exact), or one entry alone failing
at every sample (a wrong sign in one entry of a hand-written backward). ``block_lines`` reads
the comparison's arrays (status, got, expected) for each block with failing entries and says
so; where the relative errors differ it gives their range. A comparison reduced to statuses
(GPT-2 scale: ``Comparison.reduce``) or a block over ``BLOCK_UP_TO`` entries is skipped.

>>> import numpy as np
>>> from types import SimpleNamespace as S
>>> from symgrad.compare import MISMATCH, OK
>>> exact = np.array([[1.0, 2.0, -4.0, 8.0], [1.0, 3.0, 5.0, -7.0]])
>>> got = exact * [1, 1 + 1e-9, 1 + 1e-9, 1]
>>> status = np.array([[OK, MISMATCH, MISMATCH, OK]] * 2)
>>> comp = S(status=status, got=got, expected=exact, reduced=False)
>>> block_lines(comp, [("w", 1, 4)], ["value", "d/dw[0]", "d/dw[1]", "d/dw[2]"])
['w: 4 failing entries (2 of its 3 entries, at 2 of 2 samples): got = exact x (1 + 1e-09) at every one (one constant factor, as a scaled backward gives)']
>>> got[:, 2] = -exact[:, 2]; status[:, 1] = OK
>>> block_lines(comp, [("w", 1, 4)], ["value", "d/dw[0]", "d/dw[1]", "d/dw[2]"])
['w: 2 failing entries (only w[1], at 2 of 2 samples; its other 2 entries agree): got = exact x (-1) at every one (the sign flipped)']
"""

from __future__ import annotations

import numpy as np

from .compare import FAILING, SUSPECT
from .verdict import all_clear

BLOCK_UP_TO = 4_000_000  # samples x entries of one block read (as causes.backward reads them)
SAME = 0.01  # relative errors within this fraction of their median: one constant factor


def block_lines(comp, blocks: list[tuple[str, int, int]], outputs: list[str],
                kept: dict | None = None) -> list[str]:
    """One line per block with failing entries: how many, which, and how the got values
    relate to the exact ones.

    Arguments:
        comp: a ``symgrad.compare.Comparison`` (status, got, expected: (samples, 1 + K)).
        blocks: (name, first column, end column) of each parameter block.
        outputs: the run's output names ("value", "d/dW[0, 1]", ...), indexed by column.
        kept: for a reduced comparison, ``kept_blocks``' copies of its blocks' values.
    Returns:
        The lines (none where the comparison keeps no entries or nothing failed).
    """
    got, expected = getattr(comp, "got", None), getattr(comp, "expected", None)
    status = comp.status
    whole = not (getattr(comp, "reduced", False) or got is None or expected is None
                 or np.ndim(got) != 2 or got.shape != status.shape
                 or expected.shape != status.shape)
    lines = []
    for name, a, b in blocks if (whole or kept) and not all_clear(status) else ():
        if status.shape[0] * (b - a) > BLOCK_UP_TO:
            continue
        failing = np.isin(status[:, a:b], FAILING)
        if failing.any() and (whole or name in kept):
            g, e = (got[:, a:b], expected[:, a:b]) if whole else kept[name]
            lines.append(_line(name, failing, np.asarray(g, np.float64),
                               np.asarray(e, np.float64), outputs[a:b]))
    return lines


def kept_blocks(comp, blocks: list[tuple[str, int, int]]) -> dict:
    """Copies of the got and exact values of each block ``block_lines`` may describe once the
    run's suspicions are decided (one failing or suspect entry, at most ``BLOCK_UP_TO``): a
    streamed comparison is reduced before a fresh sample confirms them (``tensor.confirm_big``).
    A passing run keeps nothing.

    Arguments:
        comp: a whole ``Comparison``; blocks: as ``block_lines``.
    Returns:
        block name -> (got, exact), each (samples, block size).
    """
    if not isinstance(getattr(comp, "got", None), np.ndarray) or getattr(comp, "reduced", False):
        return {}
    status, out = comp.status, {}
    for name, a, b in blocks if not all_clear(status) else ():  # (a passing run: one max pass)
        if status.shape[0] * (b - a) <= BLOCK_UP_TO and np.isin(
                status[:, a:b], FAILING + (SUSPECT,)).any():
            out[name] = (np.array(comp.got[:, a:b]), np.array(comp.expected[:, a:b]))
    return out


def _line(name: str, failing: np.ndarray, got: np.ndarray, exact: np.ndarray,
          names: list[str]) -> str:
    """The line of one block (arrays of shape (samples, block size))."""
    n, size = int(failing.sum()), failing.shape[1]
    cols = np.flatnonzero(failing.any(axis=0))
    rows = int(failing.any(axis=1).sum())
    if len(cols) == 1:
        entry = names[cols[0]].removeprefix("d/d").removeprefix("Hv:")
        where = (f"only {entry}, at {rows} of {len(failing)} samples; its other {size - 1} "
                 f"entr{'y' if size == 2 else 'ies'} agree")
    else:
        where = (f"{len(cols)} of its {size} entries, at {rows} of {len(failing)} samples")
    head = f"{name}: {n} failing entr{'y' if n == 1 else 'ies'} ({where})"
    pick = failing & (exact != 0) & np.isfinite(exact) & np.isfinite(got)
    if not pick.any():
        return head
    r = got[pick] / exact[pick] - 1.0
    mid = float(np.median(r))
    others = n - int(pick.sum())
    tail = (f" (and {others} where the exact value is 0 or a value is not finite)"
            if others else "")
    if mid != 0 and float(np.abs(r - mid).max()) <= SAME * abs(mid):
        return f"{head}: got = exact x {_factor(mid)} at every one{_why(mid)}{tail}"
    lo, hi = float(np.abs(r).min()), float(np.abs(r).max())
    signs = "of both signs" if (r > 0).any() and (r < 0).any() else (
        "got above exact" if (r > 0).all() else "got below exact")
    return (f"{head}: relative errors {lo:.2g} to {hi:.2g}, {signs} (no one constant "
            f"factor){tail}")


def _factor(rel: float) -> str:
    """The factor 1 + rel, as a reader takes it in: (1 + 1e-09), (-1), 1.5."""
    if abs(rel) < 1e-3:
        return f"(1 {'+' if rel > 0 else '-'} {abs(rel):.2g})"
    if abs(rel + 2) < 1e-3:
        return "(-1)"
    return f"{1 + rel:.4g}"


def _why(rel: float) -> str:
    if abs(rel + 2) < 1e-3:
        return " (the sign flipped)"
    if rel == -1.0:  # got 0 where the exact is not: nothing reached it
        return " (got 0: a term dropped or a factor detached, as a missing backward gives)"
    return " (one constant factor, as a scaled backward gives)"
