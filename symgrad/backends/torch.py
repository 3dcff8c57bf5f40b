"""The model as torch ops on a device and dtype; gradients from torch autograd.

``TARGET`` prints a map body through our own sympy-node -> torch table (stock
``lambdify(modules="torch")`` breaks on Max, Heaviside and erf with Python numbers, sympy issue
28457); the tensor program's torch view runs it (``symgrad.tensor.tables``). ``run_torch_fn`` batches the user's own per-sample
torch code with ``torch.func.vmap(torch.func.grad(...))``, falling back to a loop per sample
for code vmap cannot trace (e.g. custom autograd Functions without a vmap rule).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Callable, Sequence
from unittest import mock

import numpy as np
import sympy as sp
import torch

from .. import functions
from ..codegen import Target
from ..capture.usercode import user_error
from ..errors import SymgradError
from .flat import flat_empty
from .torch_grads import backward_into

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32,
                "float16": torch.float16, "bfloat16": torch.bfloat16}


def _t(x, like):
    return x if isinstance(x, torch.Tensor) else torch.full_like(like, float(x))


def _fold(op):
    """n-ary Max/Min from the binary torch op; Python numbers become tensors like the rest."""
    def fold(*xs):
        like = next(x for x in xs if isinstance(x, torch.Tensor))
        return functools.reduce(lambda out, x: op(out, _t(x, like)), xs[1:], _t(xs[0], like))
    return fold


maximum = _fold(torch.maximum)
minimum = _fold(torch.minimum)


def heaviside(x, h0):
    """H(x) with H(0) = h0 and a defined zero derivative (torch.heaviside has no backward)."""
    if not isinstance(x, torch.Tensor):
        return float(x > 0) + float(x == 0) * float(h0)
    return (x > 0).to(x.dtype) + (x == 0).to(x.dtype) * float(h0)


def where(cond, a, b, like):
    """torch.where that accepts Python numbers in either branch (``like`` gives dtype/device)."""
    return torch.where(cond, _t(a, like), _t(b, like))


FUNCTIONS = functions.spellings("torch")  # sympy node -> torch spelling (symgrad.functions)


def _piecewise(pairs):
    out = None
    for value, cond in reversed(pairs):
        out = value if (cond == "True" or out is None) else f"where({cond}, {value}, {out}, a0)"
    return out


def safe(cond, x):
    """x where ``cond`` holds, else 1: the inputs of a branch not taken (double-where trick).

    torch.where differentiates both branches; a branch computed where it is undefined (sqrt of
    a negative) gives NaN * 0 = NaN in the backward. Fed 1 instead, it stays finite.
    """
    if not isinstance(cond, torch.Tensor):
        return x if cond else 1.0
    if not isinstance(x, torch.Tensor):
        return x
    return torch.where(cond, x, torch.ones_like(x))


def _node(e: sp.Expr, pr) -> str | None:
    """NaN-safe branches for a Piecewise (every other node: the table)."""
    if isinstance(e, sp.Piecewise):
        pairs, earlier = [], []
        for b in e.args:
            cond = pr(b.cond)
            if b.expr.is_Atom:  # a symbol or number cannot be undefined (embedding lookups)
                pairs.append((pr(b.expr), cond))
            else:
                taken = cond if not earlier else (
                    f"(~({' | '.join(earlier)}))" if cond == "True"
                    else f"(({cond}) & ~({' | '.join(earlier)}))")
                pairs.append((_branch(b.expr, taken, pr), cond))
            if cond != "True":
                earlier.append(f"({cond})")
        return _piecewise(pairs)
    return None


def _branch(expr: sp.Expr, taken: str, pr) -> str:
    """The branch's source with every input fed through ``safe(taken, ...)``."""
    if taken == "True":
        return pr(expr)
    with mock.patch.dict(pr.names, {s: f"safe({taken}, {pr.names[s]})" for s in expr.free_symbols
                                    if s in pr.names}):  # every name as it was, after
        return pr(expr)


def target() -> Target:
    """The torch table (a map body's expression -> torch source)."""
    return Target("torch", FUNCTIONS,
                  {"torch": torch, "maximum": maximum, "minimum": minimum,
                   "heaviside": heaviside, "where": where, "safe": safe},
                  constant=lambda e: float(e), piecewise=_piecewise,
                  node=_node)


TARGET = target()


# ---------------------------------------------------------------- devices and global state
def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device(device: str, dtype: str) -> None:
    """Clear errors for an unknown / unavailable device or a dtype the device cannot run."""
    if dtype not in TORCH_DTYPES:
        raise SymgradError(f"unknown dtype {dtype!r}; choose one of {', '.join(TORCH_DTYPES)}")
    base = str(device).split(":")[0]
    if base not in ("cpu", "cuda", "mps"):
        raise SymgradError(f"unknown device {device!r}; available here: "
                           f"{', '.join(available_devices())}")
    if base not in available_devices():
        raise SymgradError(f"device {device!r} is not available on this machine; available: "
                           f"{', '.join(available_devices())}")
    if base == "mps" and dtype == "float64":
        raise SymgradError("MPS does not support float64; use dtype='float32' on mps, or "
                           "device='cpu' for float64")


