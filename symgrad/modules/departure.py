"""Where a user's module first departs from the exact forward (``sg.verify(model, module=...)``).

Forward hooks on the module's named submodules capture their outputs at one sample (the failing
one); ``SITES`` (a row per layout, as ``layouts.LAYOUTS``) maps each submodule name to the
labelled node of symgrad's tensor program of the same GPT (``symgrad.zoo.gpt2``: ``h0.ln1``,
``h0.attn``, ...); ``symgrad.tensor.departure`` compares them, in the order they ran, with the exact
values and their rounding bound. The attention block is compared as a whole (its q/k/v
projections are not labelled in the program; its output projection is left out, so that a
departure inside attention is named at the attention block, not at its last Linear).

>>> site_of("book", "trf_blocks.1.norm2"), site_of("hf-gpt2", "transformer.h.0.mlp.act")
('h1.ln2', 'h0.gelu')
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import causes
from ..backends.torch import TORCH_DTYPES, exact_math
from ..compare import STATUS_NAMES
from ..tensor.departure import (Capture, Search, first_departure,  # noqa: F401 (Search: run.py)
                         first_unreproducible)
from ..model import Model
from ..tensor.program import topological
from ..zoo.gpt2 import gpt

# layout -> {submodule name template ({l}: the layer): labelled node of symgrad.zoo.gpt2}
_BLOCK = {"ln1": "h{l}.ln1", "attn": "h{l}.attn", "ln2": "h{l}.ln2", "fc1": "h{l}.fc1",
          "gelu": "h{l}.gelu", "fc2": "h{l}.ff", "ff": "h{l}.ff", "block": "h{l}.out"}


def _row(emb: str | None, block: str, names: dict, lnf: str, head: str) -> dict:
    row = {**({emb: "emb"} if emb else {}), lnf: "lnf", head: "logits"}
    row.update({f"{block}.{v}" if v else block: _BLOCK[k] for k, v in names.items()})
    return row


_TRANSFORMER = {"ln1": "ln_1", "attn": "attn", "ln2": "ln_2", "fc1": "mlp.c_fc",
                "fc2": "mlp.c_proj", "ff": "mlp", "block": ""}
SITES: dict[str, dict[str, str]] = {
    "book": _row("drop_emb", "trf_blocks.{l}",
                 {"ln1": "norm1", "attn": "att", "ln2": "norm2", "fc1": "ff.layers.0",
                  "gelu": "ff.layers.1", "fc2": "ff.layers.2", "ff": "ff", "block": ""},
                 "final_norm", "out_head"),
    "symgrad": _row(None, "blocks.{l}",  # the embedding sum is no submodule's output
                    {"ln1": "ln1", "attn": "att", "ln2": "ln2", "fc1": "ff.0", "gelu": "ff.1",
                     "ff": "ff", "block": ""}, "final_norm", "out_head"),
    "nanogpt": _row("transformer.drop", "transformer.h.{l}", {**_TRANSFORMER, "gelu": "mlp.gelu"},
                    "transformer.ln_f", "lm_head"),
    "hf-gpt2": _row("transformer.drop", "transformer.h.{l}", {**_TRANSFORMER, "gelu": "mlp.act"},
                    "transformer.ln_f", "lm_head"),
}
_PATTERNS = {layout: [(re.compile("^" + re.escape(t).replace(r"\{l\}", r"(?P<l>\d+)") + "$"), s)
                      for t, s in row.items()] for layout, row in SITES.items()}


def site_of(layout: str, name: str) -> str | None:
    """The program label compared with submodule ``name``'s output, or None."""
    for pattern, site in _PATTERNS.get(layout, ()):
        m = pattern.match(name)
        if m:
            return site.format(**m.groupdict())
    return None


def program(model: Model, tokens: int, train: bool):
    """The tensor program of ``model``'s GPT (its ``gpt_config``), labelled; cached."""
    key = ("departure_program", tokens, train)
    if key not in model._cache:
        model._cache[key] = gpt(model.gpt_config, tokens=tokens, dropout=train)
    return model._cache[key]


