"""How a finding reads: the one-line note of each failing, kink or undecided entry (proof,
block, kink convention), the cause's explanation joined to it, and a sample's values as shown.

Read by the tensor pipeline (``symgrad.tensor.verify``, ``symgrad.tensor.comparing``).

>>> with_proof("", "torch computes it from the rounded output")
'torch computes it from the rounded output'
>>> convention(0.5)
'at a kink: the backend used the convention H(0) = 1/2'
>>> shown_value(np.array([1.0, 2.0]))
[1.0, 2.0]
"""

from __future__ import annotations

import numpy as np

from .compare import INCONCLUSIVE, KINK, MISMATCH, SYSTEMATIC
from .config import CERTIFY_UP_TO
from .result import undecided_note


UNENCLOSED = "no rigorous enclosure at this size"  # how a mismatch without a proof says so


def with_proof(note: str, explanation: str) -> str:
    """The failure's note, or the cause's explanation; a proof note (outside the rigorous
    enclosure, or why there is none) follows the explanation on the same line."""
    if note and ("rigorous enclosure" in note or UNENCLOSED in note) and explanation:
        return f"{explanation}; {note}"
    return note or explanation


def entry_note(comp, i: int, k: int) -> str:
    """The note of one compared entry (scalar and tensor models alike): at a kink, the side
    the backend took or why it is no subgradient; a systematic error's block finding; why an
    inconclusive entry stays open; a mismatch's proof.

    Arguments:
        comp: a ``compare.Comparison``.
        i, k: the entry's row and column.
    Returns:
        The note ("" when there is nothing to add).
    """
    status = int(comp.status[i, k])
    note = convention(comp.kink_position[i, k]) if status == KINK else ""
    if status == KINK and comp.side and i in comp.side:
        note += f" (the one-sided derivative from {comp.side[i]})"
    position = comp.kink_position[i, k]
    if status == MISMATCH and np.isfinite(position) and not 0 <= position <= 1:
        note = (f"at a kink, outside the subdifferential: every subgradient puts this entry "
                f"between the one-sided derivatives (0 and 1 of the way across), and the "
                f"backend's value is {position:.4g} of the way")
    if comp.not_subgradient is not None and comp.not_subgradient[i, k]:
        note = ("at a kink: each entry lies between the one-sided derivatives, but together "
                "they are no convex combination of them (no subgradient; e.g. the full "
                "gradient handed to every tied argument of a max)")
    if status == SYSTEMATIC:
        note = block_note(comp, i, k)
    if status == INCONCLUSIVE:
        note = undecided_note(comp, i, k)
    if status == MISMATCH and not note:  # a kink's own proof (the subdifferential) first
        note = proof_note(comp, i, k)
    return note


def proof_note(comp, row: int, col: int) -> str:
    """One line for a proven mismatch: the error against the fast allowance and against the
    rigorous enclosure. Where none was computed (tensor programs above
    ``config.CERTIFY_UP_TO`` parameters: GPT-2) the line says the mismatch rests on the
    fast allowance alone - probabilistic by default (``Tolerance.entry_bound``), so it is not
    a proof."""
    if comp.rigorous is None:
        return (f"{UNENCLOSED} (above {CERTIFY_UP_TO:,} parameters): this mismatch rests on "
                "the fast allowance alone (probabilistic unless Tolerance.entry_bound='worst'), "
                "not proven")
    r = float(comp.rigorous[row, col])
    if not np.isfinite(r):
        return ""
    err = float(comp.error[row, col]) if comp.error is not None else float("nan")
    allowed = float(comp.allowed_abs[row, col]) if comp.allowed_abs is not None else float("nan")
    if err > r:
        exact = abs(float(comp.expected[row, col]))
        if err <= allowed and err > exact:  # inside the fast allowance: decided by the rule
            #                                  "wrong by more than the value itself"
            return (f"error {err:.3g} is more than the exact value itself ({exact:.3g}; the "
                    f"fast allowance {allowed:.3g} exceeds it, so it cannot decide) and outside "
                    f"the rigorous enclosure ±{r:.3g} of what correct code computes in "
                    f"{comp.dtype}: proven")
        return (f"error {err:.3g} is outside the rigorous enclosure ±{r:.3g} of what correct "
                f"code computes in {comp.dtype} (fast allowance {allowed:.3g}): proven")
    evidence = "; ".join(getattr(comp, "evidence", ()))  # a suspicion that was confirmed
    return (f"error {err:.3g} is beyond the fast allowance {allowed:.3g}, inside the rigorous "
            f"enclosure ±{r:.3g}: not proven by it, but confirmed by an independent "
            f"experiment" + (f" ({evidence})" if evidence else ""))


def block_note(comp, row: int, col: int) -> str:
    """The block finding behind a SYSTEMATIC entry (its sample's, else the pooled one)."""
    for f in sorted(comp.systematic, key=lambda f: (not f.confirmed, f.sample < 0)):
        if f.sample in (row, -1) and f.block and f.columns[0] <= col < f.columns[1]:
            return f.describe()
    return "systematic error on its parameter block"


def convention(position: float) -> str:
    """Where the backend's value sits in the subgradient interval, as an H(0) convention."""
    if not np.isfinite(position):
        return "at a kink"
    for value, name in ((0.0, "0"), (0.5, "1/2"), (1.0, "1")):
        if abs(position - value) < 0.05:
            return f"at a kink: the backend used the convention H(0) = {name}"
    return f"at a kink: the backend's value is {position:.2f} of the way across the subgradient"


def shown_value(v: np.ndarray):
    """A block's value at one sample, for messages and JSON: whole up to 64 entries."""
    if not v.ndim:
        return float(v)
    if v.size <= 64:
        return v.tolist()
    return {"shape": list(v.shape), "first": v.ravel()[:64].tolist()}
