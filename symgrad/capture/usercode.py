"""An exception raised by the user's own torch code (a ``torch_fn``, a module's forward, a
custom Function's backward) as one line: what raised, its first line, the user's own frame
(the last traceback frame outside symgrad and torch) and what to check.

>>> def fn(x):
...     return x @ torch.ones(3)
>>> try:
...     fn(torch.ones(2))
... except RuntimeError as exc:
...     print(user_frame(exc))  # doctest: +ELLIPSIS
<doctest ...>:2, in fn
"""

from __future__ import annotations

import os
import traceback

import torch

OWN_DIRS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # symgrad/
            os.path.dirname(os.path.abspath(torch.__file__)))  # torch/: neither is the user's


def user_frame(exc: BaseException) -> str | None:
    """Where the user's own code raised: the last traceback frame outside symgrad and torch,
    as ``file.py:4, in fn`` (None where every frame is symgrad's or torch's)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        if not any(path.startswith(d + os.sep) for d in OWN_DIRS):
            return f"{os.path.basename(frame.filename)}:{frame.lineno}, in {frame.name}"
    return None


def user_error(what: str, exc: BaseException, check: str, received: str | None = None) -> str:
    """One line for an exception raised by the user's own code.

    Arguments:
        what: who raised, as the message names it (``torch_fn 'fn'``).
        exc: the exception.
        check: what to check (the options or code at fault).
        received: what the code was given (``W1 (5, 4), x (4,)``), if known.
    Returns:
        ``<what> raised <Type>: <its first line> (at file.py:4, in fn); it received ...;
        check ...``.

    >>> try:
    ...     torch.ones(2) @ torch.ones(3)
    ... except RuntimeError as exc:
    ...     print(user_error("torch_fn 'f'", exc, "its code", "x (2,)"))  # doctest: +ELLIPSIS
    torch_fn 'f' raised RuntimeError: inconsistent tensor size, ... (at <doctest ...>:2, in <module>); it received x (2,); check its code
    """
    first = (str(exc).strip().splitlines() or [""])[0][:200].rstrip(".")
    where = user_frame(exc)
    return (f"{what} raised {type(exc).__name__}" + (f": {first}" if first else "")
            + (f" (at {where})" if where else "")
            + (f"; it received {received}" if received else "") + f"; check {check}")
