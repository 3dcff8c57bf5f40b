"""A user's stop-gradients, as autograd reads them, kept in the captured graph as the op
``symgrad::stop_gradient`` (``aten.TABLE``: a stop-gradient whose value is used,
``stop_gradient(user=True)``).

torch.export's decompositions turn ``x.detach()`` into an ``alias`` (an identity), and two
other ways a forward stops a gradient leave no mark in the graph at all, so
``StopGradients`` (a ``TorchFunctionMode`` entered around the user's forward while export
traces it: ``marking``, ``stop_gradients``) writes the op, which no decomposition touches:

- ``x.detach()`` / ``torch.detach(x)``;
- ``x.data``, read as ``x.detach()`` (the same value, no gradient; torch.export itself cannot
  trace ``.data``: it lifts a fake constant);
- a value computed with grad mode off (``torch.no_grad()``, ``torch.inference_mode()``,
  ``torch.set_grad_enabled(False)``, a ``@torch.no_grad()`` helper) is a constant of the
  inputs, as autograd makes it: each tensor an op there reads that was made outside (an input,
  a parameter, an earlier value) is read through the op, once; the tensor an in-place op
  writes is kept (a running statistic updated under no_grad is the buffer itself).

In-place forms (stop 34): ``t.detach_()`` makes later reads of ``t`` its stop-gradient;
``b.data = v`` and an in-place write with grad off to a computed tensor that requires grad
(``y.mul_(0.5)`` or ``y[1:].mul_(0.5)`` under no_grad) give later reads the new value with
``b``'s own gradient
(``b + (v - b).detach()``: autograd records no op there); the same on a leaf that requires grad
(a parameter clipped in the forward, ``w.data.clamp_()``, ``w[1:].clamp_()``, an input's
``detach_()``) persists from
call to call and is refused in one line naming the user's line.

Inside a custom ``autograd.Function``'s forward nothing is marked: its backward is its own,
and the forward (which torch runs with grad off) is the function it must be the derivative
of; a ``.detach()`` there stays the identity it was. Grad mode is the user's as their code
sets it (``torch._C._set_grad_enabled`` outside a Function's ``apply``; inference mode), so a
Function applied inside the user's ``no_grad`` block is a constant there, as autograd makes it. Only a ``requires_grad_(False)`` on a
computed value is left to torch, whose own error names the line (only a leaf's flag can change).

>>> x = torch.ones(2, requires_grad=True)
>>> with StopGradients():
...     with torch.no_grad():
...         y = x * 2
...     z = x.data
>>> y.requires_grad, z.requires_grad, bool((z == x).all())
(False, False, True)
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from ..errors import SymgradError
from .usercode import OWN_DIRS

@torch.library.custom_op("symgrad::stop_gradient", mutates_args=())
def stop_op(x: torch.Tensor) -> torch.Tensor:
    """The value of ``x`` (a copy: a custom op may not return its input), marked as a user's
    stop-gradient for the capture; ``StopGradients`` detaches its result, as ``.detach()``."""
    return x.clone()


@stop_op.register_fake
def _stop_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


_DATA = torch.Tensor.data.__get__  # a fresh method-wrapper on each access (equal, same hash)
_DATA_SET = torch.Tensor.data.__set__  # ``b.data = v``
_STOPS = frozenset({torch.Tensor.detach, torch.detach, _DATA})  # what always stops
_FUNCTION_FILE = torch.autograd.function.__file__
_MARKING: list[list[str]] = []  # the lines of each ``marking`` under way, innermost last
_SKIP = tuple({d + os.sep for p in OWN_DIRS  # torch's and symgrad's files, as written
               for d in (p, os.path.realpath(p))})  # and through symlinks


def _stopped(t: torch.Tensor) -> torch.Tensor:
    """``t`` through the marking op, detached (no gradient, as ``t.detach()``)."""
    return (stop_op(t) if t.is_floating_point() else t).detach()


def _in_place(func: Any) -> bool:
    """``x.add_(y)``, ``x.copy_(y)``, ``x += y``, ``x[i] = v``: an op that writes its first
    argument."""
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.startswith("_")) or name in _AUGMENTED


_AUGMENTED = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
                        "__ipow__", "__imod__", "__iand__", "__ior__", "__ixor__"})


def _in_function() -> bool:
    """Whether a custom ``autograd.Function``'s forward is running (its ``apply`` is on the
    stack): nothing there is marked (the module's docstring)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_name == "apply" and f.f_code.co_filename == _FUNCTION_FILE:
            return True
        f = f.f_back
    return False


def _name(t: torch.Tensor) -> str:
    """What the refusals call ``t``: "a parameter", "an input" (a leaf that requires grad), "a tensor"."""
    if isinstance(t, torch.nn.Parameter):
        return "a parameter"
    return "an input" if t.is_leaf and t.requires_grad else "a tensor"


def user_line() -> str:
    """``file:line: code`` of the innermost frame outside torch and symgrad (the user's line
    that stops a gradient; ``file:line`` where the code is not on file, ``<string>``); ""
    where there is none."""
    f = sys._getframe(1)
    while f is not None and (f.f_code.co_filename.startswith(_SKIP)
                             or f.f_code.co_filename.startswith("<eval_with_key")):
        f = f.f_back  # (fx's generated code; a REPL's "<stdin>" or "<string>" is the user's)
    if f is None:
        return ""
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    return f"{f.f_code.co_filename}:{f.f_lineno}" + (f": {code}" if code else "")


class StopGradients(TorchFunctionMode):
    """Reads ``.data`` as ``.detach()`` and, while grad mode is off (and was on when the mode
    was entered), detaches each outside tensor an op reads (see the module's docstring);
    ``lines``: the user's line of each stop-gradient (``.detach()`` too), in call order."""

    def __init__(self, lines: list[str] | None = None) -> None:
        super().__init__()
        self.lines = lines if lines is not None else []  # each stop's ``user_line``
        self.grad = torch.is_grad_enabled()  # grad already off: nothing to stop
        self.user_grad = self.grad  # grad mode as the user's code last set it (torch's own
        #   switch inside a custom Function's apply is C++'s: not seen, not the user's)
        self.made: dict[int, torch.Tensor] = {}  # id -> a tensor made with grad off (kept
        #   alive for the mode's life, so an id is never reused for another tensor)
        self.cut: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (outside, detached)
        self.data_of: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id of a .data read
        #   -> (it, the tensor read)
        self.leaf_of: dict[int, torch.Tensor] = {}  # id of the stop (in ``cut``) of a tensor
        #   that requires grad -> that tensor
        self.views_of: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id of a view of
        #   one, made with grad off -> (it, the tensor)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _STOPS:
            if _in_function():  # a custom Function's forward: an identity (the docstring)
                return args[0].detach() if func == _DATA else func(*args, **kwargs)
            self.lines.append(user_line())
            out = _stopped(args[0])
            if func == _DATA:
                self.data_of[id(out)] = (out, args[0])
            return out
        if func in (torch.Tensor.detach_, _DATA_SET) and not _in_function():
            return self._rewrite(func, args)
        if args and id(args[0]) in self.views_of and _in_place(func):  # w[1:].fill_()
            return self._write_view(func, args, kwargs)
        if args and id(args[0]) in self.data_of and _in_place(func):  # p.data.clamp_()
            t = self.data_of[id(args[0])][1]
            if t.requires_grad:
                self._refuse(t, f"{func.__name__} writes the .data of {_name(t)} in place",
                             user_line())
            args = (t, *args[1:])  # no gradient either way: the write reaches the tensor
        if func is torch._C._set_grad_enabled and not _in_function():
            self.user_grad = bool(args[0])  # the user's no_grad / enable_grad / set_grad_enabled
        if not self.grad or (self.user_grad and not torch.is_inference_mode_enabled()):
            return func(*args, **kwargs)  # (a custom Function's forward runs with grad off,
            #   not switched by the user: nothing to stop there)
        if _in_place(func) and args:  # x.mul_(m), x += y, x[i] = v: the tensor written is
            args = (args[0], *tree_map(self._outside, args[1:]))  # kept (a buffer's update
            written = args[0]  # reaches the buffer), as is an out= tensor
            if isinstance(written, torch.Tensor) and written.requires_grad:
                return self._write_through(func, args, kwargs)
        else:
            args = tree_map(self._outside, args)
        kwargs = {k: v if k == "out" else tree_map(self._outside, v) for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.made[id(t)] = t
                base = self.leaf_of.get(id(t._base)) if t._is_view() else None
                if base is not None:  # a view of a stop: a write to it is ``_write_view``
                    self.views_of[id(t)] = (t, base)
        return out

    def _rewrite(self, func: Any, args: tuple) -> Any:
        """``t.detach_()``: later reads of ``t`` read its stop-gradient (``t`` is written with
        it under no_grad, then detached, as autograd leaves it); ``b.data = v`` on a computed
        ``b``: later reads have v's value and b's gradient (``b + (v - b).detach()``, as
        autograd passes b's gradient to b's own graph); either on a leaf (a parameter, an
        input) that requires grad: refused in one line."""
        t, line = args[0], user_line()
        if func is torch.Tensor.detach_:
            if t.is_leaf and t.requires_grad:
                raise SymgradError(f"capture: detach_() of {_name(t)} at {line or 'the forward'}"
                                   " changes the tensor passed in (no gradient from then on, "
                                   "in the caller too); write t = t.detach()")
            self.lines.append(line)
            with torch.no_grad():
                t.copy_(_stopped(t))
            return t.detach_()
        if t.is_leaf:
            self._refuse(t, f".data = ... replaces the values of {_name(t)}",
                         line)
        self.lines.append(f"{line} (.data = ...)")
        with torch.no_grad():
            t.copy_(t + _stopped(args[1] - t))
        return None

    def _write_through(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """An in-place write with grad off to a tensor that requires grad: on a computed one,
        later reads get the written value and its gradient passes to the tensor's own graph
        (``t + (written - t).detach()``, as autograd: the write is not recorded); on a leaf:
        refused (``_refuse``)."""
        t, line = args[0], user_line()
        name = getattr(func, "__name__", "an in-place op")
        if t.is_leaf:
            self._refuse(t, f"{name} writes {_name(t)} in place with grad off", line)
        before = t.clone()
        out = func(*args, **kwargs)
        self.lines.append(f"{line} ({name} with grad off)")
        with torch.no_grad():
            t.copy_(before + _stopped(t - before))
        return out

    def _write_view(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """An in-place write to a view made with grad off of a tensor that requires grad
        (``y[1:].mul_(0.5)`` under no_grad): the view is of the tensor's stop-gradient copy,
        which takes the write; the tensor itself then reads it as ``_write_through`` does
        (``y + (copy - y).detach()``); a leaf's view: refused (``_refuse``)."""
        t, line = self.views_of[id(args[0])][1], user_line()
        name = getattr(func, "__name__", "an in-place op")
        if t.is_leaf:
            self._refuse(t, f"{name} writes a view of {_name(t)} in place with grad off", line)
        out = func(args[0], *tree_map(self._outside, args[1:]),
                   **{k: tree_map(self._outside, v) for k, v in kwargs.items()})
        self.lines.append(f"{line} ({name} of a view with grad off)")
        with torch.no_grad():
            t.copy_(t + _stopped(self.cut[id(t)][1] - t))
        return out

    @staticmethod
    def _refuse(t: torch.Tensor, what: str, line: str) -> None:
        """One line: a leaf's in-place change in the forward persists from call to call."""
        raise SymgradError(
            f"capture: {what} at {line or 'the forward'}: the change persists from call to call "
            "(symgrad runs your code once per sample, each at its own values); change it "
            "outside the forward (before the call, an optimizer step, a forward pre-hook), or "
            "compute a new tensor there with its gradient: w2 = w + (v - w).detach()")

    def _outside(self, t: Any) -> Any:
        """``t`` detached where it was made outside the grad-off region (once per tensor)."""
        if not isinstance(t, torch.Tensor) or id(t) in self.made:  # (an outside tensor
            return t  # that does not require grad here may be one symgrad differentiates)
        if id(t) not in self.cut:
            self.cut[id(t)] = (t, _stopped(t))
            if t.requires_grad:
                self.leaf_of[id(self.cut[id(t)][1])] = t
            self.lines.append(f"{user_line()} (grad mode off)")
        return self.cut[id(t)][1]


@contextlib.contextmanager
def marking() -> Iterator[list[str]]:
    """While ``torch.export`` traces: ``stop_gradients`` marks the user's stop-gradients;
    yields the list their lines are added to."""
    lines: list[str] = []
    _MARKING.append(lines)
    try:
        yield lines
    finally:
        _MARKING.pop()


def stop_gradients() -> contextlib.AbstractContextManager:
    """``StopGradients`` inside a ``marking`` (``export.Call``'s forward enters it), else
    nothing: the user's own code runs as written when symgrad runs it eagerly."""
    return StopGradients(_MARKING[-1]) if _MARKING else contextlib.nullcontext()
