import numpy as np
import pytest

from symgrad.compare import (DOMAIN, LOSS, MISMATCH, NONFINITE, OK, SymgradError, Tolerance,
                             compare, ulp)


def test_ulp_matches_numpy_spacing():
    x = np.array([1.0, 3.5, 1e-300, 1e300, 0.1])
    assert np.array_equal(ulp(x, "float64"), np.spacing(x))
    x32 = np.array([1.0, 3.5, 0.1], dtype=np.float32)
    assert np.array_equal(ulp(x32.astype(np.float64), "float32"),
                          np.spacing(x32).astype(np.float64))
    assert ulp(np.array([0.0]), "float64")[0] == 2.0**-1074


def _cmp(exact, got, bound, dtype="float64", lo=None):
    exact = np.atleast_2d(np.asarray(exact, dtype=np.float64))
    return compare(exact, np.zeros_like(exact) if lo is None else lo,
                   np.atleast_2d(np.asarray(got, dtype=np.float64)),
                   np.atleast_2d(np.asarray(bound, dtype=np.float64)),
                   backend="b", dtype=dtype, tol=Tolerance())


def test_verdict_uses_the_bound_not_a_fixed_tolerance():
    # the same absolute error passes where the bound is large and fails where it is small
    assert _cmp(1e-3, 1e-3 + 1e-15, 1e3).status[0, 0] in (OK, LOSS)
    assert _cmp(1e-3, 1e-3 + 1e-15, 1e-3).status[0, 0] == MISMATCH


def test_twelfth_digit_error_is_caught_when_well_conditioned():
    c = _cmp(0.7, 0.7 * (1 + 1e-12), 3 * 0.7)
    assert c.status[0, 0] == MISMATCH and c.ulps[0, 0] > 1000


def test_error_classes():
    c = _cmp([[1.0, 1.0, np.nan, 1.0]], [[1.0, np.nan, 1.0, np.inf]], [[1.0, 1.0, 1.0, 1.0]])
    assert list(c.status[0]) == [OK, NONFINITE, DOMAIN, NONFINITE]
    assert not c.ok


def test_precision_loss_is_flagged_but_passes():
    c = _cmp([[0.5, 1.0]], [[0.5, 1 + 1e-12]], [[1.0, 1e4]])
    assert c.status[0, 1] == LOSS and c.ok


def test_double_double_exact_value_is_used():
    exact_hi = np.array([[1.0]])
    lo = np.array([[2.0**-60]])
    c = _cmp(exact_hi, 1.0, 1.0, lo=lo)
    assert 0 < c.ulps[0, 0] < 0.01


def test_float32_ulps_are_float32_ulps():
    got = np.float32(1.0) + np.spacing(np.float32(1.0)) * 3
    assert _cmp(1.0, float(got), 1.0, dtype="float32").ulps[0, 0] == pytest.approx(3)


def test_unknown_dtype_is_named():
    with pytest.raises(SymgradError, match="unknown dtype 'float8'"):
        _cmp(1.0, 1.0, 1.0, dtype="float8")


def test_rule_is_written_down():
    assert "safety" in Tolerance().as_dict() and "u * E" in Tolerance().rule()
