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

One run serves every reader (``Float64Runs``): the float64 rule check
(``symgrad.tensor.rulecheck``) and the confirmation's re-run (``symgrad.confirm``, its
``rerun64``) read the same run of a backend's code on the same compared samples.

Which code re-runs (``float64_code``): a ``torch_fn`` (``sg.gradcheck``, ``sg.verify(torch_fn=)``)
and a module path that marks itself ``runs_in_float64`` (``symgrad.modules.any``: every float
parameter, buffer and input of a captured module is a block, so the path's function computes in
its blocks' dtype; ``symgrad.modules.glue``: a GPT layout module's parameters are assembled from
the blocks, its tokens and keep-masks are blocks; a compiled path does not re-run: it would
compile again for float64).

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

import time
from typing import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..errors import SymgradError
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


class Float64Runs:
    """Each backend's code run once in float64 on one run's compared samples (``run64``),
    kept for every reader: the rule check and the confirmation ask for the same samples.

    Arguments:
        blocks: the model's blocks; values: block name -> array (N, *shape), the samples.
        device: where the code runs; torch_fn, extra: the user's code (``float64_code``).
    Returns (``get``): (N, 1 + parameter entries) float64, or None where the code does not
    re-run, computes in a narrower float, or refuses float64 (a ``SymgradError``: a float32
    tensor it holds); ``count``: how many runs it made.

    >>> import numpy as np
    >>> b = type("B", (), {"name": "w", "is_param": True,
    ...          "domain": type("D", (), {"integer": False})()})()
    >>> runs = Float64Runs([b], {"w": np.ones((2, 3))}, device="cpu",
    ...                    torch_fn=lambda w: (w * w).sum(), extra={})
    >>> runs.get("torch_fn")[:, 0].tolist(), runs.get("torch_fn") is runs.get("torch_fn")
    ([3.0, 3.0], True)
    >>> runs.count, runs.get("numpy")
    (1, None)
    """

    def __init__(self, blocks, values: dict[str, np.ndarray], *, device: str,
                 torch_fn: Callable | None, extra: dict) -> None:
        self.blocks, self.values, self.device = blocks, values, device
        self.torch_fn, self.extra = torch_fn, extra or {}
        self.got: dict[str, np.ndarray | None] = {}
        self.seconds: dict[str, float] = {}  # backend -> its run's wall seconds
        self.count = 0

    def get(self, name: str) -> np.ndarray | None:
        """Backend ``name``'s float64 run on every sample (class doc), run on first ask."""
        if name not in self.got:
            code = float64_code(name, self.torch_fn, self.extra)
            got, t0 = None, time.perf_counter()
            if code is not None:
                self.count += 1
                try:
                    got = run64(code, self.blocks, self.values, device=self.device)
                except SymgradError:  # the code refuses float64: no float64 evidence
                    got = None
            self.got[name], self.seconds[name] = got, time.perf_counter() - t0
        return self.got[name]
