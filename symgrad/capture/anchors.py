"""Which of the user's frames ``torch.export`` keeps in a node's stack trace, so that a capture
error names the user's lines: non-strict export keeps only frames named ``forward`` and the
functions registered as anchors (``torch.fx.proxy._register_stack_trace_anchor``). Anchored:
every function that runs the body of the function given (``bodies``), every method of the
user's own module classes, and the user's helper functions those reach by name (``helpers``:
a module's ``forward`` that calls ``rough(h)`` keeps ``rough``'s line, not only the call's).
The anchors are registered for one export and removed after it (``anchored``): torch's set is
as it was.

>>> def scaled(x, s):
...     return x * s
>>> [f.__name__ for f in bodies(functools.partial(scaled, s=2.0))]
['scaled']
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

MAX_CODES = 256  # functions anchored for one capture at most (a reach that never ends stops)
_OWN = tuple({str(d) + os.sep for d in (  # torch's and symgrad's: not the user's (as given
    Path(torch.__file__).parent, Path(torch.__file__).resolve().parent,  # and resolved)
    Path(__file__).parent.parent, Path(__file__).resolve().parent.parent)})
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"])) + os.sep  # Python's own, but not ...
_LIBRARIES = ("site-packages", "dist-packages")  # ... the libraries installed beneath it


def function_class(fn: Callable) -> type | None:
    """The ``torch.autograd.Function`` subclass of ``SomeFunction.apply``, else None."""
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, type) and issubclass(owner, torch.autograd.Function) else None


def bodies(fn: Callable) -> list[Callable]:
    """The Python functions (those with ``__code__``) that run ``fn``'s body, outermost first:
    a custom Function's ``forward``, a ``functools.partial``'s function, each level of a
    decorator's ``__wrapped__`` chain (a ``functools.wraps`` wrapper alone would name the
    wrapper's ``return fn(*a)`` line), a callable object's ``__call__``."""
    out: list[Callable] = []
    seen: set[int] = set()
    todo = [fn]
    while todo and len(seen) < 32:  # a cycle of __wrapped__ cannot loop
        f = todo.pop(0)
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        cls = function_class(f)
        if cls is not None:  # a custom Function: its forward's lines
            todo.append(cls.forward)
        elif isinstance(f, functools.partial):
            todo.append(f.func)
        elif getattr(f, "__code__", None) is not None:
            out.append(f)
            todo.append(getattr(f, "__wrapped__", None))
        elif not isinstance(f, torch.nn.Module) and callable(f) and not isinstance(f, type):
            todo.append(getattr(type(f), "__call__", None))  # a callable object
    return out


def helpers(*fns: Callable | None) -> list[types.CodeType]:
    """The user's code that ``fns`` run: their ``bodies``, a module's own classes' methods (of
    it and its submodules; a library's class, its ``forward``) and the functions it keeps as
    attributes, and what those reach by name: a global function (``rough(h)``), a
    function of an imported module (``utils.rough(h)``), a nested function, a closure's
    function; never torch's or symgrad's own code. At most ``MAX_CODES``."""
    todo: list[tuple[Any, dict]] = []
    for fn in fns:
        if fn is None:
            continue
        todo += [(f, getattr(f, "__globals__", {})) for f in bodies(fn)]
        if isinstance(fn, torch.nn.Module):
            for m in fn.modules():  # a function kept as an attribute (self.act = swish)
                todo += [(b, getattr(b, "__globals__", {})) for v in vars(m).values()
                         if isinstance(v, (types.FunctionType, functools.partial))
                         for b in bodies(v)]
            for cls in dict.fromkeys(type(m) for m in fn.modules()):
                for klass in cls.__mro__:  # (a library's other methods would fill the cap)
                    library = any(d in str(getattr(sys.modules.get(klass.__module__),
                                                   "__file__", "")) for d in _LIBRARIES)
                    todo += [(f, getattr(f, "__globals__", {})) for f in _methods(klass)
                             if not library or f.__name__ == "forward"]
    seen: dict[types.CodeType, None] = {}
    while todo and len(seen) < MAX_CODES:
        f, glb = todo.pop(0)
        code = f if isinstance(f, types.CodeType) else getattr(f, "__code__", None)
        if code is None or code in seen or not _users(code.co_filename):
            continue
        seen[code] = None
        todo += [(c, glb) for c in code.co_consts if isinstance(c, types.CodeType)]
        for cell in getattr(f, "__closure__", None) or ():
            value = _cell(cell)
            if callable(value):
                todo += [(b, getattr(b, "__globals__", glb)) for b in bodies(value)]
        for name in code.co_names:
            value = glb.get(name)
            if isinstance(value, types.ModuleType):  # utils.rough: the names the code reads
                value = [getattr(value, n, None) for n in code.co_names]
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, (types.FunctionType, functools.partial)):
                    todo += [(b, getattr(b, "__globals__", glb)) for b in bodies(v)]
    return list(seen)


@contextlib.contextmanager
def anchored(*fns: Callable | None) -> Iterator[None]:
    """``helpers(*fns)`` registered as torch's stack-trace anchors while the block runs (an
    export), and the ones it added removed afterwards; a no-op where torch has no such hook
    or it refuses (a module's ``forward`` lines are still named)."""
    register = getattr(torch.fx.proxy, "_register_stack_trace_anchor", None)
    kept = getattr(torch.fx.proxy, "_STACK_TRACE_ANCHORS", None)
    before = set(kept) if isinstance(kept, set) else None
    if register is not None:
        for code in helpers(*fns):
            try:
                register(types.SimpleNamespace(__code__=code))
            except Exception:  # noqa: BLE001 - a private hook: if it changed, lines are less precise
                break
    try:
        yield
    finally:
        if before is not None:
            kept.intersection_update(before)  # torch's anchors as they were


def _users(filename: str) -> bool:
    """A file of the user's (not torch's, symgrad's or Python's standard library; not
    generated code: ``<string>``)."""
    path = os.path.abspath(filename)
    return not (filename.startswith("<") or path.startswith(_OWN) or (
        path.startswith(_STDLIB) and not any(d in path for d in _LIBRARIES)))


def _methods(klass: type) -> list[Callable]:
    """The functions a class defines (static and class methods, properties' getters too)."""
    out = []
    for v in vars(klass).values():
        v = v.__func__ if isinstance(v, (staticmethod, classmethod)) else (
            v.fget if isinstance(v, property) else v)
        if getattr(v, "__code__", None) is not None:
            out.append(v)
    return out


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None
