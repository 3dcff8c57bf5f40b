"""``sg.gradcheck`` in bfloat16: correct code is never failed (a pass, or honestly
inconclusive where bfloat16's 8 bits cannot resolve an entry), a gross planted bug (backward
x2) is caught and named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from tests.clients import scaled_square

Square = scaled_square(1.0)  # x * x with its correct backward


def _x(seed: int, *shape: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*(shape or (2, 4)), generator=g).to(torch.bfloat16).requires_grad_()


def _verdict(fn, x, seed=0) -> str:
    try:
        return "pass" if sg.gradcheck(fn, (x,), seed=seed) else "fail"
    except sg.GradcheckError as exc:
        return "inconclusive" if "inconclusive" in str(exc).splitlines()[0] else "fail"


@pytest.mark.parametrize("fn", [Square.apply, torch.sigmoid, lambda x: (x * x + x.sin()).sum(),
                                F.relu], ids=["square", "sigmoid", "x2+sin", "relu"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_code_is_never_failed_in_bfloat16(fn, seed):
    assert _verdict(fn, _x(seed), seed) in ("pass", "inconclusive")


def test_square_passes_in_bfloat16():
    assert sg.gradcheck(Square.apply, (_x(0, 6),))


def test_backward_times_2_is_caught_in_bfloat16():
    doubled = scaled_square(2.0)  # the planted bug
    with pytest.raises(sg.GradcheckError,
                       match=r"disagrees .* in bfloat16 .*\n.*with respect to x\["):
        sg.gradcheck(doubled.apply, (_x(0, 6),))


def test_bfloat16_module_parameters_are_checked_by_name():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3).to(torch.bfloat16)
    assert sg.gradcheck(lin, (_x(0).detach(),))
