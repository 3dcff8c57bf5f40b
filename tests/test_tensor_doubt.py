"""The oracle's ARB certificate judged against the comparer's allowances (symgrad.tensor.doubt):
an exactly-zero gradient whose DD value is ~1e-30 of cancellation is certified, not an error;
an entry the ball cannot decide is inconclusive with its reason."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import symgrad as sg
import symgrad.tensor as st
import symgrad.tensor.verify as tverify
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward

C = [1000.0, 2000.0, 3000.0, 4000.0]


def _shift() -> TensorModel:
    """sum softmax(x + b) * C: d/db is exactly 0 (softmax is shift invariant); DD leaves
    ~3e-30 of cancellation, above certify_view's absolute claim of 1e-30."""
    x, b = st.param("x", (4,)), st.param("b", (1,))
    return TensorModel("shift", st.sum_(st.softmax(x + b) * st.const(C)))


def _fn(x, b, factor=1.0):
    x = scale_backward(x, factor) if factor != 1.0 else x
    return (torch.softmax(x + b, -1) * torch.tensor(C, dtype=x.dtype)).sum()


def test_an_exactly_zero_gradient_is_certified_within_its_allowance():
    r = sg.verify(_shift(), torch_fn=_fn, samples=4, seed=0, dtype="float64")
    assert r.verdict == "pass"
    assert "1 more known to within" in r.program_size["oracle_certified"]
    bad = sg.verify(_shift(), torch_fn=lambda x, b: _fn(x, b, 1 + 1e-9), samples=4, seed=0,
                    dtype="float64")
    assert bad.verdict == "fail"


def test_an_entry_the_ball_cannot_decide_is_inconclusive_with_its_reason(monkeypatch):
    real = tverify.certify_view

    def wide(*args, **kwargs):  # the ball of d/db[0] as wide as 1: nothing decided there
        cert = real(*args, **kwargs)
        e, ok, rad = cert.error_bound.copy(), cert.certified.copy(), cert.radius.copy()
        e[5], ok[5], rad[5] = 1.0, False, 1.0
        return replace(cert, error_bound=e, certified=ok, n_certified=int(ok.sum()),
                       radius=rad)
    monkeypatch.setattr(tverify, "certify_view", wide)
    r = sg.verify(_shift(), torch_fn=_fn, samples=4, seed=0, dtype="float64")
    assert r.verdict == "inconclusive"
    assert "1 in doubt" in r.program_size["oracle_certified"]
    notes = {f.output: f.note for f in r.undecided}
    assert "d/db[0]" in notes and "certified by ARB balls only to 1" in notes["d/db[0]"]
    comp = r.comparisons["torch_fn"]
    assert np.all(comp.status[:, 5] == sg.compare.INCONCLUSIVE)


def test_a_tight_ball_far_from_the_oracle_is_an_error_not_a_doubt(monkeypatch):
    """The same entry off by 1 with a ball of radius 1e-40: the oracle is wrong, not undecided."""
    real = tverify.certify_view

    def off(*args, **kwargs):
        cert = real(*args, **kwargs)
        e, ok, rad = cert.error_bound.copy(), cert.certified.copy(), cert.radius.copy()
        e[5], ok[5], rad[5] = 1.0, False, 1e-40
        return replace(cert, error_bound=e, certified=ok, n_certified=int(ok.sum()),
                       radius=rad)
    monkeypatch.setattr(tverify, "certify_view", off)
    with pytest.raises(sg.SymgradError, match="'shift'.*not certified by ball arithmetic"):
        sg.verify(_shift(), torch_fn=_fn, samples=4, seed=0, dtype="float64")
