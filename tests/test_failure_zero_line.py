"""``Failure.message`` at an exact 0 (newuser6): a failing or undecided line gives the error and
the allowance in absolute terms (ULPs of a 0 count subnormal steps: "error inf ULPs (allowed
1.8e+16)"); a precision-loss warning keeps the table's ULPs, and a finding without its
absolute allowance (not kept) reads as before."""

from __future__ import annotations

from symgrad.result import Failure


def _f(kind="mismatch", expected=0.0, allowed_abs=8.9e-308, ulps=float("inf"), allowed=1.8e16):
    return Failure("torch_fn", kind, "d/dx[1, 3]", 0, {"x": 1.0}, expected, -4.77e-08, ulps,
                   allowed, allowed_abs=allowed_abs)


def test_a_failure_at_an_exact_zero_reads_in_absolute_terms():
    line = _f().message()
    assert "error 4.77e-08 absolute (allowed 8.9e-308; the exact value is 0)" in line, line
    assert "ULPs" not in line and "1.8e+16" not in line, line
    assert "error 4.77e-08 absolute (allowed" in _f(kind="inconclusive").message()


def test_elsewhere_the_line_keeps_its_ulps():
    assert "error inf ULPs (allowed 1.8e+16)" in _f(allowed_abs=float("nan")).message()
    assert "error 3 ULPs (allowed 40)" in _f(kind="precision loss", ulps=3.0,
                                             allowed=40.0).message()
    nonzero = _f(expected=1.0, ulps=2e8, allowed=20.0).message()
    assert "error 2e+08 ULPs (allowed 20)" in nonzero, nonzero