def _tensor_of(output) -> torch.Tensor | None:
    """A submodule's output tensor: itself, or the first tensor of a tuple (HF blocks)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


# ---------------------------------------------------------------- low-precision constants
_RANK = {torch.float16: 1, torch.bfloat16: 1, torch.float32: 2, torch.float64: 3}
# constants a forward commonly builds; a lower-precision value equal to one of them rounded is
# named (its relative rounding error computed from the exact constant)
KNOWN_CONSTANTS = {"sqrt(2/pi)": math.sqrt(2 / math.pi), "pi": math.pi, "2/pi": 2 / math.pi,
                   "1/sqrt(2)": math.sqrt(0.5), "sqrt(2)": math.sqrt(2), "e": math.e,
                   "log(2)": math.log(2), "sqrt(pi)": math.sqrt(math.pi), "1/pi": 1 / math.pi,
                   "0.044715": 0.044715, "1e-5": 1e-5, "1e-6": 1e-6}


@dataclass(frozen=True)
class LowPrecision:
    """A floating tensor of lower precision than the run's dtype entering its computation: an
    op with such an input and an output in the run's dtype (``c * x`` with a float32 ``c`` in a
    float64 forward, or ``c.to(torch.float64)``)."""

    site: str  # the innermost submodule running ("" : the top module)
    op: str
    dtype: str  # the lower dtype
    value: float | None  # its value when it holds one number
    shape: tuple[int, ...]

    def describe(self, run_dtype: str) -> str:
        """"a float32 constant in a float64 forward (sqrt(2/pi) rounded to float32: relative
        error 2.8e-08)", naming a known constant when the value is one rounded."""
        what = "constant" if self.value is not None else f"tensor {self.shape}"
        head = f"a {self.dtype} {what} in a {run_dtype} forward"
        if self.value is None:
            return f"{head} ({self.op} of a {self.dtype} tensor)"
        low = getattr(torch, self.dtype)
        for name, c in KNOWN_CONSTANTS.items():
            if torch.tensor(c, dtype=low).item() == self.value:
                return (f"{head} ({name} rounded to {self.dtype}: relative error "
                        f"{abs(self.value - c) / abs(c):.2g})")
        eps = torch.finfo(low).eps / 2
        return f"{head} ({self.value!r}, rounded to {self.dtype}: relative error up to {eps:.2g})"


