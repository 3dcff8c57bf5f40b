"""The torch paths a module can run on: eager, ``torch.compile`` (inductor) and
``F.scaled_dot_product_attention`` pinned to one backend. One row per path.

A path either runs (and is verified like any backend), or is skipped with its reason in words:
not available on this device, not applicable (the module never calls
scaled_dot_product_attention, so pinning its backend changes nothing), or cannot compile here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import SymgradError, did_you_mean


@dataclass(frozen=True)
class Path:
    name: str
    description: str
    sdpa_backend: str | None = None  # torch.nn.attention.SDPBackend member, or None
    compiled: bool = False


PATHS: dict[str, Path] = {p.name: p for p in (
    Path("eager", "plain eager autograd, the module as written"),
    Path("compile", "torch.compile (default inductor backend) of the module call, forward and "
                    "backward", compiled=True),
    Path("sdpa-math", "F.scaled_dot_product_attention pinned to the math backend", "MATH"),
    Path("sdpa-flash", "F.scaled_dot_product_attention pinned to flash attention",
         "FLASH_ATTENTION"),
    Path("sdpa-efficient", "F.scaled_dot_product_attention pinned to memory-efficient "
                           "attention", "EFFICIENT_ATTENTION"),
    Path("sdpa-cudnn", "F.scaled_dot_product_attention pinned to cuDNN attention",
         "CUDNN_ATTENTION"),
)}
ALL_PATHS = tuple(PATHS)


def check_paths(paths) -> tuple[str, ...]:
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        hint = did_you_mean(bad[0], PATHS) if bad else ""  # paths=("eager", "compil"): newuser9
        raise SymgradError(f"paths: unknown {bad or 'empty'}"
                           + (f" ({hint})" if hint else "") + f"; choose from {', '.join(PATHS)}")
    return paths


@contextlib.contextmanager
def path_context(name: str):
    """The context a path runs its module call in (sdpa backend pinned, or nothing)."""
    path = PATHS[name]
    if path.sdpa_backend is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([getattr(SDPBackend, path.sdpa_backend)]):
        yield


def uncompiled(obj: object) -> tuple[object, bool]:
    """``(module, True)`` for a ``torch.compile``'d module (an ``OptimizedModule``: its
    original, whose parameter names are the user's; the compiled run is the "compile" path),
    ``(obj, False)`` for anything else (newuser10: torch's "MLP does not support len()")."""
    orig = getattr(obj, "_orig_mod", None)
    if isinstance(obj, torch.nn.Module) and isinstance(orig, torch.nn.Module):
        return orig, True
    return obj, False


COMPILED_NOTE = ("module= was torch.compile'd: its original module was captured (your "
                 "parameter names) and its gradient checked on the compile path (torch.compile, "
                 "inductor, default options: those you compiled with are not reused)")


def wrapper(name: str) -> Callable | None:
    """f(forward) -> the forward this path runs (compiled for "compile")."""
    if not PATHS[name].compiled:
        return None
    return lambda forward: torch.compile(forward, backend="inductor", dynamic=False)


def skip_reason(name: str, exc: BaseException | None, sdpa_calls: int, device: str) -> str | None:
    """Why a path's probe did not give a usable run (None: it did)."""
    path = PATHS[name]
    if exc is not None:
        text = " ".join(str(exc).split())[:240]
        if path.compiled:
            return f"cannot compile on this machine: {type(exc).__name__}: {text}"
        if path.sdpa_backend and "No viable backend" in text:
            return f"not available on {device} for this dtype and shape"
        return f"failed: {type(exc).__name__}: {text}"
    if path.sdpa_backend and sdpa_calls == 0:
        return ("not applicable: the module never calls F.scaled_dot_product_attention (it "
                "computes attention itself), so this path is the eager one")
    return None
