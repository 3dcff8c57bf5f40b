"""The summary phase's folds (``symgrad.figure_scan``): one reduction per figure gives the same
numbers as masked copies did, NaN, inf, empty masks and empty chunks included; the whole's
figures merged from its groups' equal one fold of every chunk."""

import numpy as np
import pytest

from symgrad import figure_scan as M


def _masked_copy_max(values, mask):
    v = values[mask]
    v = v[~np.isnan(v)]
    return float(v.max()) if v.size else 0.0


def _fold_by_copies(parts):
    """The fold as it was written with masked copies (the reference)."""
    st = {"worst_ulps": 0.0, "worst_ratio": 0.0, "worst_rel": 0.0, "resolution": float("inf"),
          "worst_ratio_all": 0.0}
    for m in parts:
        finite = m.ulps[np.isfinite(m.ulps)]
        st["worst_ulps"] = float("inf") if finite.size < m.ulps.size else max(
            st["worst_ulps"], float(finite.max()) if finite.size else 0.0)
        st["worst_ratio"] = max(st["worst_ratio"], _masked_copy_max(m.ratio, m.comparable))
        st["worst_ratio_all"] = max(st["worst_ratio_all"],
                                    _masked_copy_max(m.ratio, np.isfinite(m.exact)))
        st["worst_rel"] = max(st["worst_rel"], _masked_copy_max(m.relative, m.comparable))
        res = np.where(m.comparable & (m.exact > 0) & np.isfinite(m.allowed),
                       m.allowed / m.exact, np.inf)
        if res.size:
            st["resolution"] = min(st["resolution"], float(np.nanmin(res)))
    return st


def _chunk(rng, n, p_nan, p_inf, p_mask):
    def figure():
        a = np.abs(rng.standard_normal((2, n))) * 10.0 ** rng.uniform(-30, 30, (2, n))
        a[rng.random((2, n)) < p_nan] = np.nan
        a[rng.random((2, n)) < p_inf] = np.inf
        a[rng.random((2, n)) < 0.05] = 0.0
        return a
    return M.Measures(figure(), figure(), figure(), figure(), figure(),
                      rng.random((2, n)) < p_mask, figure())


@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_fold_equals_the_fold_by_masked_copies(n):
    rng = np.random.default_rng(n)
    for p_nan in (0.0, 0.2, 1.0):
        for p_inf in (0.0, 0.02, 1.0):
            for p_mask in (0.0, 0.5, 1.0):
                parts = [_chunk(rng, n, p_nan, p_inf, p_mask) for _ in range(3)]
                with np.errstate(all="ignore"):
                    want = _fold_by_copies(parts)
                    got = M.fold(parts)
                    merged = M.merged(M.merged(None, M.fold(parts[:1])),
                                       M.fold(parts[1:]))
                assert got == want and merged == want, (n, p_nan, p_inf, p_mask)


def test_a_larger_figure_in_any_chunk_changes_the_fold():
    rng = np.random.default_rng(0)
    parts = [_chunk(rng, 50, 0.0, 0.0, 1.0) for _ in range(2)]
    before = M.fold(parts)
    parts[1].ratio[1, 3] = before["worst_ratio"] * 2
    assert M.fold(parts)["worst_ratio"] == before["worst_ratio"] * 2
