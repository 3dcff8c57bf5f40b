"""A teacher's MLP with nn.Dropout through ``sg.verify(module=, inputs=)`` (newuser6):
train=True feeds symgrad's keep-mask, named by the submodule (``2.keep``); a keep-mask the
user gives as an input works too: a bool keep-mask is held at its values, the parameters are
compared, and a wrong gradient is still caught."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg


class MaskedMLP(nn.Module):
    """Linear-ReLU-dropout-Linear, the dropout's keep-mask given by the caller."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.l1, self.l2, self.p = nn.Linear(4, 6), nn.Linear(6, 3), p

    def forward(self, x, keep):
        return self.l2(F.relu(self.l1(x)) * keep / (1 - self.p))


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    keep = torch.rand(5, 6, generator=g) > 0.2
    return x, keep, torch.tensor([0, 2, 1, 1, 0])


def test_train_mode_dropout_is_fed_symgrads_keep_mask_named_by_the_submodule():
    """Once refused (newuser6); now fed (``symgrad.capture.dropout``, tests in
    test_capture_dropout.py): the note names the submodule's mask."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 3)).double()
    x, _, y = _data()
    r = sg.verify(module=mlp, inputs=x, targets=y, loss=F.cross_entropy, train=True)
    assert r.verdict == "pass", r
    assert any(n.startswith("dropout fed symgrad's keep-masks (2.keep p=0.2)") for n in r.notes)


def test_the_keep_mask_as_an_input_is_verified_and_a_wrong_gradient_caught():
    torch.manual_seed(0)
    mlp = MaskedMLP().double()
    x, keep, y = _data()
    r = sg.verify(module=mlp, inputs=(x, keep), targets=y, loss=F.cross_entropy)
    assert r.verdict == "pass", r
    assert [b for b, _, _ in r.blocks] == ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]
    h = mlp.l1.weight.register_hook(lambda g: g * (1 + 1e-6))
    try:
        bad = sg.verify(module=mlp, inputs=(x, keep), targets=y, loss=F.cross_entropy)
    finally:
        h.remove()
    assert bad.verdict == "fail" and all(f.output.startswith("d/dl1.weight")
                                         for f in bad.failures), bad
