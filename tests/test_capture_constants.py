"""The README's promise for a constant array the forward builds (a RoPE table): computed inside
forward from shapes alone in a float64 run, or registered as a buffer, it is held at its float64
values, and a wrong backward is still caught there (the float32 mix is refused:
tests/test_capture_forward_constants.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import symgrad as sg


def _table(n: int, dtype: torch.dtype) -> torch.Tensor:
    """cos of RoPE-like angles: not exactly representable in float32 when computed in float64."""
    return torch.cos(torch.arange(n, dtype=dtype) * 0.3)


class InForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) * _table(4, x.dtype)  # the table built here, from shapes alone


class AsBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("table", _table(4, torch.float64))

    def forward(self, x):
        return self.lin(x) * self.table


def _x() -> torch.Tensor:
    return torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _module(cls: type[nn.Module]) -> nn.Module:
    """``cls()`` in float64, its parameters drawn from seed 0; torch's global RNG restored."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        return cls().double()
    finally:
        torch.random.set_rng_state(state)


def test_the_tables_are_not_float32_exact():
    t = _table(4, torch.float64)
    assert not torch.equal(t.float().double(), t)


def test_a_table_built_in_forward_is_held_at_its_float64_values():
    m = _module(InForward)
    r = sg.verify(module=m, inputs=_x(), loss=lambda out: (out ** 2).sum())
    assert r.verdict == "pass", str(r)


@pytest.mark.parametrize("factor", [1.0, 1 + 1e-9])
def test_a_table_as_a_float64_buffer_is_verified(factor):
    m = _module(AsBuffer)
    hook = m.lin.weight.register_hook(lambda g: g * factor)
    try:
        r = sg.verify(module=m, inputs=_x(), loss=lambda out: (out ** 2).sum())
    finally:
        hook.remove()
    assert r.verdict == ("pass" if factor == 1.0 else "fail"), str(r)
    if factor != 1.0:
        assert "lin.weight[" in str(r)
