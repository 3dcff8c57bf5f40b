"""The limit ladder: a derivative at a point where its formula is 0/0 or 0 * log 0 at inputs
exactly 0 (d/dy x**y = x**y log x at x = 0), taken as the limit when those inputs approach 0
from either side, t = 2^-64, 2^-128, ... 2^-65536, the outputs enclosed in balls at each step.

The oracle's rule (``symgrad.tensor.limits`` reads it): a side's limit of an entry is taken when two successive steps agree
to ``rel`` of the value or to 2^-1100 (below anything float64 shows); a side whose evaluation
stops (an error, a kink reached) contributes what settled before it. The constants about how
tight a ball must be, and where the rounding bound takes its own limit, live here too, and how a
ball is read as a double-double (``double_double``).

sin(t) / t is 0/0 at t = 0; its limit from both sides is 1:

>>> from flint import arb, ctx
>>> with ctx.workprec(300):
...     left, right = one_sided_limits(lambda t: [t.sin() / t], [0], arb(2) ** -80)
>>> float(left[0].mid()), float(right[0].mid())
(1.0, 1.0)
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from flint import arb

TIGHT_FRACTION = 64.0  # a radius <= allowance / 64 is tight
TIGHT_RELATIVE_BITS = 80  # ... or <= 2^-80 of the value
LIMIT_STEPS = 11  # t = 2^-64, 2^-128, ..., 2^-65536 (until every entry settles)
BELOW_FLOAT64 = arb(2) ** -1100  # a limit's last step this small cannot show in float64
LIMIT_OFFSET = 2.0**-600  # where E is NaN at an input exactly 0: E as that input nears 0


def one_sided_limits(at: Callable[[arb], Sequence[arb] | None], bad: Sequence[int],
                     rel: arb) -> tuple[dict, dict]:
    """The one-sided limits of the ``bad`` outputs.

    Arguments:
        at: t -> every output as a ball with the inputs exactly 0 moved to t (``side * 2^-n``),
            or None where that side stops (the program raises, or reaches a kink).
        bad: the outputs whose limits are wanted (their formula is undefined at 0).
        rel: the relative agreement of two steps that settles an entry.
    Returns:
        (left, right): output -> its settled ball, from t < 0 and from t > 0.
    """
    found: dict = {}
    for side in (-1, 1):
        prev, settled = None, found.setdefault(side, {})
        for step in range(LIMIT_STEPS):
            got = at(side * arb(2) ** -(64 << step))
            if got is None:
                break
            if prev is not None:
                for k in bad:
                    if k in settled or not (got[k].is_finite() and prev[k].is_finite()):
                        continue
                    # certain comparisons (a diverging 2^2048 never settles); not against the
                    # allowance, which a diverging entry's bound inflates alike; below 2^-1100
                    # nothing shows in a float64 answer
                    d = abs(got[k] - prev[k])
                    if bool(d <= abs(got[k]) * rel) or bool(d <= BELOW_FLOAT64):
                        settled[k] = got[k]
                if len(settled) == len(bad):
                    break
            prev = got
    return found[-1], found[1]


def double_double(o: arb) -> tuple[float, float]:
    """A ball as hi + lo. A tight ball that contains 0 is 0: its midpoint is rounding debris of
    the terms that cancelled (e.g. 1e-38 for a gradient that is exactly 0 by symmetry), and a
    direction made of debris would mislead the block test."""
    if not o.is_finite():
        return np.nan, 0.0
    if o.contains(0):
        return 0.0, 0.0
    mid = o.mid()
    h = float(mid)
    if not np.isfinite(h):
        return h, 0.0  # beyond float64: compare reports it as overflow
    return h, float(mid - h)
