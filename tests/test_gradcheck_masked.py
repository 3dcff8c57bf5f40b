"""newuser6's trial: a framework engineer's masked mean (an integer mask, held at its values)
through ``sg.gradcheck``. A backward leaking 1e-7 into the masked rows is caught (torch's
gradcheck passes it: its numerical Jacobian there is 0, the leak far below ``atol``), and the
line gives the error at the exact 0 as an absolute number, not in subnormal ULPs ("error inf
ULPs (allowed 1.8e+16)"); a backward returning None for a mask that requires grad is a
mismatch naming the mask (it was symgrad's own AttributeError). The error says what its
"sample k" is (0: the inputs as given; 1..3: points around them)."""

from __future__ import annotations

import re

import pytest
import torch

import symgrad as sg
from tests.clients import LeakyMaskedMean, MaskedMean

MASK = torch.tensor([1, 0, 1, 1, 0])


def _x(dtype):
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_correct_masked_mean_with_an_integer_mask_passes(dtype):
    assert sg.gradcheck(MaskedMean.apply, (_x(dtype), MASK)) is True


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_leak_into_masked_rows_is_caught_and_read_in_absolute_terms(dtype):
    x = _x(dtype)
    if dtype == torch.float64:  # what the user switched from misses it
        assert torch.autograd.gradcheck(LeakyMaskedMean.apply, (x, MASK))
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(LeakyMaskedMean.apply, (x, MASK))
    text = str(info.value)
    lines = [ln for ln in text.splitlines() if ln.startswith("  mismatch")]
    assert ("\n  note: sample 0 is the inputs as given; samples 1..3 scale each "
            "differentiated entry by a random factor in [5/8, 11/8] (seed 0)\n") in text, text
    assert text.splitlines()[-1].startswith("  note: failing sample(s) 0, "), text  # saved
    assert text.endswith("sg.gradcheck(LeakyMaskedMean.apply, p['inputs'], samples=1)"), text
    assert lines and all(re.search(r"x\[[14], \d\] at sample \d: expected 0\.0", ln)
                         for ln in lines), lines  # only the masked rows 1 and 4
    for ln in lines:
        err, allowed = map(float, re.search(r"error (\S+) absolute \(allowed (\S+); the "
                                            r"exact value is 0\)", ln).groups())
        assert 1e-9 < err < 1e-7 and allowed < 1e-30, ln
        assert "ULPs" not in ln, ln
    whole = info.value.result.failures[0].point  # what "sample values" shortens
    assert set(whole) == {"x", "file"} and len(whole["x"]) == 5 and len(whole["x"][0]) == 4
    assert whole["file"].endswith(".pt")  # the saved sample (capture22), beside the values


def test_a_backward_returning_none_for_a_mask_that_requires_grad_names_the_mask():
    mask = MASK.to(torch.float64).requires_grad_()
    with pytest.raises(sg.GradcheckError, match=r"gradient with respect to mask\[\d\] .*got 0\.0") \
            as info:
        sg.gradcheck(MaskedMean.apply, (_x(torch.float64), mask))
    # a line's hidden block is where a gradcheck user can read it (no Failure in sight)
    assert "1 more block in the error's .result" in str(info.value), str(info.value)
    assert "Failure.point" not in str(info.value)
