"""A user's gradient hooks on the tensors symgrad substitutes (a module's parameters, a
function's inputs), carried onto the substitutes so that the eager gradient symgrad compares is
what ``loss.backward()`` would write into ``.grad``.

symgrad runs a module with its own tensors in place of the parameters
(``torch.func.functional_call``), so a hook registered on a real parameter with
``param.register_hook(h)`` would never fire there. ``carry`` registers the same callables on a
fresh alias of each substitute (never on the substitute itself: a tensor reused across calls
would collect the hook twice). A hook that changes the gradient makes a gradient that is not the
derivative of the loss: such a gradient fails, as it should. Hooks that act after accumulation
(``register_post_accumulate_grad_hook``: they read or change the real parameter's ``.grad``, or
step an optimizer) cannot be carried and are refused (``refuse_post_accumulate``). A user's
tensor argument is copied into symgrad's run with its hooks (``user_copy``).

>>> import torch
>>> w = torch.ones(2, requires_grad=True)
>>> h = w.register_hook(lambda g: g * 3)
>>> sub = torch.ones(2, requires_grad=True)
>>> torch.autograd.grad(carry(sub, tensor_hooks(w)).sum(), sub)[0]
tensor([3., 3.])
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import SymgradError


def tensor_hooks(t: torch.Tensor) -> list[Callable]:
    """The gradient hooks registered on ``t`` with ``t.register_hook`` (a leaf's), in order.

    Arguments:
        t: a tensor (a module's parameter, a function's input).
    Returns:
        The hook callables (empty when none)."""
    hooks = getattr(t, "_backward_hooks", None)
    return list(hooks.values()) if hooks else []


def carry(value: torch.Tensor, hooks: list[Callable]) -> torch.Tensor:
    """``value``, or where ``hooks`` are given and it requires grad, a fresh alias of it with
    each hook registered (the gradient flowing into ``value`` is the hooks' result).

    Arguments:
        value: the substitute symgrad passes for a user's tensor.
        hooks: that tensor's hooks (``tensor_hooks``).
    Returns:
        The tensor to use in its place (same values)."""
    if not hooks or not value.requires_grad:
        return value
    alias = value.view_as(value)
    for hook in hooks:
        alias.register_hook(hook)
    return alias


def user_copy(a: torch.Tensor, *, dtype: torch.dtype,
              device: torch.device | str | None = None) -> torch.Tensor:
    """A user's tensor argument as symgrad's own leaf: ``a`` detached, in ``dtype`` (and on
    ``device``), requiring grad as ``a`` does, with ``a``'s hooks registered again on it
    (``register_hook`` ones: the gradient compared is the hooked one, as ``loss.backward()``
    would leave in ``a.grad``; post-accumulate ones: so that ``refuse_post_accumulate`` sees
    them under the argument's name). ``sg.gradcheck`` and ``sg.verify(module=, inputs=)``
    copy their inputs with it.

    Arguments:
        a: the user's tensor (a leaf or not; its hooks are read, never changed).
        dtype: the run's dtype.
        device: the run's device (None: where ``a`` is).
    Returns:
        The copy.

    >>> x = torch.ones(2, requires_grad=True)
    >>> h = x.register_hook(lambda g: g * 2)
    >>> y = user_copy(x, dtype=torch.float64)
    >>> torch.autograd.grad(y.sum(), y)[0], len(x._backward_hooks)
    (tensor([2., 2.], dtype=torch.float64), 1)
    """
    out = a.detach().to(device=device, dtype=dtype, copy=True).requires_grad_(a.requires_grad)
    if a.requires_grad:
        for hook in tensor_hooks(a):
            out.register_hook(hook)
        for hook in (getattr(a, "_post_accumulate_grad_hooks", None) or {}).values():
            out.register_post_accumulate_grad_hook(hook)
    return out


def hook_name(hook: Callable) -> str:
    """How a message names a hook: its qualified name (``<lambda>``, ``clip``)."""
    return getattr(hook, "__qualname__", None) or type(hook).__name__


def refuse_post_accumulate(named: Iterable[tuple[str, torch.Tensor]], who: str) -> None:
    """Raise one line naming the first tensor with a post-accumulate-grad hook.

    Arguments:
        named: (the user's name, tensor) pairs: a module's parameters, a function's inputs.
        who: how the message names the call (``verify(module=Sequential)``).
    Returns:
        None; raises ``SymgradError`` where such a hook is registered."""
    for name, t in named:
        hooks = getattr(t, "_post_accumulate_grad_hooks", None)
        if isinstance(t, torch.Tensor) and hooks:
            first = hook_name(next(iter(hooks.values())))
            raise SymgradError(
                f"{who}: {name!r} has a post-accumulate-grad hook ({first}, from "
                "register_post_accumulate_grad_hook); it acts on the real .grad after backward "
                "(an optimizer step, a .grad edit), which symgrad's run on substitute tensors "
                "cannot reproduce; remove it (handle.remove()) while verifying")
