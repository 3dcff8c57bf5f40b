"""``capture(fn, args)``: a user's torch function or module as a ``TensorModel``, with the
torch function that runs the user's own code on the same blocks and the example point.

A scalar output is the loss; otherwise (several outputs, or a non-scalar one) the loss is the
sum of each float output times a fixed random cotangent (a vector-Jacobian product: the user's
backward is compared along that direction, never as a full Jacobian).

>>> import torch
>>> W = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
>>> x = torch.randn(2, dtype=torch.float64)
>>> c = capture(lambda W, x: torch.tanh(W @ x).sum(), (W, x))
>>> [b.name for b in c.model.blocks]
['W', 'x']
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.export.graph_signature import OutputKind
from torch.utils._pytree import tree_leaves

from ..errors import SymgradError, checked_keywords
from ..tensor.model import TensorModel
from ..tensor.program import Node, add_all, const, einsum
from .dropout import mask_rng
from .export import (Call, Slot, arg_names, display_name, export, leaf_names,
                     slots as graph_slots)
from .hooks import carry, refuse_post_accumulate, tensor_hooks
from .values import Held, holding
from .walk import leaf, narrowings, walk

_L = "abcdefghijklmnop"


@dataclass
class Captured:
    """A captured function: its model, where each block comes from, and the example point.

    ``cotangents[i]`` is the direction of output ``i`` (None: that output is the scalar loss
    itself, or is not differentiable and left out)."""

    model: TensorModel
    slots: list[Slot]
    call: Call
    cotangents: list[np.ndarray | None]
    example: dict[str, np.ndarray] = field(default_factory=dict)
    detached: tuple[str, ...] = ()  # the user's stop-gradients' lines (``stops.user_line``)

    @property
    def blocks(self) -> list[Slot]:
        return [s for s in self.slots if s.role != "known" and s.source != "tied"]

    def torch_fn(self, other: Callable | None = None) -> Callable:
        """``fn(**blocks) -> scalar``: the user's own code (eager autograd) on one sample, its
        outputs reduced with the same cotangents as the model's loss. ``other``: run that
        callable instead, on the same arguments (the captured one is then its reference; its
        own module parameters, if any, are held)."""
        state = [s for s in self.slots if s.source == "state"]
        args = [s for s in self.slots if s.source == "arg"]
        cots = self.cotangents
        other_call = Call(other, self.call.args, self.call.loss,
                          self.call.n_targets) if other is not None else None
        if other_call is not None:
            other_call.share_masks(self.call)  # fed the same keep-masks
        hooks = self.hooks()  # the user's own tensor hooks, carried onto the substitutes

        def fn(**blocks: torch.Tensor) -> torch.Tensor:
            tensors = tuple(carry(_own(blocks.get(s.name, s.value)), hooks.get(s.key, []))
                            for s in args)
            if other_call is not None:
                outs = tree_leaves(other_call(*tensors))
            else:
                wide = _float_dtype(blocks)  # a held state tensor the graph does not read
                overrides = {s.key: carry(_own(blocks[s.name] if s.name in blocks else
                                               _widened(s.value, wide)),
                                          hooks.get(s.key, [])) for s in state}
                outs = tree_leaves(torch.func.functional_call(self.call, overrides, tensors))
            if len(outs) != len(cots):
                raise SymgradError(f"{self.model.name}: returned {len(outs)} tensors, its "
                                   f"reference {len(cots)}")
            parts = []
            for out, cot in zip(outs, cots):
                if cot is None and out.dim() == 0 and out.is_floating_point():
                    parts.append(out)
                elif cot is not None:
                    parts.append((out * torch.as_tensor(cot, dtype=out.dtype,
                                                        device=out.device)).sum())
            return sum(parts[1:], parts[0])
        fn.__name__ = self.model.name
        return fn

    def hooks(self) -> dict[Any, list[Callable]]:
        """Slot key -> the ``register_hook`` hooks on the user's own tensor there (a
        module's parameter, a tensor argument); only those with hooks."""
        real = dict(self.call.named_parameters(remove_duplicate=False))
        out = {}
        for s in self.slots:
            t = (self.call.template[self.call.slots[s.key]] if s.source == "arg"
                 else real.get(s.key) if s.source == "state" else None)
            found = tensor_hooks(t) if isinstance(t, torch.Tensor) else []
            if found:
                out[s.key] = found
        return out

    def at(self, samples: int = 1, seed: int = 0, vary: Sequence[str] | None = None) -> dict:
        """Samples for ``sg.verify(..., at=)``: sample 0 is the example point; the others
        scale each entry of the blocks in ``vary`` (default: the parameters) by a random
        factor in [5/8, 11/8] (signs and zeros stay: kinks at 0 stay kinks); the other blocks
        (inputs, buffers: BatchNorm's running variance must stay positive) are held; a
        dropout keep-mask is drawn afresh for each sample (``dropout.mask_rng(seed, 1)``)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 18]))
        masks, keep = {s.block: s for s in self.call.feed.sites}, mask_rng(seed, 1)
        if vary is None:
            vary = [b.name for b in self.model.param_blocks]
        out = {}
        for name, v in self.example.items():
            rows = [v]
            for _ in range(samples - 1):
                if name in masks:
                    rows.append(masks[name].draw(keep))
                    continue
                u = np.clip(rng.standard_normal(v.shape), -3, 3) / 8 if name in vary else 0
                rows.append(v * (1 + u))
            out[name] = np.stack(rows)
        return out


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
def capture(fn: Callable, args: Sequence[Any] | Any, *, grad: Sequence[bool] | None = None,
            module_params: str = "param", seed: int = 0, name: str | None = None,
            names: Sequence[str] | None = None, loss: Callable | None = None,
            n_targets: int = 0, who: str | None = None, has_train: bool = False) -> Captured:
    """Capture ``fn(*args)`` as a tensor program.

    Arguments:
        fn: a function or ``torch.nn.Module`` of tensors (any Python code torch.export traces).
        args: its example arguments (a tensor or a tuple; an argument may nest tensors in a
            tuple, list or dict, named ``hx_0``, ``hx_1``, ...); float tensors become blocks,
            integer and bool tensors are folded at their values.
        grad: per tensor argument, whether it is differentiated (default: ``requires_grad``).
        module_params: "param" (a module's parameters are differentiated), "input" (held)
            or "trainable" (only those with ``requires_grad``; the frozen held).
        seed: the seed of the random cotangents of a non-scalar output.
        name: the model's name (default: the function's or the module's).
        names: the arguments' names (default: from ``fn``'s signature).
        loss: the captured forward is ``loss(fn(*args[:-n_targets]), *args[-n_targets:])``
            (a module's output and its targets); None: ``fn(*args)`` itself.
        n_targets: how many of the last ``args`` are ``loss``'s targets.
        who: how error messages name the call (``verify(module=Net)``; default
            ``capture('<name>')``).
        has_train: the caller has a ``train=`` option: an eager failure of a module in
            train mode names it (``sg.verify(module=)`` passes True).
    Returns:
        A ``Captured``: ``.model`` (a ``TensorModel``), ``.torch_fn()``, ``.at()``.
    """
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    own = list(fn.named_parameters()) if isinstance(fn, torch.nn.Module) else []
    own_names = leaf_names(args, list(names) if names is not None else arg_names(fn, len(args)))
    refuse_post_accumulate(own + list(zip(own_names, tree_leaves(list(args)))),
                           who or f"capture({display_name(fn)!r})")
    call, ep = export(fn, args, loss, n_targets, who, has_train=has_train, seed=seed)
    with said_by(who):  # the walk's "capture: ..." lines, named by the call the user made
        return _captured(fn, call, ep, own_names, grad, module_params, seed, name)


def _captured(fn: Callable, call: Call, ep: torch.export.ExportedProgram, own_names: list[str],
              grad: Sequence[bool] | None, module_params: str, seed: int,
              name: str | None) -> Captured:
    """``capture``'s program of the exported ``ep``."""
    tensors = [call.template[i] for i in call.slots]
    own_names = own_names + [s.block for s in call.feed.sites]  # the keep-masks: held inputs
    names = [own_names[i] for i in call.slots]
    grad = [bool(t.requires_grad) for t in tensors] if grad is None else list(grad) + [
        False] * len(call.feed.sites)
    if len(grad) != len(tensors):
        raise SymgradError(f"capture: grad= has {len(grad)} entries for {len(tensors)} tensor "
                           "arguments")
    sl = graph_slots(call, ep, names, grad, module_params)
    inputs = _inputs(sl)
    kinds = [o.kind for o in ep.graph_signature.output_specs]
    floats = {s.value.dtype for s in sl if s.role in ("param", "input")}
    held = Held(exact=floats == {torch.float64}, taken=frozenset(s.name for s in sl))
    with holding(held):  # a float64 constant array the forward computes: a held input block
        outs = [o for o, kind in zip(walk(ep.graph, inputs), kinds)
                if kind == OutputKind.USER_OUTPUT]  # not the buffer updates (BatchNorm's stats)
    _refuse_lost(ep, outs)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    cots, parts = _loss_parts(outs, rng)
    if not parts:
        raise SymgradError("capture: no output depends on a differentiated tensor (give "
                           "requires_grad=True inputs, or a module with parameters)")
    label = name or display_name(fn)
    loss = add_all(parts)
    # every differentiated tensor, in the module's / signature's order (not first use), used
    # or not: a backward that gives an unused input a gradient is wrong (its exact one is 0)
    params = [inputs[s.placeholder] for s in sl if s.role == "param" and s.source != "tied"]
    try:
        model = TensorModel(label, loss, description="captured by torch.export", params=params)
    except SymgradError as exc:
        raise SymgradError(f"capture: {exc}") from None
    if floats:  # the run's dtype: the widest of its float parameters and inputs
        model.lowered = narrowings(ep.graph, max(floats, key=lambda d: torch.finfo(d).bits))
    used_names = {b.name for b in model.blocks}  # an unused parameter is no block: held
    example = {s.name: s.value.cpu().numpy() if s.role == "ids"
               else s.value.to(torch.float64).cpu().numpy() for s in sl if s.name in used_names}
    example.update({n: v for n, v in held.values().items() if n in used_names})
    return Captured(model, sl, call, cots, example, call.stops)


@contextlib.contextmanager
def said_by(who: str | None) -> Iterator[None]:
    """A capture's own "capture: ..." line raised in the block, named by ``who`` instead (the
    call the user made: ``gradcheck(Net): ATen op ... is not supported yet``), as the eager
    run's lines are; as it is when ``who`` is None (``sg.capture`` itself)."""
    try:
        yield
    except SymgradError as exc:
        text = str(exc)
        if who is None or type(exc) is not SymgradError or not text.startswith("capture: "):
            raise
        raise SymgradError(f"{who}: {text.removeprefix('capture: ')}") from None


def _refuse_lost(ep: torch.export.ExportedProgram, outs: list) -> None:
    """A float output whose captured value is None (it reads a statistic the capture does
    not hold: batch norm's saved mean or rstd) would be dropped from the loss: one line."""
    last = next(n for n in ep.graph.nodes if n.op == "output").args[0]
    user = [f for f, o in zip(last, ep.graph_signature.output_specs)
            if o.kind == OutputKind.USER_OUTPUT]
    for i, (f, o) in enumerate(zip(user, outs)):
        val = f.meta.get("val") if isinstance(f, torch.fx.Node) else None
        if o is None and isinstance(val, torch.Tensor) and val.is_floating_point():
            raise SymgradError(f"capture: output {i} is computed from a batch norm's saved "
                               "mean or rstd, which symgrad does not capture; return values "
                               "computed from the inputs instead")


def _float_dtype(blocks: dict) -> torch.dtype | None:
    """The float dtype the blocks came in (the run's)."""
    return next((t.dtype for t in blocks.values() if t.is_floating_point()), None)


def _widened(value: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A state tensor that is no block (train-mode BatchNorm's running statistics, which the
    graph only updates) in the run's float dtype: a float64 re-run of a float32 module
    (``symgrad.backends.float64``) would otherwise mix dtypes there. The same tensor in the
    run's own dtype."""
    if dtype is None or not value.is_floating_point() or value.dtype == dtype:
        return value
    return value.to(dtype)


def _own(value: torch.Tensor) -> torch.Tensor:
    """What the user's code receives for a tensor it does not differentiate: its own copy
    (a forward may change an input in place, ``x.mul_(2)``, or BatchNorm its running stats in
    train mode: never symgrad's samples, which the oracle reads too); a tensor that requires
    grad is passed as is (changing it in place raises, as in the user's own training)."""
    return value if value.requires_grad else value.clone()


def _inputs(sl: list[Slot]) -> dict[str, Any]:
    """Placeholder -> its leaf; a tied parameter shares the leaf of the one it is tied to."""
    out, by_name = {}, {}
    for s in sl:
        if s.source == "tied":
            out[s.placeholder] = by_name[s.name]
        else:
            out[s.placeholder] = by_name[s.name] = leaf(s)
    return out


def _loss_parts(outs: list, rng: np.random.Generator) -> tuple[list, list[Node]]:
    """Each output's cotangent and its part of the loss (a scalar sole output: itself)."""
    floats = [isinstance(o, Node) for o in outs]
    if len(outs) == 1 and floats[0] and outs[0].shape == ():
        return [None], [outs[0]]
    cots, parts = [], []
    for o, is_node in zip(outs, floats):
        if not is_node:
            cots.append(None)  # a constant or non-differentiable output: no derivative
            continue
        cot = rng.standard_normal(o.shape).astype(np.float32).astype(np.float64)
        sub = _L[:o.ndim]
        cots.append(cot)
        parts.append(einsum(f"{sub},{sub}->", o, const(cot, "cotangent")))
    return cots, parts


def cotangent_note(cotangents: list, seed: int, what: str) -> str | None:
    """One line saying that a non-scalar output was checked along a random cotangent: which
    one (its first entries) and from which seed (None for a scalar loss).

    Arguments:
        cotangents: ``Captured.cotangents``.
        seed: the run's seed (the cotangent is drawn from it, ``_loss_parts``).
        what: the line's subject ("the loss is", "no loss= given and the output is").
    Returns:
        The line, or None.

    >>> cotangent_note([np.array([0.25, -1.5])], 3, "the output is").split(" (each")[0]
    'the output is not a scalar (shape (2,)): checked along a random cotangent c = [0.25, -1.5]'
    """
    cots = [c for c in cotangents if c is not None]
    if not cots:
        return None
    shown = "; ".join("[" + ", ".join(f"{v:.4g}" for v in c.reshape(-1)[:4])
                      + (", …" if c.size > 4 else "") + "]" for c in cots)
    return (f"{what} not a scalar (shape {', '.join(str(tuple(c.shape)) for c in cots)}): "
            f"checked along a random cotangent c = {shown} (each gradient is that of "
            "sum(output * c), a vector-Jacobian product; c standard normal, rounded to float32, "
            f"the same at every sample, drawn from seed {seed}); return a scalar loss "
            "(reduction='mean', .sum()) to check the gradient itself")
