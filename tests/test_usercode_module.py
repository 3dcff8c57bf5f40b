"""``sg.verify(module=, inputs=)``: a bug in the user's module that only its eager autograd
run reaches (after the capture's run without grad and its trace passed) is one
``SymgradError`` line naming the user's own frame and the shapes the module received, as a
``torch_fn``'s is (``capture/usercode.user_error``); so is a forward that raises only under
autograd (the capture re-runs it with grad before calling it a tracing failure)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.captured import capture
from symgrad.errors import SymgradError


def _line(f, text):
    lines, start = inspect.getsourcelines(f)
    return start + next(i for i, s in enumerate(lines) if text in s)


class EagerOnly(nn.Module):
    """A check that runs only eagerly with grad (as transformers' code skips its checks
    while compiling), with a shape bug in it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            h = h + x  # the bug: (4, 2) + (4, 3)
        return h


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        ctx.save_for_backward(h)
        return h * h

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        return 2 * h @ g  # the bug: a matrix product, not elementwise


class BadBackward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return Square.apply(self.lin(x))


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        x.clamp_(min=0)  # the bug: in place on an input that requires grad
        return self.lin(x)


def _raised(module):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = module.double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    with pytest.raises(SymgradError) as err:
        sg.verify(module=module, inputs=x, targets=torch.tensor([0, 1, 1, 0]),
                  loss=F.cross_entropy, samples=2)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def test_a_forward_that_raises_only_in_the_eager_autograd_run_names_its_line_and_shapes():
    msg = _raised(EagerOnly())
    line = _line(EagerOnly.forward, "# the bug")
    assert msg.startswith("verify(module=EagerOnly): its eager forward raised RuntimeError: "
                          "The size of tensor a (2) must match the size of tensor b (3)"), msg
    assert f"(at test_usercode_module.py:{line}, in forward)" in msg, msg
    assert "; it received x (4, 3), targets (4,); check its forward" in msg, msg
    assert "torch.is_grad_enabled()" in msg, msg


def test_a_custom_functions_backward_inside_a_module_names_the_backwards_line():
    msg = _raised(BadBackward())
    line = _line(Square.backward, "# the bug")
    assert msg.startswith("verify(module=BadBackward): its eager backward raised RuntimeError:"
                          " mat1 and mat2 shapes cannot be multiplied (4x2 and 4x2)"), msg
    assert f"(at test_usercode_module.py:{line}, in backward)" in msg, msg
    assert "it received x (4, 3), targets (4,); check its backward" in msg, msg


def test_a_forward_that_raises_only_under_autograd_is_the_users_bug_not_a_trace_failure():
    msg = _raised(InPlace())
    line = _line(InPlace.forward, "# the bug")
    assert msg.startswith("verify(module=InPlace): running it on inputs= raised RuntimeError: "
                          "a leaf Variable that requires grad is being used in an in-place "
                          "operation"), msg
    assert f"(at test_usercode_module.py:{line}, in forward)" in msg, msg
    assert "torch.export cannot trace" not in msg and "under autograd" in msg, msg


class Doubles(nn.Module):
    """A forward that changes its input in place (x is not differentiated: allowed)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        x.mul_(2)
        return self.lin(x)


def test_a_forward_that_changes_its_input_in_place_changes_no_one_elses_copy():
    """symgrad's runs of such a forward leave the user's tensor, the capture's example (the
    user's point) and the samples as they were; before, x came back x4 (the first eager run
    and the probe each doubled the user's own storage) and the example was x2."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Doubles().double()
    x = torch.ones(4, 3, dtype=torch.float64)
    r = sg.verify(module=net, inputs=x, samples=3)
    assert r.ok, r
    assert torch.equal(x, torch.ones(4, 3, dtype=torch.float64))
    c = capture(net, (x,))
    assert (c.example["x"] == 1).all() and torch.equal(x, torch.ones(4, 3, dtype=torch.float64))
    net.lin.weight.register_hook(lambda g: g * (1 + 1e-9))  # still caught
    assert sg.verify(module=net, inputs=x, samples=3).verdict == "fail"
