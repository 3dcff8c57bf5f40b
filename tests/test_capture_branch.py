"""A Python branch on a tensor's value (``if x.sum().item() > 0``) cannot be traced by
torch.export: the refusal is one line naming the user's line and the fix, and torch's partial
graph dump (printed to stderr by torch.export, twice) does not reach the user."""

from __future__ import annotations

import sys

import pytest
import torch

import symgrad as sg


def branchy(a):
    if a.sum().item() > 0:  # the line the refusal must name
        return a.sin()
    return a.cos()


def test_a_value_branch_is_refused_naming_the_line_without_torchs_graph_dump(capfd):
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.SymgradError) as info:
        sg.gradcheck(branchy, (x,))
    text = str(info.value)
    assert "\n" not in text, text
    assert "branch on a tensor's value" in text and "test_capture_branch.py:16" in text, text
    assert "if a.sum().item() > 0" in text and "torch.where" in text, text
    assert "def forward" not in capfd.readouterr().err


def test_what_the_users_code_prints_while_exporting_still_reaches_stderr(capfd):
    def noisy(a):
        print("printed by my forward", file=sys.stderr)
        return a.sin().sum()
    assert sg.gradcheck(noisy, (torch.randn(3, dtype=torch.float64, requires_grad=True),))
    assert capfd.readouterr().err.count("printed by my forward") >= 2  # eager run + trace


def test_item_on_the_output_says_no_gradient_flows_through_a_python_number():
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.SymgradError) as info:
        sg.gradcheck(lambda a: a.sum().item(), (x,))
    text = str(info.value)
    assert ".item()" in text and "no gradient flows" in text and "test_capture_branch.py" in text
    assert "not supported yet" not in text, text
