"""symgrad: verify gradients against the exact symbolic derivative, in ULPs.

A model is written once in sympy; symgrad derives its exact gradient, runs it in numpy and torch
(or checks your own torch code), and measures every backend against a high-precision oracle.

The public names below load on first use (PEP 562: ``sg.verify``, ``from symgrad import
Model``), not when ``symgrad`` is imported: every ``symgrad.*`` module, the command line's
included, imports this package first, and ``symgrad verify --bogus`` should answer before torch
and sympy load (~2.6 CPU s). A subpackage reads the same way (``sg.zoo``, ``sg.tensor``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:  # type checkers and IDEs see every public name and signature; nothing loads
    from . import ops
    from .capture.captured import Captured, capture
    from .capture.gradcheck import GradcheckError, gradcheck, gradgradcheck
    from .compare import Tolerance
    from .config import VerifyConfig
    from .domains import Bernoulli, Choice, Domain, Integers, LogUniform, Normal, Uniform
    from .errors import SymgradError
    from .explain import Explanation, explain
    from .entries import matrix
    from .model import Model
    from .modules import compare_paths
    from .result import Failure, Result
    from .tensor.departure import Departure, first_departure
    from .tensor.model import TensorModel
    from .verify import exact_at, verify

# public name -> the module that defines it (loaded on first use: ``__getattr__``)
_PUBLIC: dict[str, str] = {
    "ops": "ops",
    "Captured": "capture.captured", "capture": "capture.captured",
    "GradcheckError": "capture.gradcheck", "gradcheck": "capture.gradcheck",
    "gradgradcheck": "capture.gradcheck",
    "Tolerance": "compare",
    "VerifyConfig": "config",
    "Bernoulli": "domains", "Choice": "domains", "Domain": "domains", "Integers": "domains",
    "LogUniform": "domains", "Normal": "domains", "Uniform": "domains",
    "SymgradError": "errors",
    "Explanation": "explain", "explain": "explain",
    "Model": "model", "matrix": "entries",
    "Failure": "result", "Result": "result",
    "Departure": "tensor.departure", "first_departure": "tensor.departure",
    "TensorModel": "tensor.model",
    "exact_at": "verify", "verify": "verify",
    "compare_paths": "modules",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    """A public name (its module imported now, the name kept here), or a subpackage."""
    if name in _PUBLIC:
        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        value = module if name == "ops" else getattr(module, name)
        globals()[name] = value
        return value
    if name.startswith("__"):  # (a dunder a tool looks for: never a submodule)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # a submodule that exists but failed to import: its own error
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


class _Package(types.ModuleType):
    """The package's module: importing a submodule that shares a public function's name
    (``symgrad.verify``, ``symgrad.explain``, ``symgrad.capture``) binds the module to the
    package as Python does, over the name; here the name stays the function (as it was when
    this file imported it eagerly: ``sg.verify`` is the function; the module is in
    ``sys.modules``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _PUBLIC and name != "ops" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
