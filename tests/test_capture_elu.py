"""ELU, CELU and SELU through capture (aten.elu -> the op table's elu / selu entries, any other
alpha / scale as its own map; F.celu decomposes to expm1 and where): correct torch code passes
at the kink x = 0 and deep in the saturated branch (x = -30), in float64 and float32, and a
planted wrong backward is caught and named.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.aten import TABLE
from symgrad.capture.gradcheck import GradcheckError
from symgrad.optable import OPS
from symgrad.testing import scale_backward

# the kink (twice: a tie of equal entries), just either side of it, the saturated branch
POINTS = [-30.0, -2.5, -1e-3, 0.0, 0.0, 1e-8, 0.7, 3.0]
CALLS = {
    "F.elu": F.elu,
    "F.elu(alpha=0.5)": lambda x: F.elu(x, alpha=0.5),
    "F.celu": F.celu,
    "F.celu(alpha=1.5)": lambda x: F.celu(x, alpha=1.5),
    "F.selu": F.selu,
    "nn.ELU(inplace=True)": lambda x: nn.ELU(inplace=True)(x * 1.0),
}


def _x(points, dtype):
    return torch.tensor(points, dtype=dtype, requires_grad=True)


def test_aten_elu_is_lowered():
    assert torch.ops.aten.elu.default in TABLE
    assert {"elu", "celu", "selu"} <= set(OPS)


@pytest.mark.parametrize("call", list(CALLS))
def test_gradcheck_passes_in_float64_at_the_kink_and_at_minus_30(call):
    assert sg.gradcheck(CALLS[call], (_x(POINTS, torch.float64),), samples=3, seed=0)


@pytest.mark.parametrize("call", list(CALLS))
def test_gradcheck_passes_in_float32_at_the_kink(call):
    pts = [p for p in POINTS if p > -10]  # e^-30 below: see the test after this one
    assert sg.gradcheck(CALLS[call], (_x(pts, torch.float32),), samples=3, seed=0)


def test_float32_at_minus_30_is_not_a_failure():
    """torch's in-place ELU computes e^x as y + 1 from its output y, which is -1 in float32 at
    x = -30 (a gradient of 0 for 9.4e-14): the allowance covers that way of computing it, so
    F.elu's exact e^x there cannot be told apart from it: inconclusive, never fail."""
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(F.elu, (_x([-30.0, 0.5], torch.float32),), samples=1, seed=0)
    text = str(err.value)
    assert "inconclusive" in text.splitlines()[0] and "disagrees" not in text


def _net(act, dtype, deep: float):
    net = nn.Sequential(nn.Linear(3, 4), act(), nn.Linear(4, 2)).to(dtype)
    with torch.no_grad():  # pre-activations exactly 0 and -deep, and two ordinary ones
        net[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -deep / 3],
                                          [0.5, -0.25, 0.125], [-1.0, 0.5, 0.25]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, 0.1, -0.2]))
        net[2].weight.copy_(torch.linspace(-1, 1, 8).reshape(2, 4))
        net[2].bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0], [-0.5, 0.25, 3.0]], dtype=dtype)
    return net, x


@pytest.mark.parametrize("dtype,deep", [(torch.float64, 30.0), (torch.float32, 8.0)])
@pytest.mark.parametrize("act", [nn.ELU, nn.SELU, nn.CELU])
def test_verify_module_with_elu_passes(act, dtype, deep):
    net, x = _net(act, dtype, deep)
    r = sg.verify(module=net, inputs=x, dtype=str(dtype).split(".")[1], samples=3, seed=0)
    assert r.verdict == "pass", str(r)


@pytest.mark.parametrize("act", [nn.ELU, nn.SELU])
def test_verify_module_float32_at_minus_30_is_not_a_failure(act):
    """As for gradcheck: the unit at -30 (its weights and bias) is inconclusive in float32,
    since torch's in-place form from the output may give 0 there; nothing fails."""
    net, x = _net(act, torch.float32, 30.0)
    r = sg.verify(module=net, inputs=x, dtype="float32", samples=3, seed=0)
    assert r.verdict == "inconclusive", str(r)
    assert "0.bias[1]" in str(r) and "0.bias[0]" not in str(r)


class ScaledElu(torch.autograd.Function):
    """ELU with its backward off by 1 + 1e-9: the planted bug."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.elu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x > 0, torch.ones_like(x), torch.exp(x)) * (1 + 1e-9)


def test_planted_wrong_elu_backward_is_caught_naming_the_input():
    def act(h):
        return ScaledElu.apply(h)
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(act, (_x(POINTS, torch.float64),), samples=3, seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to h[" in text, text


def test_planted_wrong_backward_at_another_alpha_is_caught():
    """aten.elu with alpha = 0.5 is lowered as its own map (not the table's alpha = 1 entry):
    a backward off by 1 + 1e-9 on the user's own alpha is caught there too."""
    def act(z):
        return F.elu(scale_backward(z, 1 + 1e-9), alpha=0.5)
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(act, (_x(POINTS, torch.float64),), samples=3, seed=0)
    assert "disagrees" in str(err.value).splitlines()[0] and "respect to z[" in str(err.value)
