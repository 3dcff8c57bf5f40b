"""Transposed convolution (``nn.ConvTranspose1d/2d``, ``F.conv_transpose2d``) captured as the
conv row's scatter einsum: a small decoder passes in float64 and float32 at several seeds and
at ReLU kinks; planted wrong backwards (a weight gradient x(1 + 1e-9), a kernel not flipped)
are caught naming the argument, where ``torch.autograd.gradcheck`` misses the 1e-9 one."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.testing import scale_backward

OPTS = dict(stride=2, padding=1, output_padding=1)


def _x(*shape, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def _decoder(seed: int, dtype: torch.dtype) -> nn.Module:
    """ConvTranspose2d stride 2 (with padding and output_padding) + ReLU, then stride 2 again."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.ConvTranspose2d(3, 4, 3, **OPTS), nn.ReLU(),
                             nn.ConvTranspose2d(4, 2, 2, stride=2)).to(dtype)


class ConvT(torch.autograd.Function):
    """``F.conv_transpose2d(x, W, **OPTS)`` with a hand-written backward: the input's gradient
    is a plain convolution with the same kernel (``flip``: the planted bug, the kernel
    flipped), the weight's from autograd scaled by ``scale`` (1 + 1e-9: the planted bug)."""

    scale, flip = 1.0, False

    @staticmethod
    def forward(ctx, x, W):
        ctx.save_for_backward(x, W)
        return F.conv_transpose2d(x, W, **OPTS)

    @classmethod
    def backward(cls, ctx, g):
        x, W = ctx.saved_tensors
        gx = F.conv2d(g, W.flip(-1, -2) if cls.flip else W, stride=OPTS["stride"],
                      padding=OPTS["padding"])
        with torch.enable_grad():
            x_, W_ = x.detach().requires_grad_(), W.detach().requires_grad_()
            gW = torch.autograd.grad(F.conv_transpose2d(x_, W_, **OPTS), W_, g)[0]
        return gx, gW * cls.scale


class ConvTWeightScaled(ConvT):
    scale = 1 + 1e-9


class ConvTNotFlipped(ConvT):
    flip = True


def _args(dtype=torch.float64):
    return _x(2, 3, 4, 5, dtype=dtype), _x(3, 2, 3, 3, dtype=dtype, seed=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_decoder_passes(seed, dtype):
    m = _decoder(seed, dtype)
    x = _x(2, 3, 4, 4, dtype=dtype, seed=seed, grad=False)
    c = sg.capture(m, (x,))
    assert [b.name for b in c.model.param_blocks] == ["p_0_weight", "p_0_bias", "p_2_weight",
                                                      "p_2_bias"]
    assert sg.gradcheck(m, (x,), samples=2)


def test_relu_at_kinks_after_a_transposed_conv_passes():
    """Stride 3 with a 2-wide kernel leaves output positions no input reaches: with a zero
    bias they are exactly 0 at the ReLU (its kink) for every sample."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = nn.Sequential(nn.ConvTranspose2d(2, 3, 2, stride=3), nn.ReLU()).double()
    with torch.no_grad():
        m[0].bias.zero_()
    x = _x(1, 2, 3, 3, grad=False)
    assert (m(x) == 0).sum() >= 3 * 7 * 7 - 3 * 6 * 6  # the unreached positions, at least
    assert sg.gradcheck(m, (x,), samples=2)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1),
                                dict(stride=3, padding=2, dilation=2, output_padding=1,
                                     groups=2),
                                dict(stride=1, padding=0)])
def test_conv_transpose_1d_and_2d_options_pass(kw):
    torch.manual_seed(0)
    m2 = nn.ConvTranspose2d(4, 6, 3, **kw).double()
    assert sg.gradcheck(m2, (_x(2, 4, 3, 4),), samples=2)
    m1 = nn.ConvTranspose1d(4, 2, 3, **kw).double()
    assert sg.gradcheck(m1, (_x(1, 4, 5),), samples=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_correct_custom_backward_passes(dtype):
    assert sg.gradcheck(ConvT.apply, _args(dtype), samples=2)


def test_weight_gradient_scaled_by_1e9_is_caught_and_torch_gradcheck_misses_it():
    args = _args()
    assert torch.autograd.gradcheck(ConvTWeightScaled.apply, args)  # finite differences miss it
    with pytest.raises(sg.GradcheckError, match=r"ConvTWeightScaled.*\n.*gradient with respect "
                       r"to W\["):
        sg.gradcheck(ConvTWeightScaled.apply, args, samples=2)


def test_kernel_not_flipped_is_caught_on_the_input():
    args = _args()
    assert not torch.autograd.gradcheck(ConvTNotFlipped.apply, args, raise_exception=False)
    with pytest.raises(sg.GradcheckError, match=r"ConvTNotFlipped.*\n.*gradient with respect "
                       r"to x\["):
        sg.gradcheck(ConvTNotFlipped.apply, args, samples=2)


class PlantedDecoder(nn.Module):
    """The decoder with its first layer's weight gradient scaled by 1 + 1e-9 (the planted bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.d = _decoder(0, torch.float64)

    def forward(self, x):
        up = self.d[0]
        h = F.conv_transpose2d(x, scale_backward(up.weight, 1 + 1e-9), up.bias, **OPTS)
        return self.d[2](torch.relu(h))


def test_decoder_with_a_planted_weight_gradient_is_caught_naming_the_parameter():
    m, x = PlantedDecoder(), _x(2, 3, 4, 4)
    assert torch.autograd.gradcheck(m, (x,))  # inputs only, finite differences: misses it
    with pytest.raises(sg.GradcheckError, match=r"PlantedDecoder.*\n.*gradient with respect to "
                       r"d\.0\.weight\["):
        sg.gradcheck(m, (x,), samples=2)
