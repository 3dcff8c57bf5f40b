"""The custom ``torch.autograd.Function``\\ s a module's forward calls, read from the autograd
graph of one eager run, and the module's parameters upstream of each: a failing gradient whose
failing parameters all lie upstream of one such Function is named as flowing through its
backward (the captured forward is the Function's forward; its own backward is what is checked).

>>> import torch
>>> class Twice(torch.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         return 2 * x
...     @staticmethod
...     def backward(ctx, g):
...         return 3 * g
>>> class Net(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
...     def forward(self, x):
...         return self.b(Twice.apply(self.a(x))).sum()
>>> {f: sorted(ps) for f, ps in upstream_of_functions(Net(), (torch.ones(1, 2),), None, ()).items()}
{'Twice': ['a.bias', 'a.weight']}
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..capture.hooks import hook_name, tensor_hooks
from ..compare import FAILING
from ..hvp import upstream_functions
from ..result import Result


def upstream_of_functions(module: nn.Module, args: tuple, loss: Callable | None,
                          targets: tuple) -> dict[str, set[str]]:
    """Each custom autograd Function on the graph of ``loss(module(*args), *targets)`` (or of
    the output itself), by its class name, with the names of the module's parameters whose
    gradient flows through its backward.

    Arguments:
        module: the module, in the mode the verification ran it.
        args: its inputs, as the verification fed them.
        loss: ``loss(output, *targets)``, or None.
        targets: the loss's targets.
    Returns:
        Function class name -> parameter names upstream of it ({} where none is called).
    """
    with torch.enable_grad():
        out = module(*args)
        out = loss(out, *targets) if loss is not None else out
    return upstream_functions(tree_leaves(out), dict(module.named_parameters()))


def function_note(upstream: dict[str, set[str]], failing: set[str]) -> str | None:
    """One line naming the custom Function whose backward every failing parameter's gradient
    flows through (None if no Function holds them all).

    >>> function_note({"Twice": {"a.weight", "a.bias"}}, {"a.weight"})
    "every failing gradient (a.weight) flows through the backward of the custom autograd.Function 'Twice' (its forward is what was captured, its backward what autograd ran): check that backward first"
    >>> function_note({"Twice": {"a.weight"}}, {"b.weight"}) is None
    True
    """
    holders = [f for f, params in upstream.items() if failing and failing <= params]
    if not holders:
        return None
    return (f"every failing gradient ({', '.join(sorted(failing))}) flows through the backward "
            f"of the custom autograd.Function '{min(holders, key=lambda f: len(upstream[f]))}' "
            "(its forward is what was captured, its backward what autograd ran): check that "
            "backward first")


def hook_note(module: nn.Module, failing: set[str]) -> str | None:
    """One line naming the failing parameters that carry the user's own gradient hook
    (``register_hook``, carried onto symgrad's run: ``capture/hooks.py``), None if none does:
    a planted ``w.register_hook(lambda g: g * (1 + 1e-8))`` failed as "real derivative error"
    with no word of the hook (newuser8).

    >>> lin = torch.nn.Linear(2, 1)
    >>> h = lin.weight.register_hook(lambda g: g * 2)
    >>> hook_note(lin, {"weight", "bias"})
    "weight's gradient goes through a hook of yours (<lambda>, registered with register_hook): what it returns is what was compared, and a hook that changes the gradient makes one that is not the loss's derivative: check it first"
    """
    params = dict(module.named_parameters())
    hooked = {n: [hook_name(h) for h in tensor_hooks(params[n])] for n in sorted(failing)
              if n in params and tensor_hooks(params[n])}
    if not hooked:
        return None
    which = ", ".join(f"{n}'s" for n in hooked)
    return (f"{which} gradient goes through a hook of yours ("
            f"{', '.join(dict.fromkeys(h for hs in hooked.values() for h in hs))}, registered "
            "with register_hook): what it returns is what was compared, and a hook that changes "
            "the gradient makes one that is not the loss's derivative: check it first")


def stop_note(stops: tuple[str, ...], shown: int = 3) -> str | None:
    """One line naming the forward's stop-gradients (``Captured.detached``: ``.detach()``,
    ``.data``, ``torch.no_grad()``), which the exact derivative keeps as autograd does
    (issue 18): no derivative through them, their values used as they are. None without.

    >>> stop_note(("net.py:6: return self.b(h.detach())",))
    'treated as stop-gradients, as autograd does (no derivative through them, their values used): net.py:6: return self.b(h.detach())'
    """
    if not stops:
        return None
    more = f"; … and {len(stops) - shown} more" if len(stops) > shown else ""
    return ("treated as stop-gradients, as autograd does (no derivative through them, their "
            f"values used): {'; '.join(stops[:shown])}{more}")


def failing_blocks(result: Result) -> set[str] | None:
    """The parameter blocks with a failing gradient entry in any compared backend; None when
    the loss value fails too (the forward differs: not a backward's doing) or a backend's
    statuses were reduced away."""
    failing: set[str] = set()
    for comp in result.comparisons.values():
        status = getattr(comp, "status", None)
        if status is None or np.ndim(status) != 2:
            return None
        bad = np.isin(status, FAILING).any(axis=0)
        if bad[0]:
            return None
        failing |= {name for name, a, b in result.blocks if bad[a:b].any()}
    return failing
