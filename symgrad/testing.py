"""``assert_gradients_match``: a property-based gradient test with shrinking.

>>> import sympy as sp, symgrad as sg, torch
>>> from symgrad.testing import assert_gradients_match
>>> w, x = sp.symbols("w x")
>>> m = sg.Model("m", sp.tanh(w * x), params=[w], inputs=[x])
>>> assert_gradients_match(m, torch_fn=lambda w, x: torch.tanh(w * x), max_examples=20)
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .model import Model
from .verify import verify


class ScaleBackward(torch.autograd.Function):
    """A planted wrong gradient: the identity forward, a backward that multiplies the incoming
    gradient by ``factor`` (only at ``index`` when one is given). Works under vmap."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, factor, index):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor, ctx.index = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx, g):
        if ctx.index is None:
            return g * ctx.factor, None, None
        mask = torch.zeros_like(g)
        mask[ctx.index] = 1.0
        return g + mask * g * (ctx.factor - 1.0), None, None


def scale_backward(x: torch.Tensor, factor: float, index=None) -> torch.Tensor:
    """``x`` unchanged, its gradient scaled by ``factor`` (at ``index`` only, if given): the
    mutant a verifier must catch, and ``gradcheck`` misses below ~1e-3.

    >>> import torch
    >>> w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    >>> scale_backward(w, 1 + 1e-9).backward()
    >>> float(w.grad) == 1 + 1e-9
    True
    """
    return ScaleBackward.apply(x, factor, index)


def assert_gradients_match(model: Model, torch_fn: Callable | None = None, *,
                           max_examples: int = 100, dtype: str = "float64",
                           device: str = "cpu") -> None:
    """Search for an input where a backend's gradient disagrees with the exact derivative.

    Uses hypothesis (derandomized: the same run every time) with ``hypothesis.target`` steering
    toward the largest error relative to its allowance. On failure raises ``AssertionError``
    with the table of the worst entries and the minimal (shrunk) input.
    """
    from hypothesis import HealthCheck, given, settings, target

    from .strategies import inputs

    worst: dict = {}

    @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(model))
    def check(sample):
        r = verify(model, torch_fn=torch_fn, at=sample, dtype=dtype, device=device)
        ratio = max((f.ulps / f.allowed_ulps for f in r.worst
                     if math.isfinite(f.ulps) and f.allowed_ulps > 0), default=0.0)
        target(math.log10(ratio + 1e-300), label="log10 error / allowance")
        if not r.ok:
            worst["result"] = r
            lines = [f.message() for f in r.failures[:10]]
            raise AssertionError(f"gradients of {model.name} disagree with the exact "
                                 "derivative:\n  " + "\n  ".join(lines) + f"\n{r}")

    try:
        check()
    except AssertionError as exc:
        r = worst.get("result")
        point = ("" if r is None else
                 "\nminimal input: " + ", ".join(f"{k}={v}" for k, v in r.failures[0].point.items()))
        raise AssertionError(f"{exc}{point}") from None
