"""Capture does not depend on torch's private stack-trace hook
(``torch.fx.proxy._register_stack_trace_anchor``): without it (or when it refuses), capture and
gradcheck still work, and a refusal still names the op in one line (a module's ``forward``
line is still named; a plain function's line may be lost)."""

from __future__ import annotations

import pytest
import torch

import symgrad as sg

HOOK = "_register_stack_trace_anchor"


def _x(n: int) -> torch.Tensor:
    return torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                       requires_grad=True)


class Cumsum(torch.nn.Module):
    def forward(self, x):
        return torch.cumprod(x, 0).sum()  # the module's unsupported line


def _broken(fn):
    raise TypeError("changed signature")


@pytest.mark.parametrize("hook", ["absent", "raises"])
def test_capture_works_without_the_private_hook(hook, monkeypatch):
    if hook == "absent":
        monkeypatch.delattr(torch.fx.proxy, HOOK, raising=False)
        assert not hasattr(torch.fx.proxy, HOOK)
    else:
        monkeypatch.setattr(torch.fx.proxy, HOOK, _broken, raising=False)
    assert sg.gradcheck(lambda W, x: torch.tanh(W @ x).sum(),
                        (_x(6).detach().view(2, 3).requires_grad_(), _x(3)))

    def fn(x):
        return torch.cumprod(x, 0).sum()

    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (_x(5),))
    assert "\n" not in str(err.value) and "aten.cumprod" in str(err.value)
    with pytest.raises(sg.SymgradError) as err:
        sg.capture(Cumsum(), (_x(5),), module_params="input")
    msg = str(err.value)
    assert "aten.cumprod" in msg and "the module's unsupported line" in msg


def test_train_hint_comes_from_the_caller_not_the_message_prefix():
    """Only a caller with a ``train=`` option (``has_train=True``, as ``sg.verify(module=)``
    passes) is told to check it; ``sg.capture`` of the same train-mode module is not, whatever
    its ``who=`` says."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5)).double()
    x = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for who, has_train, hinted in [("verify(module=Sequential)", False, False),
                                   ("capture('Sequential')", True, True),
                                   (None, False, False)]:
        with pytest.raises(sg.SymgradError) as err:
            sg.capture(net, (x,), who=who, has_train=has_train)
        msg = str(err.value)
        assert "Expected more than 1 value per channel" in msg and "\n" not in msg, msg
        assert ("train= (the module ran in train mode)" in msg) is hinted, msg
