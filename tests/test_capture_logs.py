"""A capture leaves nothing in pytest's "Captured log call": torch.export's structured-trace
logger (``torch.__trace``, which torch itself sets to DEBUG) is quiet while tracing, and every
quieted logger's level is restored afterwards."""

from __future__ import annotations

import logging

import torch

import symgrad as sg
from symgrad.capture.export import QUIET_LOGGERS


def _x() -> torch.Tensor:
    return torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def test_gradcheck_logs_nothing_from_torch(caplog):
    levels = {n: logging.getLogger(n).level for n in QUIET_LOGGERS}
    assert sg.gradcheck(torch.tanh, (_x().requires_grad_(True),))
    torch_records = [f"{r.name}: {r.getMessage()[:60]}" for r in caplog.records
                     if r.name.startswith("torch")]
    assert torch_records == [], torch_records[:3]
    assert {n: logging.getLogger(n).level for n in QUIET_LOGGERS} == levels


def test_verify_module_logs_nothing_from_torch(caplog):
    net = torch.nn.Linear(4, 2).double()
    assert sg.verify(module=net, inputs=_x()[None], samples=2).verdict == "pass"
    assert [r.name for r in caplog.records if r.name.startswith("torch")] == []
