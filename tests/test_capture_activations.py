"""nn.RReLU in eval mode through capture (issue 18's stop-34 follow-up: it was refused as
"draws random numbers"; ``symgrad.capture.activations``): eval RReLU is the leaky relu of the
fixed slope (lower + upper) / 2, so correct code passes in float64 and float32 at its kink
(x = 0); a backward with another slope (the lower bound's, as a training-mode draw might give)
is caught naming the input; RReLU in training mode, which draws a slope per entry, is still
refused in one line."""

import pytest
import torch
from torch import nn

import symgrad as sg
from symgrad.capture.aten import TABLE
from symgrad.capture.gradcheck import GradcheckError

DTYPES = [torch.float64, torch.float32]
aten = torch.ops.aten


def _x(dtype=torch.float64, seed=0):
    x = torch.randn(3, 4, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    x[0, 0] = 0.0  # the kink
    return x.requires_grad_()


def test_the_row_is_in_the_table():
    assert aten.rrelu_with_noise_functional.default in TABLE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("call", [
    lambda x: (nn.RReLU(0.1, 0.3).eval()(x) * x.exp()).sum(),
    lambda x: torch.nn.functional.rrelu(x.sin(), training=False).pow(2).sum(),
])
def test_eval_rrelu_passes(call, dtype):
    """Meant to fail on main: refused as "draws random numbers"."""
    assert sg.gradcheck(call, (_x(dtype),), samples=3, seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_network_with_eval_rrelu_verifies(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.RReLU(), nn.Linear(5, 1)).to(dtype).eval()
    r = sg.verify(module=net, inputs=_x(dtype).detach(), samples=3,
                  dtype=str(dtype).removeprefix("torch."))
    assert r.verdict == "pass", str(r)


class LowerSlope(torch.autograd.Function):
    """eval RReLU(0.1, 0.3)'s forward, its backward with the slope 0.1 (not 0.2) below 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return nn.functional.rrelu(x, 0.1, 0.3, training=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, g, 0.1 * g)


def test_a_backward_with_another_slope_is_caught_naming_the_input():
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(lambda x: (LowerSlope.apply(x) * x.exp()).sum(), (_x(),), samples=3,
                     seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to x[" in text, text


def test_training_mode_rrelu_is_still_refused_in_one_line():
    with pytest.raises(sg.SymgradError, match="rrelu_with_noise_functional.* draws random "
                       "numbers") as err:
        sg.gradcheck(lambda x: nn.RReLU().train()(x).sum(), (_x(),), samples=2, seed=0)
    assert "\n" not in str(err.value)
