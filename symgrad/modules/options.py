"""``sg.verify``'s options for a module, checked before anything runs: one line per mistake,
naming the option and the fix (which combinations go together, a dict where a tuple is meant,
``frozen=``).

>>> dict_hint("inputs", {"mask": 1, "x": 2}, None)
"verify: inputs= is a dict (keys 'mask', 'x'); it is passed positionally: give a tuple in the order your forward takes them, e.g. inputs=(d['mask'], d['x'])"
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import SymgradError

FROZEN = ("check", "hold")  # frozen=: check frozen parameters as if trainable, or hold them


def check_frozen(frozen: Any, who: str) -> None:
    """``frozen`` is one of ``FROZEN``, else one line naming the option and its values."""
    if frozen not in FROZEN:
        raise SymgradError(f"{who}: frozen={frozen!r} is not an option; frozen=\"check\" (the "
                           "default: frozen parameters checked as if trainable) or "
                           "frozen=\"hold\" (held at their values, as buffers)")


def dict_hint(what: str, value: dict, module: Any) -> str:
    """The one line for a dict given as ``inputs=`` or ``targets=``: it is passed positionally,
    so a tuple in the forward's order is meant; the keys in that order where the module's
    ``forward`` names them all."""
    keys = list(value)
    try:
        order = list(inspect.signature(module.forward).parameters) if module is not None else []
    except (TypeError, ValueError):
        order = []
    if what == "inputs" and keys and set(keys) <= set(order):
        keys = sorted(keys, key=order.index)
        where = f"{type(module).__name__}.forward's order"
    else:
        where = ("the order your forward takes them" if what == "inputs"
                 else "the order loss(output, *targets) takes them")
    shown = ", ".join(f"d[{k!r}]" for k in keys[:4]) + (", ..." if len(keys) > 4 else "")
    return (f"verify: {what}= is a dict (keys {', '.join(map(repr, list(value)[:6]))}"
            f"{', ...' if len(value) > 6 else ''}); it is passed positionally: give a tuple in "
            f"{where}, e.g. {what}=({shown}{',' if len(keys) == 1 else ''})")


def check_options(*, model: Any, module: Any, inputs: Any, targets: Any, at: Any,
                  torch_fn: Any, module_map: Any, order: int, frozen: str = "check",
                  train: Any = False, loss: Any = None, backends: Any = None) -> None:
    """The combinations of ``sg.verify``'s model / module / inputs options, one line per
    mistake naming the option (raised before anything runs).

    >>> check_options(model=None, module=None, inputs=None, targets=None, at=None,
    ...               torch_fn=None, module_map=None, order=1, frozen="skip")
    Traceback (most recent call last):
    ...
    symgrad.errors.SymgradError: verify: frozen='skip' is not an option; frozen="check" (the default: frozen parameters checked as if trainable) or frozen="hold" (held at their values, as buffers)
    """
    check_frozen(frozen, "verify")
    for what, value in (("module", module), ("model", model)):  # the class, not an instance
        if isinstance(value, type) and issubclass(value, nn.Module):  # (newuser9)
            raise SymgradError(f"verify: {what}= is the class {value.__name__}, not a module; "
                               f"pass an instance: module={value.__name__}(...)")
    if loss is not None and not callable(loss):  # loss="cross_entropy" (newuser9)
        raise SymgradError(f"verify: loss= must be a function loss(output, *targets) -> scalar "
                           f"tensor, got {type(loss).__name__} {loss!r:.40}; e.g. "
                           "loss=torch.nn.functional.cross_entropy")
    if not isinstance(train, bool):  # torch's own "training mode is expected to be boolean"
        raise SymgradError(f"verify: train= is True (the module in train mode: batch norm on "
                           f"the batch's statistics) or False (eval mode, the default), got "
                           f"{train!r}")
    if train and module is None:
        raise SymgradError("verify: train=True runs module= in train mode and goes with it; "
                           "drop train=, or pass module=your_module")
    if frozen != "check" and inputs is None:
        raise SymgradError("verify: frozen= goes with module= and inputs= (a captured module); "
                           "drop it")
    if module is None and isinstance(model, nn.Module):  # sg.verify(net, inputs=x): newuser8
        raise SymgradError(f"verify: the model is a torch.nn.Module ({type(model).__name__}); "
                           "pass it as module=: sg.verify(module=net, inputs=x, targets=y, "
                           "loss=...)")
    for what, value in (("inputs", inputs), ("targets", targets)):
        if isinstance(value, dict):
            raise SymgradError(dict_hint(what, value, module))
    if module is None:
        if inputs is not None or targets is not None:
            raise SymgradError(f"verify: {'inputs' if inputs is not None else 'targets'}= "
                               "goes with module= (the nn.Module they are fed to); pass "
                               "module=your_module")
        if model is None:
            raise SymgradError("verify: nothing to verify; pass a model (sg.Model or a zoo "
                               "model), or module=your_module with inputs=example_inputs")
        return
    if at is not None or torch_fn is not None:
        raise SymgradError(f"verify: module= runs the module itself; "
                           f"{'at' if at is not None else 'torch_fn'}= does not go with it "
                           "(drop it, or verify a model with at= / torch_fn= without module=)")
    if targets is not None and inputs is None:
        raise SymgradError("verify: targets= goes with inputs= (the module's example inputs); "
                           "pass inputs=")
    if inputs is None and model is None:
        raise SymgradError("verify: module= needs inputs= (example inputs: a tensor or a tuple "
                           "of tensors passed to the module), or a model describing it (GPT "
                           "layouts)")
    if inputs is not None and model is not None:
        raise SymgradError("verify: pass either a model (GPT layouts, matched by parameter "
                           "name) or inputs= (any module, captured), not both")
    if inputs is not None and module_map is not None:
        raise SymgradError("verify: module_map= maps a model's blocks to a GPT module; with "
                           "inputs= the module is captured under its own names: drop it")
    if inputs is not None and backends is not None:  # was silently ignored (newuser9)
        raise SymgradError("verify: backends= chooses among a model's programs (numpy, torch, "
                           "torch_fn); with module= and inputs= only your module runs: drop it "
                           "(its torch paths are paths=(\"eager\", \"compile\", ...))")
    if inputs is not None and order != 1:  # loss= and targets= named (newuser12: the hint
        raise SymgradError(  # dropped them; a function's closed-over parameters are not checked)
            "verify: order=2 with module= and inputs= is not supported; use "
            "sg.gradgradcheck(module, inputs)" + (
                "; with a loss, on a module that returns it (its parameters are checked too): "
                "a wrapper nn.Module whose forward(x, y) returns loss(module(x), y), "
                "sg.gradgradcheck(wrapper, (x, y))"
                if loss is not None or targets is not None else ""))
