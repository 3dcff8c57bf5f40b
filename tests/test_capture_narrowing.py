"""A captured module that casts to a lower-precision float inside the run (Hugging Face's
LlamaRMSNorm computes in float32 and casts back): in a float64 run that part rounds in float32,
beyond the float64 bound, so it fails - named as the user's own lower precision (the cause a
torch_fn's ``.float()`` gets), with the line that casts; the same module in float32, and a
bfloat16 run that only widens to float32, have no such cast to name."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn

import symgrad as sg
from symgrad.capture.captured import capture


class Down(nn.Module):
    """An RMSNorm computed in float32 whatever the run's dtype, cast back."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x).to(torch.float32)
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def _module(dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Down().to(dtype)


def _x(dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_a_float32_cast_in_a_float64_run_fails_named_as_lower_precision_with_its_line():
    r = sg.verify(module=_module(torch.float64), inputs=_x(torch.float64), samples=1)
    assert r.verdict == "fail"
    line = inspect.getsourcelines(Down.forward)[1] + 1  # h = self.lin(x).to(torch.float32)
    for f in r.findings("failures"):
        assert "lower precision in user code" in f.message(), f.message()
        assert f"to() gave float32 at " in f.explanation and f":{line}" in f.explanation, \
            f.explanation
        assert "in a float64 run" in f.explanation, f.explanation


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_narrowing_where_the_run_is_as_narrow_or_the_cast_widens(dtype):
    m, x = _module(dtype), _x(dtype).requires_grad_()
    assert capture(m, (x,)).model.lowered == ()
    assert capture(_module(torch.float64), (_x(torch.float64).requires_grad_(),)
                   ).model.lowered[0].startswith("to() gave float32 at ")
