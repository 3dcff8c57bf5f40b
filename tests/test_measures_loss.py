"""The table's figures are the compare's own numbers (``symgrad.measures``): a comparison that
keeps no error array (``compare_compact`` without an enclosure) has its errors and allowances
recomputed from what they were made of (``Comparison.figures``, ``compare.entry_errors``), not
from the oracle's high part alone. So every precision-loss (LOSS) entry is over
``precision_loss_ulps`` in the table's measure by construction, and the table needs no check of
its own ("ok (precision loss)" where a row has a LOSS entry; the retired ``_loses``). Before,
the error was |got - hi| and the allowance allowed_ulps x ulp(hi): a LOSS entry whose error
sits at the limit could read as losing nothing."""

from __future__ import annotations

import numpy as np
import pytest

from symgrad.compare import LOSS, Tolerance, compare
from symgrad.config import VerifyConfig
from symgrad.measures import measures
from symgrad.tensor.comparing import compare_compact


def _arrays(rng, n: int = 4, k: int = 300):
    """hi + lo with a real low part, exact (near-)zeros made of terms ~1, errors from 0 to 10^4
    ULPs (many precision-loss entries, at the zeros too) within a generous bound E."""
    hi = rng.normal(size=(n, k)) * 10.0 ** rng.integers(-3, 3, size=(n, k))
    hi[:, ::7] = rng.normal(size=(n, k))[:, ::7] * 1e-20  # zeros by cancellation
    lo = hi * 2.0**-60 * rng.uniform(-1, 1, size=(n, k))
    E = np.abs(hi) * 1e6 + 1.0
    ulps = 10.0 ** rng.uniform(0, 4.5, size=(n, k)) * rng.choice([-1, 1], size=(n, k))
    got = hi + lo + ulps * np.spacing(np.where(np.abs(hi) < 1e-15, E, np.abs(hi)))
    return hi, lo, got, E


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_compact_comparison_measures_the_compare_errors(seed):
    hi, lo, got, E = _arrays(np.random.default_rng(seed))
    tol = Tolerance()
    cfg = VerifyConfig(tolerance=tol)
    whole = compare(hi, lo, got, E, backend="b", dtype="float64", tol=tol)
    compact = compare_compact(hi, lo, got, E, backend="b", dtype="float64", tol=tol)
    deferred = compare_compact(hi, lo, got, E, backend="b", dtype="float64", tol=tol,
                               deferred=True)
    assert compact.error is None and deferred.error is None  # no error array kept
    assert (compact.status == whole.status).all() and (whole.status == LOSS).sum() > 50
    m = measures(whole, cfg)
    for comp in (compact, deferred):
        c = measures(comp, cfg)
        for name in ("error", "allowed", "ulps", "ratio"):
            assert np.array_equal(getattr(c, name), getattr(m, name), equal_nan=True), name
    loss = whole.status == LOSS
    assert (m.ulps[loss] > tol.precision_loss_ulps).all()  # every LOSS entry loses
    # and the low part mattered: |got - hi| alone is another error at some entry
    assert not np.array_equal(np.abs(got - hi), m.error)
