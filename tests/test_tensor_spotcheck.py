"""Spot certification of the DD oracle (symgrad/tensor/spotcheck.py): every non-exact step of
sample 0 re-evaluated at a few entries with ARB balls from the step's own DD inputs."""

import numpy as np
import pytest

import symgrad as sg
import symgrad.tensor.verify as tv
from symgrad.errors import SymgradError
from symgrad.precise import DD, DDOps
from symgrad.tensor.spotcheck import SpotCheck, SpotConfig
from symgrad.tensor.views import oracle_view
from symgrad.zoo.gpt2 import tiny_gpt


class _MatmulDropsLow(DDOps):
    """A broken oracle: products of the leading parts only (~1e-16 relative error)."""

    def matmul3(self, a: DD, b: DD) -> DD:
        return DD(np.matmul(a.hi, b.hi))


class _MapInFloat64(DDOps):
    """A broken oracle: elementwise maps rounded to float64 (the low part dropped)."""

    def map(self, expr, args):
        out = super().map(expr, args)
        return DD(out.hi)


def _spot(table, **kw):
    m = tiny_gpt()
    spot = SpotCheck(SpotConfig(**kw))
    oracle_view(m, m.draw(1, np.random.default_rng(0), "float64"), table, spot=spot)
    return spot


def test_every_kind_of_step_of_a_gpt_is_certified_far_below_the_claim():
    spot = _spot(DDOps(), entries_per_node=2)
    assert spot.ok, spot.summary()
    assert {"einsum", "map", "sum", "scatter_add"} <= set(spot.by_op)
    assert spot.entries >= 2 * 100 and spot.worst_rho < 1e-30


@pytest.mark.parametrize("table, op", [(_MatmulDropsLow(), "einsum"), (_MapInFloat64(), "map")])
def test_a_broken_double_double_step_is_caught(table, op):
    spot = _spot(table, entries_per_node=2)
    assert not spot.ok
    assert spot.failures[0].startswith(op) or any(f.startswith(op) for f in spot.failures)
    assert spot.by_op[op] > 1e-20


def test_verify_spot_certifies_models_above_the_whole_ball_check(monkeypatch):
    monkeypatch.setattr(tv, "CERTIFY_UP_TO", 0)  # tiny_gpt takes GPT-2's path
    r = sg.verify(tiny_gpt(), samples=2, seed=0)
    assert r.ok and r.program_size["oracle_certified"].startswith("spot-certified")
    with pytest.raises(SymgradError, match="not certified by ball arithmetic.*einsum"):
        tv.verify_tensor(tiny_gpt(), torch_fn=None, cfg=sg.VerifyConfig(samples=1),
                         oracle_table=_MatmulDropsLow())
