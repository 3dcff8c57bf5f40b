"""The three-valued verdict: pass, fail or inconclusive, and which backends decide it.

>>> VERDICTS
('pass', 'fail', 'inconclusive')
"""

from __future__ import annotations

import numpy as np

from .compare import FAILING, INCONCLUSIVE, SUSPECT
from .config import OWN_BACKENDS

PASS, FAIL, UNDECIDED = "pass", "fail", "inconclusive"  # the three outcomes of a run
VERDICTS = (PASS, FAIL, UNDECIDED)
UNRESOLVED = (INCONCLUSIVE, SUSPECT)  # statuses that are neither ok nor failing
OWN_LABEL = "symgrad's own program"  # how a non-deciding own backend is labelled


def verdict_of(statuses) -> str:
    """The three-valued verdict of status arrays (one per deciding backend).

    Arguments:
        statuses: iterable of status arrays (``Comparison.status``).
    Returns:
        "fail" when any entry is failing (``compare.FAILING``); otherwise "inconclusive" when
        any entry is inconclusive or suspect; otherwise "pass" (ok, precision-loss warnings and
        accepted kinks pass).

    >>> import numpy as np
    >>> from symgrad.compare import OK, INCONCLUSIVE, MISMATCH
    >>> verdict_of([np.array([OK, INCONCLUSIVE])]), verdict_of([np.array([INCONCLUSIVE, MISMATCH])])
    ('inconclusive', 'fail')
    """
    statuses = [st for st in statuses if not all_clear(st)]  # one max pass each, first
    if any(np.isin(st, FAILING).any() for st in statuses):
        return FAIL
    if any(np.isin(st, UNRESOLVED).any() for st in statuses):
        return UNDECIDED
    return PASS


CLEAR_BELOW = min(FAILING + UNRESOLVED)  # status codes below it neither fail nor stay
#                                         unresolved (ok, precision loss)


def all_clear(status) -> bool:
    """Every entry of an integer status array is below ``CLEAR_BELOW`` (ok or a precision
    loss): one max pass (a large model's 85-163M int8 statuses: ~3 ms against ~50 ms an
    ``isin``) shows that no entry is failing or unresolved; False: ``isin`` decides.

    Arguments:
        status: a status array (``Comparison.status``).
    Returns:
        Whether it is integer and every entry is below ``CLEAR_BELOW`` (an empty one is).

    >>> from symgrad.compare import LOSS, KINK
    >>> all_clear(np.array([0, LOSS], np.int8)), all_clear(np.array([0, KINK], np.int8))
    (True, False)
    """
    status = np.asarray(status)
    return bool(status.dtype.kind in "iu" and (status.size == 0 or status.max() < CLEAR_BELOW))


def deciding_backends(names) -> list[str]:
    """The backends whose findings decide the verdict: the user's code (any backend that is
    not one of symgrad's own programs, ``config.OWN_BACKENDS``) when the run has some; else
    symgrad's own programs. Own programs of a run that verifies user code are still compared
    and shown, but a symgrad-own overflow or rounding excess says nothing about the user's code.

    >>> deciding_backends(["numpy", "torch", "torch_fn"]), deciding_backends(["numpy", "torch"])
    (['torch_fn'], ['numpy', 'torch'])
    """
    names = list(names)
    user = [n for n in names if n not in OWN_BACKENDS]
    return user or names
