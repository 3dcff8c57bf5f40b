"""The user's code run again in float64: which backends can be, and the run itself, refused
where the code does not compute in float64 (an inner ``.float()``, a float32 constant's
arithmetic, a custom Function's backward casting down).

A float64 re-run is evidence only where the whole run is float64: a rounding to float32 inside
would reproduce the float32 run's own roundings, and a bias they share would read as a bug of
the code ("proven in float64"). ``run64`` watches every operation the forward and the backward
dispatch (``torch.utils._python_dispatch.TorchDispatchMode``, the backward's ops included) and
gives None where one takes a float64 operand to a narrower float, or computes in a narrower
float at all (creating, copying or viewing a constant in one is no computation: its value is
the same in every run and in the capture; ``KEEPS``).

Which code re-runs (``float64_code``): a ``torch_fn`` (``sg.gradcheck``, ``sg.verify(torch_fn=)``)
and a module path that marks itself ``runs_in_float64`` (``symgrad.modules.any``: every float
parameter, buffer and input of a captured module is a block, so the path's function computes in
its blocks' dtype; a compiled path does not re-run: it would compile again for float64).

>>> import torch
>>> fn = lambda w: (w * w).sum()
>>> blocks = [type("B", (), {"name": "w", "is_param": True,
...           "domain": type("D", (), {"integer": False})()})()]
>>> import numpy as np
>>> run64(fn, blocks, {"w": np.ones((2, 3))}, device="cpu")[:, 0].tolist()
[3.0, 3.0]
>>> run64(lambda w: (w.float() * w.float()).sum().double(), blocks, {"w": np.ones((2, 3))},
...       device="cpu") is None
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .torch import run_torch_fn

NARROW = (torch.float32, torch.float16, torch.bfloat16)
_aten = torch.ops.aten
KEEPS = {_aten.lift_fresh, _aten.lift_fresh_copy, _aten.clone, _aten.detach, _aten.alias,
         _aten._to_copy, _aten.copy_, _aten.expand, _aten.zeros_like, _aten.ones_like,
         _aten.empty_like, _aten.full_like}  # a narrow operand's value as it is: no rounding


class _Narrowing(TorchDispatchMode):
    """Records the first operation that computes in a float narrower than float64."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.first is None:
            floats = [t.dtype for t in tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor) and t.is_floating_point()]
            narrow = any(isinstance(t, torch.Tensor) and t.dtype in NARROW
                         for t in tree_leaves(out))
            keeps = func.is_view or func.overloadpacket in KEEPS  # a constant, or a cast
            if narrow and floats and (torch.float64 in floats or not keeps):
                self.first = str(func)
        return out


def float64_code(name: str, torch_fn: Callable | None, extra: dict) -> Callable | None:
    """The code a float64 re-run of backend ``name`` runs: the ``torch_fn``, or an extra
    backend's function that marks itself ``runs_in_float64``; None: it cannot re-run."""
    if name == "torch_fn":
        return torch_fn
    fn = extra.get(name, (None,))[0]
    return fn if getattr(fn, "runs_in_float64", False) else None


def reruns64(name: str, torch_fn: Callable | None, extra: dict) -> bool:
    """Whether backend ``name``'s code re-runs in float64 (``float64_code``)."""
    return float64_code(name, torch_fn, extra) is not None


def run64(fn: Callable, blocks, values: dict[str, np.ndarray], *, device: str) -> np.ndarray | None:
    """``fn`` on every sample in float64, one at a time (``run_torch_fn``'s array), or None
    where the run computed in a narrower float somewhere (module doc).

    Arguments:
        fn: ``fn(**blocks) -> scalar tensor`` for one sample (the user's code).
        blocks: the model's blocks; values: block name -> array (N, *shape).
        device: where it runs.
    Returns:
        (N, 1 + parameter entries) float64, or None.
    """
    watch = _Narrowing()
    with watch:
        got = run_torch_fn(fn, blocks, values, device=device, dtype="float64", batching="loop")[0]
    return None if watch.first is not None else got
