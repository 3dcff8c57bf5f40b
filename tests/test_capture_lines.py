"""The source line a capture error names, for the ways a user's body is wrapped
(``capture/export._anchor``): a decorated function (``functools.wraps``), a
``functools.partial``, a callable object, a nested function and a multi-line call each name
the exact line that holds the refused op, never the wrapper's line, a line before it, or none
(reports/wolf_hunt.md, finding 6)."""

from __future__ import annotations

import functools
import inspect

import pytest
import torch

import symgrad as sg

F64 = torch.float64


def _line_of(obj, text: str) -> str:
    """``file:line: code`` of the line of ``obj``'s source holding ``text``."""
    lines, first = inspect.getsourcelines(obj)
    k = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(obj)}:{first + k}: {lines[k].strip()}"


def _decorate(fn):
    @functools.wraps(fn)
    def wrapped(*args):
        return fn(*args)
    return wrapped


@_decorate
def _decorated(x):
    y = x * 2
    return torch.cumsum(y, 0).sum()


def _scaled(x, s):
    y = x * s
    return torch.cumsum(y, 0).sum()


class _Callable:
    def __call__(self, x):
        y = x - 1
        return torch.cumsum(y, 0).sum()


def _outer():
    def inner(x):
        y = x * 3
        return torch.cumsum(y, 0).sum()
    return inner


def _multiline(x):
    y = x * 2
    z = (y
         + 1)
    return torch.cumsum(
        z, 0).sum()


CASES = {  # name -> (the function given to sg.gradcheck, the source whose line it names)
    "decorated": (_decorated, _decorated.__wrapped__),
    "partial": (functools.partial(_scaled, s=2.0), _scaled),
    "callable_object": (_Callable(), _Callable.__call__),
    "nested": (_outer(), _outer),
    "multiline_call": (_multiline, _multiline),
}


@pytest.mark.parametrize("name", CASES)
def test_a_capture_error_names_the_line_holding_the_op(name):
    """Meant to pass; on main the decorated function named its wrapper's ``return
    fn(*args)`` line and the partial and the callable object named no line at all."""
    fn, source = CASES[name]
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (torch.arange(4, dtype=F64).requires_grad_(),))
    msg = str(err.value)
    assert "\n" not in msg and "aten.cumsum" in msg
    assert f" at {_line_of(source, 'torch.cumsum')} is not supported" in msg, msg
