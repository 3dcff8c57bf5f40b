"""Confirmation's fresh samples (``symgrad.tensor.fresh``) get the run's own oracle: a row in the
double-double's underflow zone is evaluated in balls up to the run's cap
(``views.zone_bits(cfg)``), not the module default's. Before, ``fresh_oracle`` called
``oracle_view`` without ``zone_bits``, so a run with a small ``oracle_max_bits`` still spent up
to 2048 bits on its fresh samples (and a larger cap was never reached there)."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.tensor import fresh, views
from symgrad.verify import as_program
from tests.test_confirm_kinks import _kinked_tensor, _kinked_tensor_fn
from tests.test_zone_cancel import MLP, ZONE_POINT

W2_01 = 1 + 15 + 5 + 1  # the column of d/dW2[0,1] (after the value, W1 and b1)


def _zone_values(model):
    return {b.name: np.asarray(ZONE_POINT[b.name], float)[None] for b in model.blocks}


def test_fresh_oracle_zone_cap_follows_the_config():
    """At the zone point d/dW2[0,1] = -e^-6883.5 / 4 needs 2048-bit balls (a cancellation of
    order-1 terms): certified (0.0) under the default config, left open (NaN, as the run leaves
    it) under oracle_max_bits=2048, whose zone cap is 1024 bits."""
    model = as_program(MLP)
    values = _zone_values(model)
    out = {}
    for cap in (None, 2048):
        cfg = VerifyConfig() if cap is None else VerifyConfig(oracle_max_bits=cap)
        hi, _, kinks = fresh.fresh_oracle(model, values, views.oracle_ops(cfg.oracle_dps),
                                          ["float64"], cfg=cfg)
        out[cap] = hi[0]
        assert kinks is None
    assert out[None][W2_01] == 0.0
    assert np.isnan(out[2048][W2_01])
    assert np.flatnonzero(np.isnan(out[2048])).tolist() == [W2_01]


@pytest.mark.parametrize("max_bits", [256, 8192])
def test_run_fresh_samples_use_the_run_zone_bits(monkeypatch, max_bits):
    """A planted 1e-13 bias on a kinked tensor model is a suspicion confirmed on fresh samples;
    the fresh samples' oracle is asked for the run's zone bits (observed at its call)."""
    seen = []
    real = fresh.oracle_view

    def watch(*args, **kwargs):
        seen.append(kwargs.get("zone_bits"))
        return real(*args, **kwargs)
    monkeypatch.setattr(fresh, "oracle_view", watch)
    cfg = VerifyConfig(samples=64, seed=0, oracle_max_bits=max_bits)
    r = sg.verify(_kinked_tensor(), torch_fn=_kinked_tensor_fn(1 + 1e-13), config=cfg,
                  backends=("torch_fn",))
    [f] = r.comparisons["torch_fn"].systematic
    assert f.confirmed and "fresh samples" in f.evidence
    assert seen == [views.zone_bits(cfg)] and seen[0] != views.ZONE_BITS
