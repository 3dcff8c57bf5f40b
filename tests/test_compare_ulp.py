"""``symgrad.compare.ulp`` from the exponent bits is, entry for entry, the number its log2
definition gives (``_spacing_by_log2``): every float64 exponent, the mantissas at both ends of
a binade and at the edge where log2 may round up, zeros, subnormals, inf and NaN, each dtype."""

import numpy as np
import pytest

from symgrad.compare import DTYPES, ulp
from symgrad.compare.tolerance import _spacing_by_log2


def _by_log2(x: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _spacing_by_log2(np.abs(np.asarray(x, np.float64)), DTYPES[dtype])


def _edges() -> np.ndarray:
    """Every binade's first, second and last mantissas, the last ones outside and inside the
    30-bit edge, and random mantissas; every sign; zeros, subnormals, inf, NaN."""
    e = np.arange(-1022, 1024, dtype=np.float64)
    m = np.array([1.0, 1 + 2.0**-52, 1.5, 2 - 2.0**-30 - 2.0**-52, 2 - 2.0**-30,
                  2 - 2.0**-31, 2 - 2.0**-40, 2 - 2.0**-52])
    rng = np.random.default_rng(0)
    m = np.concatenate([m, rng.uniform(1.0, 2.0, 24)])
    x = np.ldexp(m[None, :], e[:, None].astype(int)).reshape(-1)
    special = np.array([0.0, -0.0, 5e-324, 2.0**-1022 * (1 - 2.0**-52), 1e-310, np.inf,
                        -np.inf, np.nan, np.finfo(np.float64).max])
    return np.concatenate([x, -x, special])


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_ulp_is_the_log2_definition(dtype):
    x = _edges()
    got, want = ulp(x, dtype), _by_log2(x, dtype)
    assert got.view(np.int64).tolist() == want.view(np.int64).tolist()  # bit for bit


def test_ulp_keeps_shape_and_layout():
    x = _edges()[: 6 * 1000].reshape(6, 1000)
    for view in (x, x.T, x[:, ::3], np.asfortranarray(x)):
        assert np.array_equal(ulp(view, "float32"), _by_log2(view, "float32"))
    assert ulp(np.float64(3.0), "float64") == 2.0**-51 and ulp(3.0, "float64").shape == ()


def test_ulp_values():
    # (1 ULP of 1.0 is eps; below tiny the spacing stays tiny's; a wrong exponent fails this)
    assert ulp(np.array([1.0, 1.9, 2.0, 0.0, 1e-310, 1e-300]), "float64").tolist() == [
        2.0**-52, 2.0**-52, 2.0**-51, 2.0**-1074, 2.0**-1074, 2.0**-1049]
    assert ulp(np.array([1.0, 0.75]), "float32").tolist() == [2.0**-23, 2.0**-24]
