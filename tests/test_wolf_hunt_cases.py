"""Cases the false-FAIL hunt (scripts/wolf_hunt.py, reports/wolf_hunt.md) found, pinned at
their inputs: torch's correct ops at adversarial inputs must not fail, and where torch really
disagrees with its own forward the finding must name its cause."""

from __future__ import annotations

import mpmath as mp
import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from tests.clients import CNN, seeded

F64 = torch.float64

# the hunt's cosine_similarity float64 "tiny" row 1 (norm 3.7e-26 < eps = 1e-8), its entry
# x[1,3] = 1.738e-216 far below that norm; rows 0 and 2 of norms 8.5e-5 and 9.4e-16
TINY_ROWS = [[4.1e-5, -7.3e-5, 1.6e-9, -2.2e-250, 1.9e-6],
             [3.7e-26, -2.414e-44, 1.182e-107, 1.738e-216, 3.954e-35],
             [9.3e-16, 1.2e-16, -3.1e-30, 3.0e-250, -2.0e-290]]


def _cosine_pairs(x):
    return F.cosine_similarity(x[:2], x[1:], dim=-1)


def test_torchs_cosine_similarity_at_tiny_entries_is_proven_wrong_and_named():
    """Meant to fail (torch's backward): below eps the norms' clamp is not differentiated
    (an mpmath check below: torch's gradient is its no_grad-clamp formula, not the
    derivative of its forward). On main the entries whose own move is too small to move a
    float64 norm (x[1,3] = 1.7e-216 in a row of norm 3.7e-26) read 'real derivative error';
    every failing line names the clamp now."""
    x = torch.tensor(TINY_ROWS, dtype=F64, requires_grad=True)
    v = torch.tensor([0.75, -1.25], dtype=F64)
    g, = torch.autograd.grad(_cosine_pairs(x), x, v)
    mp.mp.prec = 200
    eps = mp.mpf(1e-8)
    rows = [[mp.mpf(float(a)) for a in r] for r in TINY_ROWS]
    # d/dx[1,3] of 0.75 <x0/|x0|, x1/eps> - 1.25 <x1/eps, x2/eps> (|x1|, |x2| < eps)
    norm0 = mp.sqrt(mp.fsum(a * a for a in rows[0]))
    exact = mp.mpf(0.75) * rows[0][3] / (norm0 * eps) - mp.mpf(1.25) * rows[2][3] / eps ** 2
    assert abs(float(g[1, 3]) - float(exact)) > 1e6 * abs(float(exact))  # torch: far off
    with pytest.raises(sg.GradcheckError, match="(?s)disagrees.*proven") as err:
        sg.gradcheck(_cosine_pairs, (x.detach().requires_grad_(),))
    lines = [line for line in str(err.value).splitlines()[1:]
             if "… and" not in line and not line.startswith("  note:")]
    assert lines and all("norm's eps clamp not differentiated" in line for line in lines), lines


class _CNNLoss(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("labels", labels)

    def forward(self, x):
        return F.cross_entropy(self.net(x), self.labels)


def test_a_cnn_at_zero_input_passes_at_every_relu_kink_and_pool_tie():
    """Meant to pass: the hunt's CNN (conv, BatchNorm in train mode, relu, max-pool, linear,
    cross-entropy) at x = 0 in float32. Every conv output is its channel's bias, so the exact
    BatchNorm output is 0: every relu at its kink, every 2x2 pool window a four-way tie; torch's
    rounded batch mean leaves +-1e-7 there, so rounding picks each relu's side. torch's correct
    gradient is accepted (kink entries on one side of the subgradient), no entry fails."""
    with seeded(0):
        net = CNN()
    model = _CNNLoss(net, torch.tensor([2, 0])).float()
    x = torch.zeros(2, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        y = net.conv1(x)
        assert (y == y[:, :, :1, :1]).all() and (y[0] == y[1]).all()  # each channel constant
        assert net.bn(y).abs().max() < 1e-5  # exact 0, torch's off by its rounding
    assert sg.gradcheck(model, (x,), samples=1)
