"""Tensors that require grad which a checked function reaches without taking them as inputs.

``sg.gradcheck(lambda x: loss(net(x), y), (x,))`` checks the gradient with respect to ``x``
only: ``net``'s parameters are closed over, captured as constants and held at their values (as
torch's own gradcheck holds them), so a wrong weight gradient passes silently. Named here, from
one eager run's autograd graph, so that the check can say so (newuser12: a x1.5 hook on a
weight passed ``sg.gradcheck`` through a lambda, and failed it through a module).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils._pytree import tree_leaves


def closed_over(func: Callable, args: tuple, checked: Sequence[torch.Tensor]) -> list:
    """The leaf tensors requiring grad that ``func(*args)``'s output depends on, other than
    ``checked`` (the inputs and module parameters the check differentiates).

    Arguments:
        func: the function checked.
        args: its inputs, as the check runs it.
        checked: the tensors the check differentiates (compared by identity).
    Returns:
        Those leaves (tensors), in the order the graph reaches them; [] where the run raises.

    >>> lin = torch.nn.Linear(2, 1)
    >>> x = torch.ones(2, requires_grad=True)
    >>> sorted(tuple(t.shape) for t in closed_over(lambda x: lin(x).sum(), (x,), [x]))
    [(1,), (1, 2)]
    """
    try:
        with torch.enable_grad():
            out = func(*args)
    except Exception:  # noqa: BLE001 - a note, never a second error: the check runs it itself
        return []
    own = {id(t) for t in checked}
    todo = [t.grad_fn for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    seen: set[int] = set()
    found: list = []
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        leaf = getattr(node, "variable", None)  # an AccumulateGrad: a leaf requiring grad
        if isinstance(leaf, torch.Tensor) and id(leaf) not in own:
            found.append(leaf)
        todo += [f for f, _ in node.next_functions]
    return found


def closed_note(what: str, found: list) -> str:
    """One line naming ``found`` (``closed_over``) and how to check them.

    >>> closed_note("gradcheck(<lambda>)", [torch.zeros(3, 2), torch.zeros(3)])
    'gradcheck(<lambda>): 2 tensors that require grad (shapes (3, 2), (3,)) reach its output without being among its inputs (the parameters of a module it closes over?): held at their values, their gradients not checked; to check them, pass a module (an nn.Module whose forward computes this, its parameters checked too) or pass them as inputs'
    """
    found = sorted(found, key=lambda t: (-t.dim(), tuple(t.shape)))  # not the graph's order
    shapes = ", ".join(str(tuple(t.shape)) for t in found[:4]) + (", ..." if len(found) > 4
                                                                 else "")
    one = len(found) == 1
    return (f"{what}: {len(found)} tensor{'s' * (not one)} that require{'s' * one} grad "
            f"(shape{'s' * (not one)} {shapes}) reach{'es' * one} its output without being "
            "among its inputs (the parameters of a module it closes over?): held at their "
            "values, their gradients not checked; to "
            "check them, pass a module (an nn.Module whose forward computes this, its "
            "parameters checked too) or pass them as inputs")
