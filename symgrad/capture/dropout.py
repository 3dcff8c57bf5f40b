"""Dropout in a captured function or module, fed symgrad's keep-masks.

While symgrad captures the user's code and while it runs that code for each sample
(``export.Call``), ``F.dropout``, ``F.dropout1d/2d/3d`` (``nn.Dropout``, ``nn.Dropout1d/2d/3d``,
Hugging Face's functional dropout) compute ``x * keep / (1 - p)``, ``keep`` a 0/1 mask that is an
input of the captured program (held, not differentiated), named by the running submodule's own
name (``drop.keep``, ``layers.0.dropout.keep``; ``dropout.keep`` in a plain function); a channel
dropout's mask has the channel shape ((N, C, 1, 1) for ``dropout2d``). The capture's eager run
records the sites in call order (``Feed.recording``); every later run is fed one mask per site
and must call dropout the same way. ``nn.MultiheadAttention``'s attention dropout, which torch
runs inside ``F.scaled_dot_product_attention(dropout_p=p)``, is computed in that call's
documented math form (softmax(q kᵀ · scale + mask), dropout fed, times v); any other
``scaled_dot_product_attention`` with ``dropout_p > 0`` draws its mask inside the kernel and is
refused in one line. The patched functions are restored after each run.

>>> import torch
>>> feed = Feed(None, "capture('f')")
>>> with feed.active(None, recording=True):
...     _ = torch.nn.functional.dropout(torch.ones(2, 3), 0.25)
>>> [(s.label, s.block, s.p, s.shape) for s in feed.sites]
[('dropout.keep', 'dropout_keep', 0.25, (2, 3))]
>>> with feed.active([torch.tensor([[1., 0, 1], [0, 1, 1]])]):
...     torch.nn.functional.dropout(torch.ones(2, 3), 0.25)
tensor([[1.3333, 0.0000, 1.3333],
        [0.0000, 1.3333, 1.3333]])
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .usercode import OWN_DIRS
from ..errors import SymgradError

PATCHED = ("dropout", "dropout1d", "dropout2d", "dropout3d", "scaled_dot_product_attention",
           "multi_head_attention_forward")  # torch.nn.functional's names replaced while it runs
_NOT_USERS = tuple(d + os.sep for d in OWN_DIRS)  # symgrad's and torch's files


@dataclass(frozen=True)
class Site:
    """One dropout call: its mask's user name and block name, rate, mask shape and the call."""

    label: str  # "drop.keep": the running submodule's own name
    block: str  # "drop_keep": the program's input block
    p: float
    shape: tuple[int, ...]  # the mask's (a channel dropout's: (N, C, 1, ...))
    call: str  # "F.dropout", "F.dropout2d", "attention dropout (scaled_dot_product_attention)"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A keep-mask: 1 with probability 1 - p, else 0 (all 0 at p = 1)."""
        return (rng.random(self.shape) < 1 - self.p).astype(np.float64)


