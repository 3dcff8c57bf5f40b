"""Built-in models by name, and loading a user's model from ``module:attr``."""

from __future__ import annotations

import importlib
from typing import Callable

from ..errors import SymgradError
from ..model import Model
from . import tutorial

BUILDERS: dict[str, Callable[[], Model]] = {
    "chain_rule": tutorial.chain_rule,
    "neuron": tutorial.neuron,
    "simplenet": tutorial.simplenet,
    "tensor_ops": tutorial.tensor_ops,
}


def names() -> list[str]:
    return list(BUILDERS)


def get(name: str) -> Model:
    """A built-in model by name, or a user's ``Model`` from ``package.module:attr``."""
    if name in BUILDERS:
        return BUILDERS[name]()
    if ":" in name:
        return load(name)
    raise SymgradError(f"unknown model {name!r}; built-in models: {', '.join(BUILDERS)}; "
                       "or give module:attr for your own")


def load(spec: str) -> Model:
    """Import ``module:attr``; attr may be a Model or a function returning one."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SymgradError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise SymgradError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Model):
        obj = obj()
    if not isinstance(obj, Model):
        raise SymgradError(f"{spec} is a {type(obj).__name__}, not an sg.Model")
    return obj
