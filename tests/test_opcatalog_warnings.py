"""``symgrad ops`` prints nothing but its report: the catalogue rows whose programs meet NaN / inf
where the math is undefined (std of a constant row: 0/0 in an einsum of the numpy view) or
where a side's gradient is infinite (logcumsumexp's sides: inf - inf in the separability test)
computed those under a narrow ``np.errstate``, not a global filter. Before, ``symgrad ops
--dtype float64,float32,bfloat16`` printed ~25 numpy RuntimeWarnings ("invalid value
encountered in multiply" from ``NumpyOps.einsum``, "... in subtract" from
``tensor/sides._interaction``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from symgrad.opcatalog import OpsConfig
from symgrad.opcatalog.run import run_one
from symgrad.opcatalog.table import by_name
from symgrad.tensor.tables import NumpyOps


def _row(op: str, dtype: str, **kw):
    cfg = OpsConfig(ops=(op,), dtypes=(dtype,), budget=32, seed=0, progress=False, **kw)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        row = run_one(by_name(op), dtype, cfg, {"derive_s": 0.0, "verify_s": 0.0,
                                                 "gradcheck_s": 0.0})
    return row, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in seen
                 if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("op,dtype,kw", [
    ("std", "float64", {"second_order": False, "gradcheck": False}),  # einsum: inf * 0
    ("logcumsumexp", "float64", {"gradcheck": False}),  # sides: inf - inf
])
def test_catalogue_rows_that_meet_nan_print_no_runtime_warning(op, dtype, kw):
    row, runtime = _row(op, dtype, **kw)
    assert row.status not in ("error", "unexplained"), (row.status, row.note)
    assert runtime == []


def test_numpy_view_einsum_keeps_ieee_results_without_a_warning():
    """inf * 0 in the numpy backend's contraction is NaN, as torch computes it; silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = NumpyOps("float64").einsum("i,i->", np.array([np.inf, 1.0]), np.array([0.0, 2.0]))
    assert np.isnan(out)
    assert np.geterr()["invalid"] == "warn"  # the global state untouched
