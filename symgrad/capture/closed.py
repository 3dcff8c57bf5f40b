"""Tensors that require grad which a checked function reaches without taking them as inputs.

``sg.gradcheck(lambda x: loss(net(x), y), (x,))`` checks the gradient with respect to ``x``
only: ``net``'s parameters are closed over, captured as constants and held at their values (as
torch's own gradcheck holds them), so a wrong weight gradient passes silently. Named here, from
the function's closure and the globals its code names, so that the check can say so
(newuser12: a x1.5 hook on a weight passed ``sg.gradcheck`` through a lambda, and failed it
through a module).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def closed_over(func: Callable, checked: Sequence[torch.Tensor]) -> list:
    """The tensors requiring grad that a plain function reaches by name without taking them
    as inputs: the parameters of a module (or a tensor) in its closure, among the globals its
    code names, or the module a bound method belongs to, other than ``checked``. Read from the function object, not by running it
    (a run would draw dropout masks and move BatchNorm's running statistics).

    Arguments:
        func: the function checked (an nn.Module or a custom Function's apply: none).
        checked: the tensors the check differentiates (compared by identity).
    Returns:
        Those tensors, each once.

    >>> lin = torch.nn.Linear(2, 1)
    >>> x = torch.ones(2, requires_grad=True)
    >>> sorted(tuple(t.shape) for t in closed_over(lambda x: lin(x).sum(), [x]))
    [(1,), (1, 2)]
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return []
    cells = [c.cell_contents for c in (getattr(func, "__closure__", None) or ())
             if _filled(c)]
    named = getattr(func, "__globals__", {})
    owner = getattr(func, "__self__", None)  # net.forward: net's own parameters
    values = cells + [named[n] for n in code.co_names if n in named] + list(
        getattr(func, "__defaults__", None) or ()) + [owner]
    own = {id(t) for t in checked}
    found: dict[int, torch.Tensor] = {}
    for v in values:
        tensors = (list(v.parameters()) if isinstance(v, torch.nn.Module) else
                   [v] if isinstance(v, torch.Tensor) else [])
        for t in tensors:
            if t.requires_grad and id(t) not in own:
                found.setdefault(id(t), t)
    return list(found.values())


def _filled(cell) -> bool:
    """Whether a closure cell holds a value yet (a name assigned after the lambda: not)."""
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def closed_note(what: str, found: list) -> str:
    """One line naming ``found`` (``closed_over``) and how to check them.

    >>> closed_note("gradcheck(<lambda>)", [torch.zeros(3, 2), torch.zeros(3)])
    'gradcheck(<lambda>): it uses 2 tensors that require grad (shapes (3, 2), (3,)) without taking them as inputs (the parameters of a module it closes over?): held at their values, their gradients not checked; to check them, pass a module (an nn.Module whose forward computes this, its parameters checked too) or pass them as inputs'
    """
    found = sorted(found, key=lambda t: (-t.dim(), tuple(t.shape)))  # a stable order
    shapes = ", ".join(str(tuple(t.shape)) for t in found[:4]) + (", ..." if len(found) > 4
                                                                 else "")
    one = len(found) == 1
    return (f"{what}: it uses {len(found)} tensor{'s' * (not one)} that require{'s' * one} "
            f"grad (shape{'s' * (not one)} {shapes}) without taking "
            f"{'it' if one else 'them'} as inputs (the parameters of a module it closes "
            "over?): held at their "
            "values, their gradients not checked; to "
            "check them, pass a module (an nn.Module whose forward computes this, its "
            "parameters checked too) or pass them as inputs")
