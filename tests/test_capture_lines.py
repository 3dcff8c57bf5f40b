"""The source line a capture error names, for the ways a user's body is wrapped
(``capture/anchors``): a decorated function (``functools.wraps``), a ``functools.partial``, a
callable object, a nested function and a multi-line call each name the exact line that holds
the refused op, never the wrapper's line alone, a line before it, or none (reports/wolf_hunt.md,
finding 6). api23: an op in a helper the forward calls (a function in the same file or
another, a method, a submodule's forward) names the helper's own line after the lines that
called it, as a traceback would, in one line; it named only the forward's calling line."""

from __future__ import annotations

import functools
import inspect
import os

import pytest
import torch

import symgrad as sg
from symgrad.capture import walk
from tests import user_helpers
from tests.user_helpers import running_total

F64 = torch.float64


def _where(obj, text: str) -> tuple[str, int, str]:
    """File, line and code of the line of ``obj``'s source holding ``text``."""
    lines, first = inspect.getsourcelines(obj)
    k = next(i for i, line in enumerate(lines) if text in line)
    return inspect.getsourcefile(obj), first + k, lines[k].strip()


def _line_of(obj, text: str) -> str:
    """``file:line: code`` of the line of ``obj``'s source holding ``text``."""
    return "{}:{}: {}".format(*_where(obj, text))


def _refused(fn, x=None) -> str:
    """The one-line error capturing ``fn`` at a float64 vector gives."""
    x = torch.arange(4, dtype=F64).requires_grad_() if x is None else x
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (x,))
    msg = str(err.value)
    assert "\n" not in msg and "aten.cumprod" in msg, msg
    return msg


def _chain(*frames: tuple) -> str:
    """The expected location: ``(obj, text, function)`` per frame, outermost first."""
    out, last = [], None
    for obj, text, name in frames:
        file, line, code = _where(obj, text)
        out.append(f"{file if file != last else os.path.basename(file)}:{line} in {name}")
        last = file
    return " → ".join(out) + f": {code}"


def _decorate(fn):
    @functools.wraps(fn)
    def wrapped(*args):
        return fn(*args)
    return wrapped


@_decorate
def _decorated(x):
    y = x * 2
    return torch.cumprod(y, 0).sum()


def _scaled(x, s):
    y = x * s
    return torch.cumprod(y, 0).sum()


class _Callable:
    def __call__(self, x):
        y = x - 1
        return torch.cumprod(y, 0).sum()


def _outer():
    def inner(x):
        y = x * 3
        return torch.cumprod(y, 0).sum()
    return inner


