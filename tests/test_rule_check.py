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


def test_the_resolution_says_what_the_float64_evidence_could_see_and_it_is_real():
    """``Result.resolution`` counts the float64 rule check and the block test's float64
    re-run floor where the run had them: a float32 neuron resolves a backward scale of ~1e-14
    (float64's allowance or enclosure over |exact|), not the entry test's ~1e-5; scaled by
    1 + s/2 it passes, by 1 + 2 s it fails ("torch_fn in float64"). Without the rule check
    the re-run floor, rerun_floor u, is a floor: below it, still a pass."""
    from symgrad import zoo
    from symgrad.testing import scale_backward
    from symgrad.zoo import native
    m = zoo.get("neuron")

    def run(s=0.0, **config):
        def fn(w, b, x, y):
            return native.neuron(scale_backward(w, 1 + s), scale_backward(b, 1 + s), x, y)
        return sg.verify(m, torch_fn=fn, samples=20, seed=0, dtype="float32",
                         backends=("torch_fn",), config=VerifyConfig(**config))
    res = run().resolution("torch_fn")
    s = res["smallest"]
    assert s == res["rule_check"] and 0 < s < 1e-12 and res["entry"] > 1e-7
    assert res["rerun_floor"] == 2.0**-24  # rerun_floor 1 u of float32
    assert res["tests"] == "entry test, float64 rule check, block test at the float64 re-run floor"
    assert f"below {s:.2g} relative would not be seen in float32" in res["text"]
    below, above = run(s / 2), run(2 * s)
    assert below.verdict == "pass" and not below.failures, str(below)
    assert above.verdict == "fail" and {f.backend for f in above.failures} == {
        "torch_fn in float64"}
    off = run(rule_check=False).resolution("torch_fn")
    assert off["rule_check"] is None and off["smallest"] == off["rerun_floor"] == 2.0**-24
    assert "float64 rule check" not in off["tests"] and ">= 6e-08" in off["text"]
    assert run(off["smallest"] / 2, rule_check=False).verdict == "pass"
    # float64 itself: the entry test alone (no float64 evidence beyond its own run)
    r64 = sg.verify(m, torch_fn=m.reference, samples=20, seed=0, backends=("torch_fn",))
    assert r64.resolution("torch_fn")["tests"] == "entry test"


def test_a_run_whose_float64_value_departs_says_the_rule_check_did_not_run():
    """newuser12's float32 transformer (a rotary table built in the forward in x's dtype): its
    resolution line named the entry test and the re-run floor, and not the float64 rule
    check, which had not run (its float64 loss is another function's); now the line says so.
    A run where it ran says nothing of the kind."""
    from symgrad import zoo
    from symgrad.zoo import native
    m = zoo.get("neuron")

    def shifted(w, b, x, y):  # b + (float32(0.1) - 0.1): 0 in float32, 1.5e-9 in float64
        return native.neuron(w, b + (torch.tensor(0.1, dtype=torch.float32).to(b.dtype) - 0.1),
                             x, y)
    kw = dict(samples=6, seed=0, dtype="float32", backends=("torch_fn",))
    line = next(t for t in str(sg.verify(m, torch_fn=shifted, **kw)).splitlines()
                if t.strip().startswith("resolution:"))
    assert line.endswith("the float64 rule check did not run: your code's loss value in float64 "
                         "departs from the exact one beyond float64's allowance (a constant or "
                         "table computed in the run's dtype, finfo(dtype).eps, a cast), so its "
                         "float64 gradient is of another function"), line
    assert "did not run" not in str(sg.verify(m, torch_fn=m.reference, **kw))
