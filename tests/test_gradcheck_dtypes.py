"""sg.gradcheck and dtypes: inputs of mixed float dtypes (or a module of another dtype) are
refused in one line naming the input and both dtypes unless ``dtype=`` says which judges; an
inconclusive float32 check whose exact values lie below float32's normal range says that more
points cannot help (a larger gradient's point or float64 can), not "try more points"."""

from __future__ import annotations

import pytest
import torch

import symgrad as sg


def _x(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _product(x, y):
    return (x * y).sum()


@pytest.mark.parametrize("grad_y", [True, False])
def test_mixed_float_inputs_are_refused_naming_both(grad_y):
    x = _x(3).requires_grad_(True)
    y = _x(3, dtype=torch.float32, seed=1).requires_grad_(grad_y)
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(_product, (x, y))
    text = str(err.value)
    assert len(text.splitlines()) == 1, text
    assert "x is float64 and y is float32" in text and "dtype=" in text, text


def test_mixed_inputs_with_dtype_given_are_checked_in_it():
    x = _x(3).requires_grad_(True)
    y = _x(3, dtype=torch.float32, seed=1).requires_grad_(True)
    assert sg.gradcheck(_product, (x, y), dtype="float64")


def test_a_module_of_another_dtype_is_refused_naming_the_parameter():
    net = torch.nn.Linear(3, 2)  # float32
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(net, (_x(4, 3).requires_grad_(True),))
    text = str(err.value)
    assert "parameter weight is float32" in text and "module.to(torch.float64)" in text, text


class Swish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * (s + x * s * (1 - s))


def test_a_gradient_below_float32s_normal_range_says_more_points_cannot_help():
    x = torch.tensor([-100.0, 0.5, 2.0], requires_grad=True)  # exact d/dx[0] ~ 2.2e-42
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(Swish.apply, (x,))
    head = str(err.value).splitlines()[0]
    assert "inconclusive" in head, head
    assert "below float32's normal range" in head and "more points cannot resolve" in head, head
    assert "x[0]" in head and "dtype=torch.float64" in head, head
    assert "try more points" not in head, head


def test_the_same_swish_in_float64_passes():
    x = torch.tensor([-100.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    assert sg.gradcheck(Swish.apply, (x,))
