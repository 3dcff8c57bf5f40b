"""sg.verify(module=, inputs=): a float input or target in another dtype than the module and the
run is refused in one line naming it and both dtypes (torch itself refuses the mix; symgrad
used to convert it silently), and the default number of points is the pooled test's minimum, so
a run without samples= does not end with "resolution not reached"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.compare import Tolerance
from symgrad.modules.any import DEFAULT_SAMPLES
from tests.clients import seeded


def _x(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _net(dtype: torch.dtype) -> torch.nn.Module:
    with seeded(0):
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                   torch.nn.Linear(4, 2)).to(dtype)


@pytest.mark.parametrize("run,given", [("float32", torch.float64), ("float64", torch.float32)])
def test_an_input_of_another_dtype_is_refused(run, given):
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(module=_net(getattr(torch, run)), inputs=_x(5, 3, dtype=given), dtype=run,
                  samples=2)
    text = str(err.value)
    got = str(given).removeprefix("torch.")
    assert len(text.splitlines()) == 1, text
    assert f"inputs is {got}" in text and f"run are {run}" in text, text


def test_a_float_target_of_another_dtype_is_refused_by_name():
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(module=_net(torch.float64), inputs=_x(5, 3),
                  targets=_x(5, 2, dtype=torch.float32, seed=1), loss=F.mse_loss, samples=2)
    assert "targets is float32" in str(err.value), str(err.value)


def test_the_default_points_are_enough_for_the_pooled_test():
    assert DEFAULT_SAMPLES >= Tolerance().pooled_min_samples
    r = sg.verify(module=_net(torch.float64), inputs=_x(5, 3),
                  targets=torch.tensor([0, 1, 1, 0, 1]), loss=F.cross_entropy)
    assert r.verdict == "pass", str(r)
    assert r.config.samples == DEFAULT_SAMPLES
    assert "resolution not reached" not in str(r), str(r)
