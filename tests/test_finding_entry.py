"""A finding's line names its own entry's value, and a bare sigmoid is no BCELoss.

newuser3's trial: a backward wrong only for x > 20 failed at x[9] = 25, but the line's "sample
values" showed x's first three entries (1.984, 0.8008, 0.185), never the failing one; and the
cause read "saturation/clamping inside torch: BCELoss clamp" with no BCELoss anywhere.
"""

from __future__ import annotations

import pytest
import torch

import symgrad as sg


class _WrongAbove20(torch.autograd.Function):
    """sigmoid whose backward is a constant 1e-6 for x > 20 (a planted bug)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        d = s * (1 - s)
        return g * torch.where(x > 20, torch.full_like(d, 1e-6), d)


def test_the_failing_entry_leads_its_block_and_no_bceloss_is_blamed():
    """Meant to fail (a planted bug): every line shows x[9]'s own value, and no line names a
    BCELoss clamp (main: the first three entries, and "BCELoss clamp" at x = 31)."""
    x = torch.tensor([1.984, 0.8008, 0.185, -1.0, 0.5, 0.1, 0.2, -0.3, 1.5, 25.0],
                     dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.GradcheckError) as e:
        sg.gradcheck(_WrongAbove20.apply, (x,))
    lines = [ln for ln in str(e.value).splitlines() if "mismatch" in ln]
    assert lines, str(e.value)
    for ln in lines:
        assert "with respect to x[9]" in ln and "sample values: x[9]=" in ln, ln
        assert "BCELoss" not in ln and "[cause: derivative wrong" in ln, ln
