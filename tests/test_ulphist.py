"""``symgrad.compare.ulphist``: the ULP histogram by a table of each value's upper bits counts
what numpy's binning of log10(max(u, 1e-3)) counts, bit for bit, at and around every edge, in
float32 and float64, with zeros, negatives, subnormals, infinities, NaNs and values beyond the
last edge."""

import numpy as np
import pytest

from symgrad.compare.ulphist import AMBIGUOUS, ULP_BINS, _table, binned, direct


def _awkward(dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    edges = (10.0 ** ULP_BINS).astype(dtype)  # each edge and its neighbours, both sides
    near = [np.nextafter(edges, np.array(np.inf, dtype)), np.nextafter(edges, np.array(0, dtype)),
            edges]
    for _ in range(3):
        near += [np.nextafter(near[-3], np.array(np.inf, dtype)),
                 np.nextafter(near[-2], np.array(0, dtype))]
    wide = np.abs(rng.standard_normal(200_000)) * 10.0 ** rng.uniform(-50, 30, 200_000)
    small = rng.integers(0, 64, 100_000) / 2.0  # ULPs as they come: 0, 0.5, 1, 1.5, ...
    odd = np.array([0.0, -0.0, -1.0, 5e-324, 1e-300, 1e-3, np.inf, -np.inf, np.nan, 1e20,
                    1e21, 3e38])
    return np.concatenate([*near, wide, small, odd]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_the_table_counts_numpys_bins(dtype, seed):
    u = _awkward(dtype, seed)
    assert binned(u).tolist() == direct(u).tolist()
    for k in range(0, u.size, 997):  # any cut of it, alone
        assert binned(u[k:k + 5]).tolist() == direct(u[k:k + 5]).tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_table_entries_are_binned_directly(dtype):
    # the table decides all but the entries whose bits straddle an edge (and the 1e-3 clamp)
    table = _table(np.dtype(dtype))[0]
    assert 0 < (table == AMBIGUOUS).sum() <= 4 * len(ULP_BINS)