def mask_rng(seed: int, stream: int) -> np.random.Generator:
    """The run's generator of keep-masks (``seed``; apart from the points' own stream, so a
    module without dropout draws the same points as before): ``stream`` 0 the example's
    masks (drawn at the capture), 1 those of the points around it (``Captured.at``)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 18, 1, stream]))


class Feed:
    """The patched ``torch.nn.functional`` dropouts of one captured callable (``root``: the
    user's module, whose submodules name the sites; None for a function); ``who`` names the
    call in messages (``verify(module=Net)``)."""

    def __init__(self, root: torch.nn.Module | None, who: str) -> None:
        self.root, self.who = root, who
        self.sites: list[Site] = []
        self._masks: list[torch.Tensor] | None = None
        self._next, self._in_mha, self._recording = 0, 0, False

    @contextlib.contextmanager
    def active(self, masks: Sequence[torch.Tensor] | None, *,
               recording: bool = False) -> Iterator["Feed"]:
        """The patched functions for one run: ``recording`` (the capture's eager run) lists the
        sites afresh; otherwise ``masks`` (one per site, in order) are fed. Restored after."""
        saved = {n: getattr(F, n) for n in PATCHED}
        if recording:
            self.sites = []
        self._masks, self._next, self._in_mha, self._recording = (
            list(masks or []), 0, 0, recording)
        for n in PATCHED:
            setattr(F, n, getattr(self, "_" + n))
        try:
            yield self
            if not recording and self._next != len(self.sites):
                left = ", ".join(s.label for s in self.sites[self._next:])
                raise SymgradError(f"{self.who}: called dropout {self._next} time(s), its "
                                   f"capture {len(self.sites)}; no call reached {left}: does "
                                   "the code call dropout only on some runs (a branch on the "
                                   "values)? Make the calls the same on every run")
        finally:
            for n, f in saved.items():
                setattr(F, n, f)
            self._masks = None

    def _dropout(self, input, p=0.5, training=True, inplace=False):  # noqa: A002 - torch's
        return self._feed(input, p, training, inplace, "F.dropout", tuple(input.shape))

    def _dropout1d(self, input, p=0.5, training=True, inplace=False):  # noqa: A002
        shape = (input.shape[0], 1) if input.dim() == 2 else (*input.shape[:2], 1)
        return self._feed(input, p, training, inplace, "F.dropout1d", shape, F.dropout1d)

    def _dropout2d(self, input, p=0.5, training=True, inplace=False):  # noqa: A002
        shape = (*input.shape[:2], *[1] * (input.dim() - 2))  # 3D: torch's (N, C, L)
        return self._feed(input, p, training, inplace, "F.dropout2d", shape, F.dropout2d)

    def _dropout3d(self, input, p=0.5, training=True, inplace=False):  # noqa: A002
        shape = (input.shape[0], 1, 1, 1) if input.dim() == 4 else (*input.shape[:2], 1, 1, 1)
        return self._feed(input, p, training, inplace, "F.dropout3d", shape, F.dropout3d)

    def _feed(self, input, p, training, inplace, call, shape, checks=None):
        if not training or p == 0 or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            return _saved(call)(input, p, training, inplace)  # torch's own: no-op or its error
        if checks is not None and input.dim() not in {"F.dropout1d": (2, 3), "F.dropout2d": (
                3, 4), "F.dropout3d": (4, 5)}[call]:
            return _saved(call)(input, p, training, inplace)  # torch's own shape error
        keep = self._mask(call, float(p), tuple(int(s) for s in shape), input)
        if inplace:
            input.mul_(keep)
            return input.div_(1 - p) if p < 1 else input
        return input * keep / (1 - p) if p < 1 else input * keep

    def _mask(self, call: str, p: float, shape: tuple[int, ...],
              input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """The next site's mask (recording: a new site, its mask all ones)."""
        if self._recording:
            label = self._label()
            block = re.sub(r"\W", "_", label)  # as a parameter's (``export.block_name``)
            self.sites.append(Site(label, block if block.isidentifier() else f"p_{block}", p,
                                   shape, call))
            return torch.ones(shape, dtype=input.dtype, device=input.device)
        k = self._next
        if k >= len(self.sites):
            raise SymgradError(f"{self.who}: dropout call {k + 1} ({call}, p={p}, mask "
                               f"{shape}) at {self._where()} did not happen in the capture "
                               f"({len(self.sites)} call(s)); make the calls the same on "
                               "every run (no branch on the values)")
        site = self.sites[k]
        if (site.call, site.p, site.shape) != (call, p, shape):
            raise SymgradError(f"{self.who}: dropout call {k + 1} is {call} p={p} with mask "
                               f"{shape}, in the capture {site.call} p={site.p} with mask "
                               f"{site.shape} ({site.label}); make the calls the same on "
                               "every run")
        self._next += 1
        mask = self._masks[k]
        return mask if mask.dtype == input.dtype else mask.to(input.dtype)

    def _label(self) -> str:
        """``<submodule>.keep`` (``keep1``, ``keep2``, ... where that name is taken)."""
        base = (_running(self.root) or "dropout") + ".keep"
        taken = {s.label for s in self.sites}
        label, i = base, 1
        while label in taken:
            label, i = f"{base}{i}", i + 1
        return label

    def _where(self) -> str:
        return _user_line() or (_running(self.root) or "the function")

    def _multi_head_attention_forward(self, *args, **kwargs):
        self._in_mha += 1  # torch's own attention: its sdpa's dropout is fed (math form)
        try:
            return _saved("multi_head_attention_forward")(*args, **kwargs)
        finally:
            self._in_mha -= 1

    def _scaled_dot_product_attention(self, query, key, value, attn_mask=None,
                                      dropout_p=0.0, is_causal=False, scale=None,
                                      enable_gqa=False):
        sdpa = _saved("scaled_dot_product_attention")
        if not dropout_p or not isinstance(dropout_p, (int, float)) or not 0 < dropout_p <= 1:
            return sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                        is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
        if not self._in_mha or enable_gqa:
            raise SymgradError(
                f"{self.who}: F.scaled_dot_product_attention(dropout_p={dropout_p}) at "
                f"{self._where()} draws its dropout mask inside the kernel, which symgrad "
                "cannot feed; pass dropout_p=0 (in a module: dropout_p=self.p if "
                "self.training else 0.0, checked in eval mode), or apply F.dropout to the "
                "attention weights (softmax(q @ k.transpose(-2, -1) * scale) then F.dropout: "
                "symgrad feeds that mask; Hugging Face: attn_implementation=\"eager\", "
                "nanoGPT: flash=False)")
        return _attention(query, key, value, attn_mask, is_causal, scale,
                          lambda w: self._feed(w, dropout_p, True, False,
                                               "attention dropout (scaled_dot_product_attention)",
                                               tuple(w.shape)))


_ORIGINAL = {n: getattr(F, n) for n in PATCHED}  # torch's own, whatever is patched now


def torch_own(name: str) -> Any:
    """torch's own ``torch.nn.functional.<name>`` while a run has it patched (a
    ``TorchFunctionMode`` counting SDPA calls sees torch's function, not the patch)."""
    return _ORIGINAL[name]


def _saved(name: str) -> Any:
    return _ORIGINAL[name.removeprefix("F.")]


def _attention(q, k, v, attn_mask, is_causal, scale, drop):
    """``F.scaled_dot_product_attention``'s documented math form, ``drop`` applied to the
    attention weights."""
    s = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    w = q @ k.transpose(-2, -1) * s
    if is_causal:
        causal = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        w = w.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        w = (w.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
             else w + attn_mask)
    return drop(torch.softmax(w, dim=-1)) @ v


def _running(root: torch.nn.Module | None) -> str:
    """The own name of the innermost submodule of ``root`` whose forward is on the call stack
    ("" for ``root`` itself or none)."""
    found = running_module(root)
    return found[0] if found else ""


def running_module(root: torch.nn.Module | None) -> tuple[str, torch.nn.Module] | None:
    """The innermost submodule of ``root`` whose forward is on the call stack, from the frames'
    ``self``: (its own name, "" for ``root``; the module), or None.

    >>> running_module(torch.nn.Linear(2, 2)) is None  # no forward of it is running
    True
    """
    if root is None:
        return None
    names = {id(m): n for n, m in root.named_modules()}
    frame = inspect.currentframe()
    try:
        while frame is not None:
            me = frame.f_locals.get("self")
            if isinstance(me, torch.nn.Module) and id(me) in names:
                return names[id(me)], me
            frame = frame.f_back
    finally:
        del frame
    return None


def _user_line() -> str:
    """``file.py:12, in forward``: the innermost frame on the stack outside torch and symgrad."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            path = os.path.abspath(frame.f_code.co_filename)
            if not path.startswith(_NOT_USERS) and not path.startswith("<frozen"):
                return f"{os.path.basename(path)}:{frame.f_lineno}, in {frame.f_code.co_name}"
            frame = frame.f_back
    finally:
        del frame
    return ""
