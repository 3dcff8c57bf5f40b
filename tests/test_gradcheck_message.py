"""``sg.gradcheck``'s own arguments and its error text: ``samples=`` below 1 is refused in
one line (it used to check one point silently and return True); the "… and N more" tail
counts the entries the headline counts, not the finding list's cap."""

from __future__ import annotations

import re

import pytest
import torch

import symgrad as sg
from symgrad.testing import scale_backward


def _x(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=g, dtype=torch.float64).requires_grad_()


@pytest.mark.parametrize("samples", [0, -1, 2.5, True])
@pytest.mark.parametrize("check", [sg.gradcheck, sg.gradgradcheck])
def test_samples_below_one_or_not_an_int_is_refused_naming_the_option(check, samples):
    with pytest.raises(sg.SymgradError, match=r"samples= must be a positive integer.*got "):
        check(torch.tanh, (_x(),), samples=samples)


def test_the_more_tail_adds_up_to_the_entries_in_the_headline():
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(lambda x: torch.tanh(scale_backward(x, 1 + 1e-6)), (_x(),))
    text = str(info.value)
    n = int(re.search(r"\((\d+) entries failing\)", text).group(1))
    shown = len(re.findall(r"^  mismatch in the gradient", text, re.M))
    more = re.search(r"… and (\d+) more", text)
    assert n == 24 and shown == 5, text        # 6 entries x the point and 3 around it
    assert more and shown + int(more.group(1)) == n, text
