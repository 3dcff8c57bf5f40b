"""Native torch implementations of the built-in models (torch.nn modules), used as ``torch_fn``.

Each takes one sample's blocks by name and returns the scalar loss, written the way a user
would write it in torch: independent of symgrad's sympy description.
"""

from __future__ import annotations

import torch
from torch import nn


def chain_rule(x):
    return torch.sin(x**2)


def neuron(w, b, x, y):
    return nn.BCELoss()(torch.sigmoid(x * w + b), y)


class SimpleNet(nn.Module):
    """The tutorial's network: Linear(10,5) -> ReLU -> Linear(5,1) -> Sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1), nn.Sigmoid())

    def forward(self, x):
        return self.layers(x)


_SIMPLENET = SimpleNet()


def simplenet(W1, b1, W2, b2, x, y):
    params = {"layers.0.weight": W1, "layers.0.bias": b1,
              "layers.2.weight": W2, "layers.2.bias": b2}
    pred = torch.func.functional_call(_SIMPLENET, params, (x,))  # (1,)
    return nn.BCELoss()(pred, y.reshape(1))


def tensor_ops(A, X):
    R = A.reshape(3, 2)
    return nn.functional.mse_loss(R @ R.T, X)
