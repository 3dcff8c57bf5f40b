"""Why an inconclusive entry stays open, in its finding's note: a compact comparison without
an enclosure (above 200k parameters, GPT-2's: ``compare_compact``, no allowance array kept,
deferred or not) names the entry's allowance
against its exact value, as a whole comparison does; it used to fall through to "the oracle
could not certify this entry", which was not the reason."""

import numpy as np

from symgrad.compare import INCONCLUSIVE, Tolerance, compare
from symgrad.result import undecided_note
from symgrad.tensor.comparing import compare_compact


def _case():
    hi = np.array([[1.0, 3e-9, 0.5]])        # column 1: an exact value below its allowance
    lo = np.zeros_like(hi)
    got = hi + np.array([[0.0, 1e-9, 0.0]])
    E = np.array([[1.0, 100.0, 1.0]])          # allowance 4 u 100 = 2.4e-5 in float32
    return hi, lo, got, E


def test_a_streamed_comparison_names_the_allowance_not_the_oracle():
    hi, lo, got, E = _case()
    whole = compare(hi, lo, got, E, backend="torch", dtype="float32", tol=Tolerance())
    notes = [undecided_note(whole, 0, 1)]
    for deferred in (False, True):
        c = compare_compact(hi, lo, got, E, backend="torch", dtype="float32", tol=Tolerance(),
                            deferred=deferred)
        assert c.status[0, 1] == INCONCLUSIVE and c.allowed_abs is None
        notes.append(undecided_note(c, 0, 1))
    assert notes[0] == notes[1] == notes[2], notes
    assert "at least the exact value itself" in notes[2] and "2.38e-05" in notes[2], notes
    assert "oracle" not in notes[2], notes
