"""Where a user's module first departs from the exact forward (``sg.verify(model, module=...)``).

Forward hooks on the module's named submodules capture their outputs at one sample (the failing
one); ``SITES`` (a row per layout, as ``layouts.LAYOUTS``) maps each submodule name to the
labelled node of symgrad's tensor program of the same GPT (``symgrad.zoo.gpt2``: ``h0.ln1``,
``h0.attn``, ...); ``symgrad.departure`` compares them, in the order they ran, with the exact
values and their rounding bound. The attention block is compared as a whole (its q/k/v
projections are not labelled in the program; its output projection is left out, so that a
departure inside attention is named at the attention block, not at its last Linear).

>>> site_of("book", "trf_blocks.1.norm2"), site_of("hf-gpt2", "transformer.h.0.mlp.act")
('h1.ln2', 'h0.gelu')
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import causes
from ..backends.torch import TORCH_DTYPES, exact_math
from ..departure import Capture, Search, first_departure  # noqa: F401 (Search: run.py)
from ..model import Model

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
        from ..zoo.gpt2 import gpt
        model._cache[key] = gpt(model.gpt_config, tokens=tokens, dropout=train)
    return model._cache[key]


def _tensor_of(output) -> torch.Tensor | None:
    """A submodule's output tensor: itself, or the first tensor of a tuple (HF blocks)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def capture(module: nn.Module, fn: Callable, tensors: dict, layout: str,
            labels: dict) -> tuple[list[Capture], list[str]]:
    """Run ``fn(**tensors)`` (one sample) with a forward hook on every submodule that has a
    site; returns the captures in execution order and the names that had no labelled node."""
    found, missing, handles = [], [], []

    def hook(name, node):
        def record(mod, args, output):
            t = _tensor_of(output)
            if t is not None:
                v = t.detach().to("cpu", torch.float64).numpy()
                found.append(Capture(name, type(mod).__name__, node, v.copy()))
        return record
    for name, sub in module.named_modules():
        site = site_of(layout, name) if name else None
        if site is None:
            continue
        if site not in labels:
            missing.append(f"{name}: no node {site!r} in the program")
            continue
        handles.append(sub.register_forward_hook(hook(name, labels[site])))
    try:
        with torch.no_grad(), exact_math():
            fn(**tensors)
    finally:
        for h in handles:
            h.remove()
    return found, missing


def locate(model: Model, module: nn.Module, fn: Callable, layout: str, values: dict,
           sample: int, *, dtype: str, device: str, tol, train: bool = False) -> Search:
    """Where ``module`` (run through ``fn``, the per-sample function of the verification)
    first departs at ``sample`` of ``values`` (block name -> (N, *shape), as verified)."""
    t0 = time.perf_counter()
    if layout not in SITES or not hasattr(model, "gpt_config"):
        return Search(None, (), (f"no site table for layout {layout!r}",), 0.0, sample)
    try:
        return _locate(model, module, fn, layout, values, sample, dtype=dtype, device=device,
                       tol=tol, train=train, t0=t0)
    except Exception as exc:  # a search that cannot run leaves the failure as it was
        return Search(None, (), (f"the departure search could not run: {type(exc).__name__}: "
                                 f"{exc}",), time.perf_counter() - t0, sample)


def _locate(model, module, fn, layout, values, sample, *, dtype, device, tol, train, t0):
    tokens = next(b.shape[0] for b in model.input_blocks if b.name == "ids")
    prog = program(model, tokens, train)
    from ..tensor.program import topological
    labels = {n.name: n for n in topological([prog.loss]) if n.name and not n.is_leaf}
    one = {k: np.asarray(v)[sample:sample + 1] for k, v in values.items()}
    tensors = {}
    for b in model.blocks:
        v = one[b.name][0]
        tensors[b.name] = (torch.tensor(v, dtype=torch.long, device=device) if b.domain.integer
                           else torch.tensor(v, dtype=TORCH_DTYPES[dtype], device=device))
    found, missing = capture(module, fn, tensors, layout, labels)
    leaves = {b.name: one[b.name] for b in prog.blocks}
    search = first_departure(found, leaves, dtype=dtype, tol=tol, backend="module",
                             sample=sample)
    return replace(search, skipped=search.skipped + tuple(missing),
                   seconds=time.perf_counter() - t0)


def explain(result, searches: dict[str, Search]):
    """The result with each module backend's failures re-classed by its departure search
    (``causes.refine``): a located departure makes it "function differs: forward departs"
    with the one-line sentence; an agreeing forward keeps "derivative wrong" and says so."""
    def fix(f):
        search = searches.get(f.backend)
        if search is None:
            return f
        ctx = causes.Context(departure=search.departure.message() if search.departure else "",
                             forward_agrees=search.agrees)
        cause = causes.refine(f.cause, ctx, f.output)
        if cause is None:
            return f
        return replace(f, cause=f"{cause.klass}: {cause.name}", note=cause.explanation)
    result.failures = [fix(f) for f in result.failures]
    return result