def _multiline(x):
    y = x * 2
    z = (y
         + 1)
    return torch.cumprod(
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
    msg = _refused(fn)
    if name == "decorated":  # the wrapper's line calling it, then the op's own line
        assert f" at {_chain((_decorate, 'return fn', 'wrapped'), (source, 'torch.cumprod', '_decorated'))} is not supported" in msg, msg  # noqa: E501
    else:
        assert f" at {_line_of(source, 'torch.cumprod')} is not supported" in msg, msg


# ------------------------------------------------------------------- helpers the forward calls
def _doubled_total(x):
    y = x * 2
    return torch.cumprod(y, 0)


class WithHelper(torch.nn.Module):
    def forward(self, x):
        return _doubled_total(x).sum()


class WithMethod(torch.nn.Module):
    def _total(self, x):
        return torch.cumprod(x - 1, 0)

    def forward(self, x):
        return self._total(x).sum()


class Elsewhere(torch.nn.Module):
    def forward(self, x):
        return user_helpers.running_total(x).sum() + running_total(x).sum()


class Inner(torch.nn.Module):
    def forward(self, x):
        return _doubled_total(x)


class Outer(torch.nn.Module):
    def __init__(self, depth: int = 1) -> None:
        super().__init__()
        self.inner = Inner() if depth == 1 else Outer(depth - 1)

    def forward(self, x):
        return self.inner(x).sum() if isinstance(self.inner, Inner) else self.inner(x)


def test_an_op_in_a_helper_names_the_forward_line_and_the_helpers():
    """Meant to fail on main: only ``return _doubled_total(x).sum()`` was named."""
    msg = _refused(WithHelper())
    want = _chain((WithHelper.forward, "_doubled_total(x)", "forward"),
                  (_doubled_total, "torch.cumprod", "_doubled_total"))
    assert f" at {want} is not supported" in msg, msg
    fn_msg = _refused(lambda x: _doubled_total(x).sum())  # a plain function: the same
    where = fn_msg.split(" at ", 1)[1].split(" is not supported")[0]
    assert " in <lambda> → test_capture_lines.py:" in where, where
    assert where.endswith(" in _doubled_total: return torch.cumprod(y, 0)"), where


def test_an_op_in_a_method_names_both_lines():
    msg = _refused(WithMethod())
    want = _chain((WithMethod.forward, "self._total", "forward"),
                  (WithMethod._total, "torch.cumprod", "_total"))
    assert f" at {want} is not supported" in msg, msg


def test_an_op_in_another_files_helper_names_that_file():
    """``module.helper(x)`` and ``from module import helper``: the helper's file in full."""
    msg = _refused(Elsewhere())
    want = _chain((Elsewhere.forward, "user_helpers.running_total", "forward"),
                  (user_helpers.running_total, "torch.cumprod", "running_total"))
    assert f" at {want} is not supported" in msg, msg
    assert user_helpers.__file__ in msg


def test_a_submodules_helper_names_each_forward_and_a_long_chain_is_cut():
    msg = _refused(Outer())
    want = _chain((Outer.forward, "self.inner(x).sum()", "forward"),
                  (Inner.forward, "_doubled_total(x)", "forward"),
                  (_doubled_total, "torch.cumprod", "_doubled_total"))
    assert f" at {want} is not supported" in msg, msg
    deep = _refused(Outer(depth=5))  # Python's trace keeps 3 of the 5 alike Outer frames
    where = deep.split(" at ", 1)[1].split(" is not supported")[0]  # (then Inner, the helper)
    assert where.count(" → ") == walk.CHAIN_SHOWN and " → … 1 more → " in where, where
    assert where.endswith("in _doubled_total: return torch.cumprod(y, 0)"), where


def test_the_anchors_are_torchs_own_again_after_a_capture():
    """Never change torch's global state without restoring it: the anchors a capture adds
    (its helpers' frames) are removed when the export ends, raised or not."""
    kept = getattr(torch.fx.proxy, "_STACK_TRACE_ANCHORS", None)
    if not isinstance(kept, set):
        pytest.skip("this torch has no stack-trace anchors")
    before = set(kept)
    _refused(WithHelper())
    assert sg.gradcheck(lambda x: torch.tanh(x).sum(), (torch.ones(3, dtype=F64,
                                                                   requires_grad=True),))
    assert set(kept) == before


def test_a_refused_op_is_named_by_the_call_the_user_made():
    """The walk's lines read "capture: ..." under sg.gradcheck and sg.verify(module=) too,
    while the eager run's lines named the call ("gradcheck(Net): running it ..."); now both."""
    x = torch.arange(4, dtype=F64).requires_grad_()
    assert _refused(WithHelper()).startswith("gradcheck(WithHelper): ATen op aten.cumprod")
    with pytest.raises(sg.SymgradError, match=r"^verify\(module=WithHelper\): ATen op "
                       r"aten.cumprod\.default at .* in _doubled_total: return torch.cumprod"):
        sg.verify(module=WithHelper(), inputs=x)
    with pytest.raises(sg.SymgradError, match=r"^capture: ATen op aten.cumprod"):
        sg.capture(WithHelper(), (x,))  # sg.capture itself: as it was


def test_a_closures_helper_and_a_function_attribute_are_named():
    """A helper defined in the enclosing function (a closure of the forward), and one kept as
    a module attribute (``self.act = helper``): each names the helper's line."""
    def local_total(x):
        return torch.cumprod(x + 1, 0)

    class Closure(torch.nn.Module):
        def forward(self, x):
            return local_total(x).sum()

    class Attribute(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = local_total

        def forward(self, x):
            return self.act(x).sum()

    for module, call in ((Closure(), "local_total(x)"), (Attribute(), "self.act(x)")):
        msg = _refused(module)
        want = _chain((type(module).forward, call, "forward"),
                      (local_total, "torch.cumprod", "local_total"))
        assert f" at {want} is not supported" in msg, msg
