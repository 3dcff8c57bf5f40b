"""``symgrad.compare.blockpass``: a large block's three block-test passes as compiled loops
give, bit for bit, numpy's ``_projection_chunked`` (every row's p, sigma, pi, effective
entries and scale) on awkward entries (NaN and inf results, a NaN or inf bound, statuses the
test leaves out, exact zeros, float32 lo and E, a row with no usable entry), and the same
statuses and findings, a planted x1.5 block caught."""

from dataclasses import replace

import numpy as np
import pytest

import symgrad.compare.blocks as blocks
import symgrad.tensor.comparing as comparing
from symgrad.compare import NONFINITE, OVERFLOW, Tolerance, allowance
from symgrad.tensor.comparing import block_tests, compare_compact

K = 3001
BLOCKS = [("w", 1, 1800), ("b", 1800, K)]


def _arrays(wide: bool):
    rng = np.random.default_rng(5)
    n = 4
    hi = rng.standard_normal((n, K)) * 10.0 ** rng.integers(-8, 8, (n, K))
    hi[:, 10:20] = 0.0
    lo = hi * 1e-17 * rng.standard_normal((n, K))
    got = hi * (1 + 1e-15 * rng.standard_normal((n, K)))
    got[1:3, 1:1800] *= 1.5  # a planted bug on w at two samples
    got[0, 50], got[1, 60], got[2, 70] = np.nan, np.inf, -np.inf
    got[3, :] = np.nan  # a row with no usable entry
    E = np.abs(rng.standard_normal((n, K))) * 1e3
    E[0, 80], E[2, 2500] = np.nan, np.inf
    if wide:
        lo, E = lo.astype(np.float32), E.astype(np.float32)
    return hi, lo, got, E


@pytest.mark.parametrize("wide, dtype, chunk", [(False, "float64", 700), (True, "float64", 700),
                                                (True, "float32", 700), (True, "float64", None),
                                                (False, "float32", None)])
def test_the_compiled_passes_are_numpys(monkeypatch, wide, dtype, chunk):
    monkeypatch.setattr(comparing, "COMPILED_FROM", 0)  # (a small comparison: compiled too)
    if chunk is not None:  # both blocks large, in column chunks (else each read whole)
        monkeypatch.setattr(blocks, "BLOCK_CHUNK", chunk)
    hi, lo, got, E = _arrays(wide)
    tol = Tolerance()
    comp = compare_compact(hi, lo, got, E, backend="b", dtype=dtype, tol=tol, deferred=True)
    status = comp.status.copy()
    status[0, 100:110], status[1, 200:205] = OVERFLOW, NONFINITE  # left out of the test
    comp = replace(comp, status=status)
    compared = []
    real = blocks.projection

    def both(arrays, status, spans, ws, dtype, tol, whole):
        fast = real(arrays, status, spans, ws, dtype, tol, whole=whole)
        a, b = spans[0][0], spans[-1][1]
        columns = lambda c, d: (hi[:, c:d], (got[:, c:d] - hi[:, c:d]) - lo[:, c:d],  # noqa
                                lambda: _allowed(E[:, c:d], dtype, tol))
        usable = lambda exact, err, c, d: (np.isfinite(err) & np.isfinite(exact)  # noqa
                                           & blocks._member(status[:, c:d], (0, 1, 2, 7, 9)))
        if whole:  # (its scale: as _projection forms it)
            exact, err, allowed = columns(a, b)
            slow = blocks._projection(exact, err, allowed, usable(exact, err, a, b))
            scale = blocks._row_scale(exact, usable(exact, err, a, b))[:, None]
            slow["scale"] = np.where(scale > 0, scale, 1.0)
        else:
            slow = blocks._projection_chunked(columns, usable, len(status), a, b)
        assert len(spans) == 1 if whole else len(spans) > 1
        for k in fast:
            assert np.array_equal(fast[k], slow[k], equal_nan=True), k
        compared.append((a, b))
        return fast
    monkeypatch.setattr(blocks, "projection",
                        lambda *a, whole=False: both(*a, whole=whole))
    found = block_tests(comp, hi, lo, E, BLOCKS, tol)
    assert compared == [(a, b) for _, a, b in BLOCKS]
    monkeypatch.setattr(blocks, "projection", None)  # numpy's passes throughout
    real_blocks = comparing.systematic_blocks
    monkeypatch.setattr(comparing, "systematic_blocks",
                        lambda *a, arrays=None, **k: real_blocks(*a, **k))
    plain = block_tests(comp, hi, lo, E, BLOCKS, tol)
    assert np.array_equal(found.status, plain.status)
    assert repr(found.systematic) == repr(plain.systematic)
    assert ("w", 1) in [(f.block, f.sample) for f in found.systematic]  # (the planted bug)


def _allowed(E, dtype, tol):
    out = allowance(E, dtype, tol)
    np.putmask(out, np.isnan(out), np.inf)
    return out
