"""Rows of the ATen table for activations with a fixed slope: ``leaky_relu`` (so
``nn.LeakyReLU``) and ``RReLU`` in eval mode (issue 18's stop-34 follow-up: ``nn.RReLU().eval()``
was refused as "draws random numbers").

- ``leaky_relu``: ``Piecewise((x0, x0 > 0), (negative_slope x0, True))``, a kink at 0.
- ``rrelu_with_noise_functional`` with ``training=False``: torch's eval RReLU is the leaky relu
  of the fixed slope ``(lower + upper) / 2`` (computed in double, as torch's kernel does, then
  the exact binary value of that double); it draws nothing (``RANDOM_FREE``), and its
  ``noise`` buffer comes back unchanged. In training mode it draws a slope per entry inside
  the kernel, which no exact program can share: refused by the walk, as before.

>>> aten.rrelu_with_noise_functional.default in ACTIVATION_ROWS
True
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp
import torch

from ..tensor.program import X, Node
from .values import elementwise, named, number

aten = torch.ops.aten


def leaky_relu(a, shape) -> Node:
    """map Piecewise((x0, x0 > 0), (negative_slope x0, True)) (a kink at 0)"""  # (newuser10:
    #   nn.LeakyReLU, nn.Hardtanh and nn.ReLU6 were refused)
    slope = number(a.get("negative_slope", 0.01))
    return elementwise(sp.Piecewise((X[0], X[0] > 0), (slope * X[0], True)), a["self"])


def _rrelu(a, shape) -> tuple[Node, Any]:
    """eval mode: leaky relu with the slope (lower + upper) / 2 (a kink at 0); the noise
    buffer unchanged"""
    slope = (float(a.get("lower", 0.125)) + float(a.get("upper", 1 / 3))) / 2  # torch's double
    return leaky_relu({"self": a["self"], "negative_slope": slope}, shape), a["noise"]


def _eval_only(a: dict) -> bool:
    """Whether an RReLU call draws nothing (``training=False``)."""
    return not a.get("training", False)


ACTIVATION_ROWS: dict[Any, Callable] = {
    aten.leaky_relu.default: leaky_relu,
    aten.rrelu_with_noise_functional.default: named(
        "eval mode: leaky relu with the slope (lower + upper)/2 (a kink at 0)", _rrelu),
}

RANDOM_FREE: dict[Any, Callable[[dict], bool]] = {
    aten.rrelu_with_noise_functional.default: _eval_only,
}
"""Ops torch tags as seeded-random that draw nothing with these arguments (by schema name)."""
