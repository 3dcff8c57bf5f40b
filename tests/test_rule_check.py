"""The float64 rule check (``symgrad.tensor.rulecheck``): a backward rule wrong only where
float32 rounds the error away (SiLU's backward 1 for x > 20: the buggy float32 gradient is the
correctly rounded exact value) fails in a float32 ``sg.gradcheck`` and ``sg.verify(module=)``,
as "<backend> in float64", saying what it is; correct code passes, also code that picks a
constant by dtype (``torch.finfo(x.dtype).eps``: another function in float64, not checked);
``rule_check=False`` is the narrow run alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.errors import SymgradError


def _silu_grad(x):
    return torch.sigmoid(x) * (1 + x * torch.sigmoid(-x))


class Silu(torch.autograd.Function):
    """SiLU with its backward 1 for x > ``Silu.cut`` (inf: correct)."""
    cut = 20.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x > Silu.cut, torch.ones_like(x), _silu_grad(x))


class Good(Silu):
    """The same, correct everywhere."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _silu_grad(x)


BIG = torch.tensor([-3.0, 0.5, 2.0, 21.0, 25.0])


def test_silu_backward_1_above_20_fails_in_float32_as_a_wrong_rule():
    x = BIG.clone().requires_grad_()
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(Silu.apply, (x,))
    text = str(info.value)
    assert "backward rule of 'Silu' is wrong, seen in float64" in text.splitlines()[0]
    assert "with respect to x[3]" in text or "with respect to x[4]" in text
    r = info.value.result
    assert r.verdict == "fail"
    assert {f.backend for f in r.failures} == {"torch_fn in float64"}
    # the float32 gradient itself passes: every entry ok (the bug is invisible in float32)
    assert r.counts("torch_fn")["mismatch"] == 0
    failing = {int(f.output[len("d/dx["):-1]) for f in r.failures}
    assert failing <= {3, 4}, failing  # only x > 20 (samples scale x by [5/8, 11/8])
    assert any("correctly rounded exact value" in e for e in
               r.comparisons["torch_fn in float64"].evidence)


def test_rule_check_off_is_the_float32_run_alone():
    x = BIG.clone().requires_grad_()
    assert sg.gradcheck(Silu.apply, (x,), rule_check=False)


@pytest.mark.parametrize("fn", [Good.apply, F.silu, lambda x: F.relu(x) * x.tanh()],
                         ids=["custom-silu", "torch-silu", "relu-tanh"])
def test_correct_code_passes_with_the_rule_check(fn):
    x = torch.tensor([-3.0, 0.0, 0.5, 2.0, 21.0, 25.0]).requires_grad_()
    assert sg.gradcheck(fn, (x,))


def test_a_constant_chosen_by_dtype_is_not_held_against_the_rule():
    """eps = finfo(dtype).eps: in float64 the code computes another function (its value
    departs from the captured float32 one), so nothing is checked in float64: a pass."""
    def f(x):
        return x / (x.pow(2).sum().sqrt() + 1e3 * torch.finfo(x.dtype).eps)
    x = torch.tensor([1e-4, -2e-4, 3e-4]).requires_grad_()
    assert sg.gradcheck(f, (x,))


def test_a_module_with_the_silu_rule_fails_named_in_float32():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return Silu.apply(self.lin(x)).sum()
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # outputs above 20 at the example
        net.lin.weight.copy_(torch.tensor([[8.0, 1.0, 0.5], [-1.0, 0.25, 2.0]]))
        net.lin.bias.copy_(torch.tensor([10.0, 0.5]))
    x = torch.tensor([[1.5, 1.0, 2.0], [0.5, -1.0, 0.25]])
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.verdict == "fail"
    assert {f.backend for f in r.failures} == {"module in float64"}
    assert all(f.output.startswith("d/dlin.") for f in r.failures)
    assert all("seen in float64" in f.cause for f in r.failures)
    off = sg.verify(module=net, inputs=x, dtype="float32",
                    config=VerifyConfig(rule_check=False))
    assert off.verdict != "fail" and "module in float64" not in off.comparisons


def test_rule_check_must_be_a_bool():
    with pytest.raises(SymgradError, match="rule_check must be True or False"):
        VerifyConfig(rule_check="yes")


def test_bfloat16_undecided_entries_the_rule_check_proves_wrong_fail():
    """bfloat16 cannot resolve SiLU's derivative above 20 (those entries are undecided, within
    its allowance): the float64 rule check proves the rule wrong there; the correct code stays
    undecided (never a fail)."""
    x = BIG.to(torch.bfloat16).requires_grad_()
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(Silu.apply, (x,))
    assert "backward rule of 'Silu' is wrong, seen in float64" in str(info.value)
    assert {f.backend for f in info.value.result.failures} == {"torch_fn in float64"}
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(Good.apply, (x,))
    assert info.value.result.verdict == "inconclusive"
