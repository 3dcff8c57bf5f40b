"""Built-in models by name, and loading a user's model from ``module:attr``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Callable

from torch import nn

from .. import zoo_index
from ..errors import SymgradError, did_you_mean
from ..model import Model
from ..tensor.model import ACCEPTED_MODELS, is_model
from ..zoo_index import GPT, NAMES, ZOO, unknown_model
from . import gpt, gpt2, tutorial

# every built-in model's builder, by its name in the zoo's table (``symgrad.zoo_index.ZOO``: its
# line, and its kind: a GPT builder takes config and tokens; the default run)
BUILDERS: dict[str, Callable] = {
    "chain_rule": tutorial.chain_rule,
    "neuron": tutorial.neuron,
    "simplenet": tutorial.simplenet,
    "tensor_ops": tutorial.tensor_ops,
    **gpt.BLOCKS,
    "tiny_gpt": gpt2.tiny_gpt,  # a tensor program (the one GPT builder, at the small config)
    "gpt2": gpt2.gpt2,
    "gpt2_medium": gpt2.gpt2_medium,
}
# the GPT models' builders, f(config, tokens=) (``ZOO[name].gpt``)
TENSOR_BUILDERS: dict[str, Callable] = {n: BUILDERS[n] for n in GPT}


def names() -> list[str]:
    """The built-in models of the default run (``symgrad report``), in the table's order."""
    return list(NAMES)


def describe(name: str) -> str:
    """One line for ``symgrad list``, without building the model."""
    return zoo_index.describe(name) if zoo_index.known(name) else get(name).description


def get(name: str, *, config: dict | None = None, tokens: int | None = None) -> Model:
    """A built-in model by name, or a user's ``Model`` from ``package.module:attr``.

    ``config`` (GPT_CONFIG-shaped) and ``tokens`` (the sequence length of a sample) apply to
    the GPT models (``zoo_index.GPT``: ``tiny_gpt``, ``gpt2``, ``gpt2_medium``), all tensor
    programs.

    >>> type(get("tiny_gpt", config={"n_layers": 1})).__name__
    'TensorModel'
    """
    entry = ZOO.get(name)
    if entry is not None and entry.gpt:
        return BUILDERS[name](config, tokens=tokens)
    for option, value in (("--tokens", tokens), ("--config", config)):
        if value is not None:
            raise SymgradError(f"{option} applies to the GPT models ({', '.join(GPT)}) only, "
                               f"not {name!r}")
    if entry is not None:
        return BUILDERS[name]()
    if ":" in name:
        return load(name)
    raise SymgradError(unknown_model(name))


def import_user_module(module_name: str, what: str):
    """Import the user's module as ``python -m`` would: the current directory comes first on
    the path (the ``symgrad`` console script does not put it there by itself). A file path
    (``mine.py``, ``models/mine.py``) is imported by its name from its own folder."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file() or path.suffix != ".py":
            raise SymgradError(f"{what}: no such file {module_name!r}; give the path of a .py "
                               "file, or its module name (mine for mine.py in the current "
                               "folder)")
        if str(path.resolve().parent) not in sys.path:
            sys.path.insert(0, str(path.resolve().parent))
        module_name = path.stem
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise SymgradError(f"{what}: cannot import module {module_name!r}: {exc} (run from the "
                           "folder that holds it, or add that folder to PYTHONPATH)") from None


def load(spec: str) -> Model:
    """Import ``module:attr``; attr may be a Model (or a tensor program's ``TensorModel``) or
    a function returning one."""
    module_name, _, attr = spec.partition(":")
    module = import_user_module(module_name, spec)
    candidates = _candidates(module)
    if not attr.strip():
        raise SymgradError(f"{spec!r}: name the model after the colon (module:attr)"
                           + (f", e.g. {module_name}:{candidates[0]}; {_defines(candidates)}"
                              if candidates else ""))
    try:
        obj = getattr(module, attr)
    except AttributeError:
        public = [n for n in vars(module) if not n.startswith("_")]
        hint = (f"; {h}" if (h := did_you_mean(attr, public)) else
                f"; {_defines(candidates)}" if candidates else "")
        raise SymgradError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None
    if isinstance(obj, nn.Module) or (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise SymgradError(f"{spec} is a torch.nn.Module, not an sg.Model: verify a module from "
                           "Python with sg.verify(module=..., inputs=...), or a GPT-style one "
                           f"with `symgrad verify tiny_gpt --module {spec}`")
    if callable(obj) and not is_model(obj):  # a factory (models are not callable)
        if required := _required_arguments(obj):
            raise SymgradError(f"{spec} is a function of {', '.join(required)}, not a model "
                               "factory (a function of no arguments returning an sg.Model); "
                               "name the model, or a factory (a torch_fn goes with "
                               "sg.verify(model, torch_fn=...))")
        obj = obj()
    if not is_model(obj):
        kind = type(obj).__name__
        raise SymgradError(f"{spec} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a "
                           f"model: give {ACCEPTED_MODELS}, or a function of no arguments "
                           "returning one")
    return obj


def _defines(candidates: list[str]) -> str:
    return f"the models and functions of no arguments it defines: {', '.join(candidates)}"


def _candidates(module) -> list[str]:
    """What ``module`` defines that may be a model: its sg.Model / TensorModel objects and
    its own public functions of no required arguments (factories), in file order."""
    return [n for n, v in vars(module).items() if not n.startswith("_") and (
        is_model(v) or (
            inspect.isfunction(v) and v.__module__ == module.__name__
            and not _required_arguments(v)))]


def _required_arguments(fn: Callable) -> list[str]:
    """The names of ``fn``'s arguments without a default ([] where the signature is unknown)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
