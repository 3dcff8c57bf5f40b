"""Planted second-order bugs: torch code whose gradient is right but whose double backward is
not, the mutants ``sg.verify(model, order=2)`` must catch (``tests/test_hvp.py``,
``scripts/second_order.py``).

- ``detached_backward(f)``: a custom ``autograd.Function`` whose backward computes f'(x) from a
  ``.detach()``ed copy of x: first order exact, the x-dependence of f' lost at second order.
- ``scaled_second(f, factor)``: f'(x) exact and differentiable, passed through
  ``testing.ScaleBackward`` (identity value): only the second derivative is x ``factor``.
- ``prod_linear``: ``F.linear`` as ``torch.prod`` of (input, weight) pairs summed; torch's own
  ``prod`` double backward differentiates ``out / x``, which cancels catastrophically near (not at)
  a zero entry: d/dx (out / x) = out' / x - out / x^2 (torch 2.13; measured in
  ``scripts/second_order.py``).
- ``patched(fn, owner, name, replacement)``: ``fn`` run with ``owner.name`` replaced (e.g.
  ``torch.sigmoid``, ``torch.nn.functional.gelu``) and restored afterwards.

>>> import torch
>>> x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
>>> s = detached_backward(torch.sigmoid)
>>> (g,) = torch.autograd.grad(s(x), x, create_graph=True)
>>> s0 = torch.sigmoid(x.detach())
>>> bool(g == s0 * (1 - s0))
True
>>> g.requires_grad   # no path through x in the backward: its second derivative is lost
False
"""

from __future__ import annotations

from typing import Callable
from unittest import mock

import torch

from .testing import ScaleBackward


def _local_derivative(fn: Callable, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """f'(x) elementwise; kept in the graph of x (``differentiable``) or from a detached copy."""
    with torch.enable_grad():
        xd = x if differentiable and x.requires_grad else x.detach().requires_grad_(True)
        y = fn(xd)
        (d,) = torch.autograd.grad(y, xd, torch.ones_like(y), create_graph=differentiable)
    return d


class _Elementwise(torch.autograd.Function):
    """y = fn(x); backward g * f'(x), f' detached (``mode="detached"``) or differentiable and
    passed through ScaleBackward(factor) (``mode="scaled"``)."""

    @staticmethod
    def forward(ctx, x, fn, mode, factor):
        ctx.save_for_backward(x)
        ctx.fn, ctx.mode, ctx.factor = fn, mode, factor
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.mode == "detached":
            d = _local_derivative(ctx.fn, x, differentiable=False)
        else:
            d = ScaleBackward.apply(_local_derivative(ctx.fn, x, differentiable=True),
                                    ctx.factor, None)
        return g * d, None, None, None


def detached_backward(fn: Callable) -> Callable:
    """``fn`` (elementwise) as a custom Function whose backward uses a detached f'(x).

    Arguments:
        fn: an elementwise torch function (``torch.sigmoid``, a GELU).
    Returns:
        ``f(x)`` with the same value and gradient and a wrong second derivative.
    """
    return lambda x, *args, **kwargs: _Elementwise.apply(
        x, lambda t: fn(t, *args, **kwargs), "detached", 1.0)


def scaled_second(fn: Callable, factor: float) -> Callable:
    """``fn`` (elementwise) with an exact gradient whose own derivative is x ``factor``.

    Arguments:
        fn: an elementwise torch function.
        factor: the scale of f'(x)'s backward (e.g. 1 + 1e-10).
    Returns:
        ``f(x)``: exact value and gradient; the second derivative through f' scaled.
    """
    return lambda x, *args, **kwargs: _Elementwise.apply(
        x, lambda t: fn(t, *args, **kwargs), "scaled", factor)


def prod_linear(input: torch.Tensor, weight: torch.Tensor,  # noqa: A002 (F.linear's names)
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with each product input_k * weight_jk taken by ``torch.prod`` of the pair
    (torch's own prod, whose double backward cancels near a zero entry)."""
    pairs = torch.stack(torch.broadcast_tensors(input[..., None, :], weight))
    out = torch.prod(pairs, dim=0).sum(-1)
    return out if bias is None else out + bias


def patched(fn: Callable, owner, name: str, replacement: Callable) -> Callable:
    """``fn(**blocks)`` run with ``owner.name`` replaced by ``replacement`` (restored after,
    also on error); ``replacement`` receives the original as its first argument."""
    original = getattr(owner, name)

    def run(**blocks):
        with mock.patch.object(owner, name, lambda *a, **k: replacement(original, *a, **k)):
            return fn(**blocks)
    run.__name__ = f"{getattr(fn, '__name__', 'torch_fn')} with {name} replaced"
    return run
