"""floor, ceil, trunc, round (decimals= too) and frac through capture (issue 18's stop-34
follow-up: ``aten.round`` was refused; ``symgrad.capture.steps``). Each is piecewise constant
with jumps that are kinks: correct torch code passes in float64 and float32 with arguments
exactly at the jumps (integers, half-integers: torch's round half to even) and computed ones
that rounding moves across a jump (float(1/3) * 3 is 1.0 in torch, just below 1 exactly: floor
0 against torch's 1, a kink reached, never a failure); elsewhere the values are exact (a wrong
value fails); a straight-through backward where the function's own is meant is caught naming
the input, and a straight-through estimator written with detach passes."""

import pytest
import torch

import symgrad as sg
from symgrad.capture.aten import TABLE
from symgrad.capture.gradcheck import GradcheckError
from symgrad.testing import scale_backward

aten = torch.ops.aten
DTYPES = [torch.float64, torch.float32]


def _x(dtype=torch.float64, seed=0, *, at=None):
    """at="jumps": integers and half-integers (round's ties: half to even); at="across":
    entries that * 3 rounds onto or across a jump (float64's 1/3 * 3 is 1.0, exactly just
    below 1; float32's 3.5/3 * 3 is 3.5, exactly just below: round 3, torch's 4)."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 3
    if at == "jumps":
        x[0] = torch.tensor([0.5, 1.5, -0.5, 2.5])
        x[1, :2] = torch.tensor([1.0, -2.0])
    elif at == "across":
        x[1] = torch.tensor([1 / 3, -2 / 3, 2.5 / 3, 3.5 / 3])
    return x.to(dtype).requires_grad_()


FUNCTIONS = {
    "floor": torch.floor, "ceil": torch.ceil, "trunc": torch.trunc, "round": torch.round,
    "frac": torch.frac,
    "round(decimals=1)": lambda t: torch.round(t, decimals=1),
    "round(decimals=-1)": lambda t: torch.round(t * 10, decimals=-1),
}


def test_rows_are_in_the_table():
    assert {aten.floor.default, aten.ceil.default, aten.trunc.default, aten.round.default,
            aten.round.decimals} <= set(TABLE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("at", ["jumps", "across"])
def test_correct_code_passes_at_and_across_the_jumps(at, name, dtype):
    """Meant to fail on main: refused (aten.round / floor / ceil / trunc not supported)."""
    f = FUNCTIONS[name]
    scale = 1 if at == "jumps" else 3
    fn = lambda x: (f(x * scale) * x.exp()).sum()  # noqa: E731
    if name == "round(decimals=-1)" and at == "jumps":  # x / 10 at a tie (x = 25): ARB's 1/10
        with pytest.raises(GradcheckError) as err:  # is a ball, so a tie's side is never
            sg.gradcheck(fn, (_x(dtype, at=at),), samples=3, seed=0)  # certain: undecided
        assert "inconclusive" in str(err.value).splitlines()[0], str(err.value)
        assert "disagrees" not in str(err.value) and "mismatch" not in str(err.value)
        return
    assert sg.gradcheck(fn, (_x(dtype, at=at),), samples=3, seed=0)


class StraightThroughRound(torch.autograd.Function):
    """round with the straight-through backward (g, not round's 0): wrong for round itself."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_a_planted_wrong_backward_beside_one_is_caught(name):
    """x(1 + 1e-9) in the backward of the factor beside floor(3x), round(3x), ...: caught at
    the jumps too (the sides there differ in the function's value, not in that factor)."""
    f = FUNCTIONS[name]
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(lambda x: (f(x * 3) * scale_backward(x, 1 + 1e-9).exp()).sum(),
                     (_x(at="across"),), samples=3, seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to x[" in text, text


def test_a_straight_through_backward_for_round_itself_is_caught():
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(lambda x: (StraightThroughRound.apply(x) * x.exp()).sum(),
                     (_x(at="jumps"),), samples=3, seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to x[" in text, text


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_straight_through_estimator_written_with_detach_passes(dtype):
    def quantised(x):
        q = x + (torch.round(x * 4) / 4 - x).detach()  # value round(4x)/4, gradient 1
        return (q * x.sin()).sum()
    assert sg.gradcheck(quantised, (_x(dtype, at="jumps"),), samples=3, seed=0)
