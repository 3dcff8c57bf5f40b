"""A function's positional parameter names, as the user reads them in symgrad's messages:
``inspect.signature``'s, or for a builtin without one (``torch.tanh``, ``torch.mul``: torch's C
functions carry no ``__text_signature__``) those its docstring's first line writes
(``tanh(input, *, out=None) -> Tensor``).

>>> import torch
>>> positional_names(torch.tanh), positional_names(torch.mul)
(['input'], ['input', 'other'])
>>> positional_names(lambda x, y=2, *rest, z: x)
['x', 'y']
"""

from __future__ import annotations

import inspect
import re
from typing import Callable

_DOC_LINE = re.compile(r"\s*(?:[\w.]+\.)?(\w+)\((.*?)\)\s*(?:->.*)?$")


def positional_names(fn: Callable) -> list[str]:
    """The names of ``fn``'s positional parameters, in order (before ``*`` or ``*args``).

    Arguments:
        fn: any callable.
    Returns:
        The names; [] where neither its signature nor a docstring signature line of its own
        name gives them (the caller's fallback then names each argument by its position).
    """
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # a builtin: no signature
        return _documented(fn)


def _documented(fn: Callable) -> list[str]:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    match = _DOC_LINE.match(doc.splitlines()[0]) if doc else None
    if match is None or match.group(1) != getattr(fn, "__name__", None):
        return []
    names = []
    for part in match.group(2).split(","):
        name = re.split(r"[:=]", part)[0].strip()
        if name == "/":
            continue
        if not name.isidentifier():  # "*", "*args", "**kw": the positional ones have ended
            break
        names.append(name)
    return names