def _precision_flags() -> list[tuple[object, str, object]]:
    """(object, attribute, exact value) for every flag that lets float32 math use TF32."""
    cuda_mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(cuda_mm, "fp32_precision"):  # torch >= 2.9: new API only (mixing raises)
        flags = [(cuda_mm, "fp32_precision", "ieee"), (cudnn, "fp32_precision", "ieee")]
        for sub in ("conv", "rnn"):
            obj = getattr(cudnn, sub, None)
            if obj is not None and hasattr(obj, "fp32_precision"):
                flags.append((obj, "fp32_precision", "ieee"))
        return flags
    return [(cuda_mm, "allow_tf32", False), (cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def exact_math():
    """TF32 off while verifying; every flag restored afterwards, also on error."""
    flags = _precision_flags()
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in flags]
    try:
        for obj, attr, value in flags:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


# ---------------------------------------------------------------- the user's torch code
def _received(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> str:
    """``W1 (5, 4), x (4,)``: each argument's name and shape."""
    return ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))


def check_torch_fn(fn: Callable, block_names: Sequence[str]) -> list[str]:
    """The argument names of ``fn``; they must be exactly the model's block names."""
    if not callable(fn):
        raise SymgradError(f"torch_fn must be callable, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise SymgradError("torch_fn: cannot read its signature; pass a plain Python function "
                           f"taking {', '.join(block_names)}") from None
    names = [p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    missing = [] if takes_any else [b for b in block_names if b not in names]
    extra = [p for p in names if p not in block_names   # defaulted extras are not passed
             and sig.parameters[p].default is inspect.Parameter.empty]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"is missing argument(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"has extra argument(s) {', '.join(map(repr, extra))}")
        raise SymgradError(f"torch_fn {' and '.join(parts)}; it must take one argument per "
                           f"parameter and input block, by name: {', '.join(block_names)}")
    return names


def run_torch_fn(fn: Callable, blocks, values: dict[str, np.ndarray], *, device: str,
                 dtype: str, batching: str = "loop") -> tuple[np.ndarray, str]:
    """Value and gradient of the user's per-sample ``fn`` for every sample.

    Arguments:
        fn: ``fn(**blocks) -> scalar tensor`` for one sample.
        batching: "loop" (plain autograd, one sample at a time) or "vmap" (falls back to the
            loop when vmap cannot trace ``fn``).
        blocks: the model's blocks (name, shape, is_param, domain).
        values: block name -> array (N, *shape).
    Returns:
        (N, 1 + n_param_entries) float64 array, and the batching mode used ("vmap" or "loop").
    """
    tdtype = TORCH_DTYPES[dtype]
    param_names = [b.name for b in blocks if b.is_param]
    tensors = {}
    for b in blocks:
        v = values[b.name]
        if b.domain.integer:
            tensors[b.name] = torch.tensor(v, dtype=torch.long, device=device)
        elif b.is_param:  # the samples themselves where dtype and device match (GPT-2: no
            #               1.3 GB copy); each sample's leaf requires grad: never written
            tensors[b.name] = torch.as_tensor(v, dtype=tdtype, device=device)
        else:
            tensors[b.name] = torch.tensor(v, dtype=tdtype, device=device)
    n = next(iter(values.values())).shape[0]

    input_names = [b.name for b in blocks if not b.is_param]

    def per_sample(*args):  # parameters first, then inputs, all positional (vmap maps those)
        out = fn(**dict(zip(param_names + input_names, args)))
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise SymgradError(f"torch_fn returned {shape}; it must return a scalar loss tensor "
                               "for one sample (reduce it, e.g. with .sum() or .mean())")
        return out.reshape(()), out.reshape(())

    argnums = tuple(range(len(param_names)))
    params = [tensors[p] for p in param_names]
    inputs = [tensors[name] for name in input_names]
    name = getattr(fn, "__name__", type(fn).__name__)
    with exact_math():
        if batching == "loop":  # each block written into the flat array as autograd has it
            return _loop(per_sample, params, inputs, n, name, param_names + input_names), "loop"
        try:
            gfn = torch.func.grad(per_sample, argnums=argnums, has_aux=True)
            grads, value = torch.func.vmap(gfn)(*params, *inputs)
            grads, mode = list(grads), "vmap"
        except SymgradError:
            raise
        except Exception as exc:  # vmap cannot trace it: one sample at a time
            return (_loop(per_sample, params, inputs, n, name, param_names + input_names),
                    f"loop (vmap: {type(exc).__name__})")
    return _flatten(value, grads, n), mode


def _flatten(value, grads: list, n) -> np.ndarray:
    """(N, 1 + entries) float64: the value, then each gradient flattened, filled block by block
    into one array, each block's tensor released from ``grads`` once copied (no second
    whole-model copy: GPT-2's gradients are 1.3 GB in float64)."""
    widths = [int(g[0].numel()) if n else 0 for g in grads]
    out = flat_empty((n, 1 + sum(widths)))  # inside reused_flat: a freed backend's array
    out[:, 0] = value.detach().reshape(n).to("cpu", torch.float64).numpy()
    col = 1
    for k, w in enumerate(widths):
        out[:, col:col + w] = grads[k].detach().reshape(n, w).to("cpu", torch.float64).numpy()
        grads[k] = None
        col += w
    return out


def _loop(per_sample, params, inputs, n, name="torch_fn", names=()) -> np.ndarray:
    """Value and gradients one sample at a time, as ``_flatten``'s (N, 1 + entries) array;
    each sample's parameters are detached views of ``params`` (a leaf that requires grad
    cannot be changed in place: no copy needed), and each parameter's gradient is written into
    its columns as autograd has it and released (``torch_grads.backward_into``: GPT-2's
    gradient is never held twice). An exception in the user's code (forward or backward) is
    one ``SymgradError`` line naming its own frame and the shapes it was given (``names``: the
    arguments' names, parameters first)."""
    widths = [int(p[0].numel()) if n else 0 for p in params]
    spans = [(1 + sum(widths[:k]), 1 + sum(widths[:k + 1])) for k in range(len(widths))]
    out = flat_empty((n, 1 + sum(widths)))  # inside reused_flat: a freed backend's array
    check = ("its code against those shapes (one sample each, no batch dimension: the "
             "model's block shapes)")
    for i in range(n):
        ps = [p[i].detach().requires_grad_(True) for p in params]
        args = [*ps, *[v[i] for v in inputs]]
        try:
            value, _ = per_sample(*args)
        except SymgradError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code on symgrad's blocks
            raise SymgradError(user_error(f"torch_fn {name!r}", exc, check,
                                          _received(names, args))) from None
        if not value.requires_grad:
            raise SymgradError(f"torch_fn {name!r} returned a loss that does not depend on the "
                               "parameters (detached, a constant, or computed under "
                               "torch.no_grad / via .item()); return the loss tensor itself")
        out[i, 0] = value.detach().to("cpu", torch.float64).item()
        try:
            backward_into(value, ps, out, spans, row=i)
        except SymgradError:
            raise
        except Exception as exc:  # noqa: BLE001 - a custom Function's backward, a hook
            raise SymgradError(user_error(f"the backward of torch_fn {name!r}", exc,
                                          "its backward (a custom autograd.Function's, a "
                                          "hook's) against those shapes",
                                          _received(names, args))) from None
        del ps, value
    return out


def dtype_changes(fn: Callable, blocks, point: dict[str, np.ndarray], *, device: str,
                  dtype: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where ``fn``, run at one sample, leaves the run's dtype: (the torch functions that took
    an integer tensor and returned floats of another dtype than the run's and than any float
    operand's: ``torch.log`` of an int64 tensor gives float32, ``F.cross_entropy(float32
    logits, int64 target)`` is not one, its float32 is the logits'; the torch functions that
    turned floats of the run's dtype into floats of a lower-precision one, e.g.
    ``Tensor.float`` in a float64 run)."""
    tdtype = TORCH_DTYPES[dtype]
    found: list[str] = []
    lowered: list[str] = []

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            operands = [a for a in list(args) + list((kwargs or {}).values())
                        if isinstance(a, torch.Tensor)]
            ints = [a for a in operands if not a.is_floating_point() and a.dtype != torch.bool]
            floats = {a.dtype for a in operands if a.is_floating_point()}
            if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
                return out
            name = getattr(func, "__name__", str(func))
            if ints and out.dtype != tdtype and out.dtype not in floats:
                found.append(name)
            elif (floats == {tdtype} and out.dtype != tdtype
                  and torch.finfo(out.dtype).eps > torch.finfo(tdtype).eps):
                lowered.append(f"{name}() gave {str(out.dtype).removeprefix('torch.')}")
            return out

    tensors = {b.name: torch.tensor(point[b.name], device=device,
                                    dtype=torch.long if b.domain.integer else tdtype)
               for b in blocks}
    try:
        with Watch(), torch.no_grad():
            fn(**tensors)
    except Exception:  # the probe only names a cause; the run itself already reported
        pass
    return tuple(found), tuple(lowered)
