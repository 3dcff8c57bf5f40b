"""``--module pkg.mod:attr``: the user's nn.Module for the command line.

>>> load_module("torch.nn:Identity", {}, "float64", "cpu")  # a class, called with the config
Identity()
>>> load_module("torch.nn:GPTModel", {}, "float64", "cpu")
Traceback (most recent call last):
...
symgrad.errors.SymgradError: --module: 'torch.nn' has no attribute 'GPTModel'
"""

from __future__ import annotations


from torch import nn

from ..backends.torch import TORCH_DTYPES
from ..errors import SymgradError
from ..zoo import import_user_module


def load_module(spec: str, config: dict, dtype: str, device: str) -> nn.Module:
    """Import ``pkg.mod:attr``: an nn.Module instance is used as is; a class or factory is
    called with the GPT config dict. The module is converted to the run's dtype and device."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SymgradError(f"--module {spec!r}: give pkg.module:attr (e.g. mybook.gpt:GPTModel)")
    mod = import_user_module(module_name, "--module")
    try:
        obj = getattr(mod, attr)
    except AttributeError:
        raise SymgradError(f"--module: {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise SymgradError(f"--module {spec}: a {type(obj).__name__}, not an nn.Module or "
                               "a factory")
        try:
            obj = obj(config)
        except Exception as exc:
            raise SymgradError(f"--module {spec}: calling it with the config dict failed: "
                               f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, nn.Module):
        raise SymgradError(f"--module {spec} gave a {type(obj).__name__}, not an nn.Module")
    return obj.to(device=device, dtype=TORCH_DTYPES[dtype])