class _Watch(TorchFunctionMode):
    """While a module runs: which submodule is running (forward pre/post hooks push and pop
    its name) and every op where a lower-precision floating tensor enters the run's dtype.

    A dtype check on the ops themselves, not a numeric guess: whatever the constant is and
    however it was made (torch.tensor of a Python float, a float32 buffer, torch.full without
    dtype=), the op that mixes it into the forward shows both dtypes."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.rank, self.dtype = _RANK.get(dtype, 0), dtype
        self.stack: list[str] = [""]
        self.found: list[LowPrecision] = []
        self.paused = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused or len(self.found) >= 8:
            return out
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not any(isinstance(o, torch.Tensor) and o.dtype == self.dtype for o in outs):
            return out
        for a in _tensors(args, kwargs):
            if (a.is_floating_point() and _RANK.get(a.dtype, 3) < self.rank
                    and not _exact_anyway(a)):
                value = float(a.detach().reshape(-1)[0]) if a.numel() == 1 else None
                self.found.append(LowPrecision(self.stack[-1], _name(func),
                                               str(a.dtype)[6:], value, tuple(a.shape)))
                break
        return out


def _exact_anyway(a: torch.Tensor) -> bool:
    """Every finite entry a short dyadic number (0, 1, 0.5, -2, a mask's 0/1/-inf): such a
    value is the same in any float dtype, so its lower precision changes nothing."""
    if a.numel() > 1 << 20:
        return False
    x = a.detach().to("cpu", torch.float64)
    x = x[torch.isfinite(x)] * 4096
    return bool(torch.all((x == torch.round(x)) & (x.abs() < 2.0**52)))


def _tensors(args, kwargs) -> list[torch.Tensor]:
    found = []
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (tuple, list)):
            found += [x for x in a if isinstance(x, torch.Tensor)]
    return found


def _name(func) -> str:
    return getattr(func, "__name__", str(func)).strip("_")


def low_precision_cause(events: list[LowPrecision], site: str, dtype: str) -> str:
    """The cause of a departure at ``site``: the first lower-precision value that entered the
    forward inside that submodule (or one of its children); "" when none did."""
    inside = [e for e in events if e.site == site or e.site.startswith(site + ".")]
    if not inside:  # one elsewhere did not make this submodule depart
        return ""
    e = inside[0]
    return e.describe(dtype) + ("" if e.site == site else f" at {e.site}")


def _enter(watch: "_Watch", name: str) -> Callable:
    def pre(mod, args) -> None:  # returns None: the input is unchanged
        watch.stack.append(name)
    return pre


def _leave(watch: "_Watch") -> Callable:
    def post(mod, args, output) -> None:  # returns None: the output is unchanged
        if len(watch.stack) > 1:
            watch.stack.pop()
    return post


def capture(module: nn.Module, fn: Callable, tensors: dict, layout: str,
            labels: dict, watch: "_Watch | None" = None) -> tuple[list[Capture], list[str]]:
    """Run ``fn(**tensors)`` (one sample) with a forward hook on every submodule that has a
    site; returns the captures in execution order and the names that had no labelled node.
    ``watch``: a ``_Watch`` that also records which submodule runs and every lower-precision
    tensor entering the run's dtype."""
    found, missing, handles = [], [], []

    def hook(name, node):
        def record(mod, args, output):
            t = _tensor_of(output)
            if t is not None:
                if watch is not None:
                    watch.paused += 1
                v = t.detach().to("cpu", torch.float64).numpy()
                if watch is not None:
                    watch.paused -= 1
                found.append(Capture(name, type(mod).__name__, node, v.copy()))
        return record
    for name, sub in module.named_modules():
        if watch is not None and name:
            handles.append(sub.register_forward_pre_hook(_enter(watch, name)))
            handles.append(sub.register_forward_hook(_leave(watch)))
        site = site_of(layout, name) if name else None
        if site is None:
            continue
        if site not in labels:
            missing.append(f"{name}: no node {site!r} in the program")
            continue
        handles.append(sub.register_forward_hook(hook(name, labels[site])))
    try:
        with torch.no_grad(), exact_math(), (watch or contextlib.nullcontext()):
            fn(**tensors)
    finally:
        for h in handles:
            h.remove()
    return found, missing


def site_layout(module: nn.Module) -> str | None:
    """The layout of ``SITES`` whose submodule names the module has most (under module_map=,
    a module of a known GPT family still has its submodules), or None when none has at least
    a LayerNorm, an attention and a feed-forward site."""
    names = [n for n, _ in module.named_modules() if n]
    best, score = None, 2
    for layout in SITES:
        n = sum(site_of(layout, name) is not None for name in names)
        if n > score:
            best, score = layout, n
    return best


def locate(model: Model, module: nn.Module, fn: Callable, layout: str, values: dict,
           sample: int, *, dtype: str, device: str, tol, train: bool = False) -> Search:
    """Where ``module`` (run through ``fn``, the per-sample function of the verification)
    first departs at ``sample`` of ``values`` (block name -> (N, *shape), as verified)."""
    t0 = time.perf_counter()
    if layout not in SITES:  # module_map=: match the submodules by their names if they can be
        layout = site_layout(module) or layout
    if layout not in SITES or not hasattr(model, "gpt_config"):
        why = ("intermediates are not matched under module_map= (the module's submodule names "
               "match no known GPT layout)" if layout == "explicit map"
               else f"no site table for layout {layout!r}")
        return Search(None, (), (why,), 0.0, sample)
    try:
        return _locate(model, module, fn, layout, values, sample, dtype=dtype, device=device,
                       tol=tol, train=train, t0=t0)
    except Exception as exc:  # a search that cannot run leaves the failure as it was
        return Search(None, (), (f"the departure search could not run: {type(exc).__name__}: "
                                 f"{exc}",), time.perf_counter() - t0, sample)


def _locate(model, module, fn, layout, values, sample, *, dtype, device, tol, train, t0):
    tokens = next(b.shape[0] for b in model.input_blocks if b.name == "ids")
    prog = program(model, tokens, train)
    labels = {n.name: n for n in topological([prog.loss]) if n.name and not n.is_leaf}
    one = {k: np.asarray(v)[sample:sample + 1] for k, v in values.items()}
    tensors = {}
    for b in model.blocks:
        v = one[b.name][0]
        tensors[b.name] = (torch.tensor(v, dtype=torch.long, device=device) if b.domain.integer
                           else torch.tensor(v, dtype=TORCH_DTYPES[dtype], device=device))
    watch = _Watch(TORCH_DTYPES[dtype])
    found, missing = capture(module, fn, tensors, layout, labels, watch)
    again, _ = capture(module, fn, tensors, layout, labels)  # is the forward reproducible?
    leaves = {b.name: one[b.name] for b in prog.blocks}
    search = first_departure(found, leaves, dtype=dtype, tol=tol, backend="module",
                             sample=sample)
    random = first_unreproducible(found, again, leaves, dtype=dtype, tol=tol)
    cause = (low_precision_cause(watch.found, search.departure.site, dtype)
             if search.departure is not None else "")
    return replace(search, skipped=search.skipped + tuple(missing), cause=cause,
                   random=random, seconds=time.perf_counter() - t0)


def explain(result, searches: dict[str, Search]):
    """The result with each module backend's failures re-classed by its departure search
    (``causes.refine``): a located departure makes it "function differs: forward departs"
    with the one-line sentence; an agreeing forward keeps "derivative wrong" and says so."""

    def fix(f):
        search = searches.get(f.backend)
        if search is None:
            return f
        comp = result.comparisons.get(f.backend)
        value = {}
        rows = np.flatnonzero(np.asarray(result.oracle_samples) == f.sample)
        if comp is not None and len(rows):
            r = int(rows[0])
            value = dict(value_status=STATUS_NAMES[int(comp.status[r, 0])],
                         value_expected=float(comp.expected[r, 0]),
                         value_got=float(comp.got[r, 0]))
        ctx = causes.Context(
            **value, departure=(search.departure.message(search.cause)
                                if search.departure else ""),
            forward_agrees=search.agrees,
            random=search.random.message() if search.random is not None else "",
            unlocated="; ".join(search.skipped) if not search.checked else "")
        cause = causes.refine(f.cause, ctx, f.output)
        if cause is None:
            return f
        owner = f.cause.rsplit(" — ", 1)[0] + " — " if " — " in f.cause else ""
        return replace(f, cause=f"{owner}{cause.klass}: {cause.name}", note=cause.explanation)
    result.failures = [fix(f) for f in result.failures]
    return result
