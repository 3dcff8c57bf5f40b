"""Matching a model's blocks to an nn.Module's parameters: one plan, checked before any work.

Every block is a *view* of module parameters (the whole tensor, a transpose, a third of a fused
q/k/v tensor, or whatever a user's callable selects). Views are traced once with index tensors
(each parameter entry holds its own global number), which gives, for every block entry, the
module parameter entry it is — for naming failures (``trf_blocks.1.ff.layers.0.weight[3, 7]``),
for checking that every trainable parameter entry is covered exactly once, and for assembling
the module's parameters from the blocks (a gather, so autograd returns each block's gradient;
a tied parameter appears once, so its gradient is the sum of all its uses).

>>> import torch, symgrad as sg
>>> from symgrad.modules.mapping import plan
>>> W, x = sg.matrix("W", 2, 3), sg.matrix("x", 3)
>>> m = sg.Model("lin", sum((W * x).applyfunc(lambda e: e**2)), params=[W], inputs=[x])
>>> p = plan(m, torch.nn.Linear(3, 2, bias=False), {"W": "weight"})
>>> p.entry_name("W", 4)
'weight[1, 1]'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import SymgradError
from ..model import Model
from .layouts import LAYOUTS, VIEWS, Layout

MapSpec = "str | Mapping[str, str | Callable] | Callable[[dict], dict] | None"


@dataclass(frozen=True)
class Source:
    """Where a block lives: a label for tables and f(parameters by name) -> the block's view."""

    label: str
    view: Callable[[dict], torch.Tensor]
    params: tuple[str, ...]  # parameter names the view reads (empty: unknown, a callable map)


@dataclass
class Plan:
    """The checked correspondence of a model's parameter blocks and a module's parameters."""

    layout: str  # a layout name, or "explicit map"
    names: list[str]  # trainable module parameters, canonical names (one per tied tensor)
    shapes: dict[str, tuple[int, ...]]
    labels: dict[str, str]  # block -> label
    where: dict[str, np.ndarray]  # block -> (n_entries, 2) rows of (parameter #, flat index)
    gathers: dict[str, tuple[list[str], torch.Tensor]]  # param -> (blocks, positions)

    def entry_name(self, block: str, k: int) -> str:
        """The module's own name of a block's k-th entry (row-major)."""
        pi, flat = self.where[block][k]
        name = self.names[pi]
        idx = np.unravel_index(int(flat), self.shapes[name]) if self.shapes[name] else ()
        return f"{name}[{', '.join(map(str, idx))}]"

    def assemble(self, blocks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Module parameters (canonical names) from block tensors, differentiably."""
        out = {}
        for name, (order, positions) in self.gathers.items():
            flat = torch.cat([blocks[b].reshape(-1) for b in order])
            out[name] = flat[positions.to(flat.device)].reshape(self.shapes[name])
        return out


def plan(model: Model, module: nn.Module, map: MapSpec = None) -> Plan:
    """Match ``model``'s parameter blocks to ``module``'s parameters, or raise ONE error.

    Arguments:
        model: the symgrad model (its parameter blocks are matched).
        module: the user's ``nn.Module``.
        map: None (detect a known layout from the module's parameter names), a layout name
            (see ``symgrad.modules.LAYOUTS``), a dict ``{block: "param.name" | f(params) ->
            view}``, or one callable ``f(params) -> {block: view}``; ``params`` maps every
            module parameter name (tied names included) to its tensor, and a view may slice,
            transpose, reshape or index it, never compute with it.
    Returns:
        A ``Plan``. Raises ``SymgradError`` listing every unmatched block, unknown or unused
        parameter, shape mismatch and doubly mapped entry at once.
    """
    named = _named(module)
    canonical, aliases = _canonical(module)
    shapes = {n: tuple(t.shape) for n, t in named.items()}
    layout, sources = _sources(model, named, map)
    problems: list[str] = []
    blocks = {b.name: b for b in model.param_blocks}

    # trace every view with index tensors: entry value = its global number (exact in float64)
    offsets, numbers, index = {}, [], {}
    for name in canonical:
        offsets[name] = sum(int(np.prod(shapes[n])) for n in numbers)
        numbers.append(name)
    for name, t in named.items():
        c = _canon_of(name, canonical, aliases)
        if c is not None:
            index[name] = (offsets[c] + torch.arange(t.numel(), dtype=torch.float64)
                           ).reshape(t.shape)
    total = sum(int(np.prod(shapes[n])) for n in numbers)
    starts = np.array([offsets[n] for n in numbers] + [total])
    where, labels = {}, {}
    for block, src in sources.items():
        b = blocks[block]
        labels[block] = src.label
        missing = [p for p in src.params if p not in named]
        if missing:
            problems += [f"block {block!r}: the module has no parameter {p!r}{_close(p, named)}"
                         for p in missing]
            continue
        try:
            got = src.view(index)
        except Exception as exc:  # a user's callable
            problems.append(f"block {block!r}: its view failed: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(got, torch.Tensor):
            problems.append(f"block {block!r}: its view returned {type(got).__name__}, not a "
                            "tensor")
            continue
        if tuple(got.shape) != b.shape:
            problems.append(f"block {block!r} has shape {b.shape} but {src.label} gives "
                            f"{tuple(got.shape)}")
            continue
        flat = got.detach().reshape(-1).numpy()
        if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)) or \
                (flat.size and (flat.min() < 0 or flat.max() >= total)):
            problems.append(f"block {block!r}: its view computes with parameter values; a view "
                            "may only select, slice, transpose or reshape them")
            continue
        pi = np.searchsorted(starts, flat, side="right") - 1
        where[block] = np.stack([pi, flat - starts[pi]], axis=1).astype(np.int64)

    for extra in sorted(set(_requested(map)) - set(blocks)):
        problems.append(f"map names block {extra!r}, which the model does not have")
    unmapped = [b for b in blocks if b not in sources]
    if unmapped:
        problems.append(f"model block(s) with no module parameter: {', '.join(unmapped)}")
    tie = tie_problem(model, module, layout, sources, named, aliases)
    problems += _coverage(where, numbers, shapes, aliases, named, tie)
    if problems:
        raise SymgradError(_message(model, module, layout, problems, named))
    return Plan(layout, numbers, shapes, labels, where,
                _gathers(where, numbers, shapes))


# ---------------------------------------------------------------- the module's parameters
def _named(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter by every name it has (tied tensors under each name)."""
    if not isinstance(module, nn.Module):
        raise SymgradError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return {n: p for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}


def _canonical(module: nn.Module) -> tuple[list[str], dict[str, list[str]]]:
    """First name of each distinct trainable tensor, and the other names tied to it."""
    first: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    for n, p in module.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            continue
        if id(p) in first:
            aliases[first[id(p)]].append(n)
        else:
            first[id(p)] = n
            aliases[n] = []
    return list(first.values()), aliases


def _canon_of(name, canonical, aliases):
    if name in aliases:
        return name
    return next((c for c in canonical if name in aliases[c]), None)


# ---------------------------------------------------------------- sources of the blocks
def _sources(model: Model, named: dict, map) -> tuple[str, dict[str, Source]]:
    blocks = [b.name for b in model.param_blocks]
    if map is None:
        layout = detect(model, named)
        return layout.name, _layout_sources(layout, blocks)
    if isinstance(map, str):
        if map not in LAYOUTS:
            raise SymgradError(f"map={map!r}: unknown layout; choose one of "
                               f"{', '.join(LAYOUTS)}, or give a dict {{block: parameter}}")
        return map, _layout_sources(LAYOUTS[map], blocks)
    if isinstance(map, Mapping):
        out = {}
        for block, target in map.items():
            if isinstance(target, str):
                out[block] = Source(target, (lambda t: lambda p: p[t])(target), (target,))
            elif callable(target):
                out[block] = Source(f"map[{block!r}]", target, ())
            else:
                raise SymgradError(f"map[{block!r}] must be a parameter name or a callable "
                                   f"returning a view, got {type(target).__name__}")
        return "explicit map", {b: s for b, s in out.items() if b in blocks}
    if callable(map):
        return "explicit map", _callable_sources(map, named, blocks)
    raise SymgradError(f"map must be None, a layout name, a dict or a callable, got "
                       f"{type(map).__name__}")


def _requested(map) -> list[str]:
    return list(map) if isinstance(map, Mapping) else []


def _layout_sources(layout: Layout, blocks: list[str]) -> dict[str, Source]:
    out = {}
    for b in blocks:
        found = layout.source(b)
        if found is not None:
            param, view = found
            label = param if not view else f"{param} [{view} as {b}]"
            out[b] = Source(label, (lambda p_, v_: lambda p: VIEWS[v_](p[p_]))(param, view),
                            (param,))
    return out


def _callable_sources(map, named, blocks) -> dict[str, Source]:
    try:
        probe = map(dict(named))
    except Exception as exc:
        raise SymgradError(f"map: calling it on the module's parameters failed: "
                           f"{type(exc).__name__}: {exc}") from None
    if not isinstance(probe, Mapping):
        raise SymgradError(f"map: the callable must return a dict {{block: view}}, got "
                           f"{type(probe).__name__}")
    return {b: Source(f"map()[{b!r}]", (lambda b_: lambda p: map(p)[b_])(b), ())
            for b in probe}


def detect(model: Model, named: dict) -> Layout:
    """The known layout under which most of the model's blocks are found with their shape."""
    def score(layout: Layout) -> int:
        n = 0
        for b in model.param_blocks:
            found = layout.source(b.name)
            if found and found[0] in named:
                try:
                    n += tuple(VIEWS[found[1]](named[found[0]].detach()).shape) == b.shape
                except (RuntimeError, IndexError):
                    pass
        return n
    scores = {name: score(layout) for name, layout in LAYOUTS.items()}
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        shown = ", ".join(list(named)[:8]) + (", …" if len(named) > 8 else "")
        raise SymgradError(f"module: its parameters ({shown}) match no known GPT layout "
                           f"({', '.join(f'{k}: {v.description}' for k, v in LAYOUTS.items())})"
                           "; pass module_map={block: 'parameter.name' or a view function} to sg.verify")
    return LAYOUTS[best]


# ---------------------------------------------------------------- checks and assembly
def _coverage(where, numbers, shapes, aliases, named, tie: str = "") -> list[str]:
    """Every trainable parameter entry covered exactly once (``tie``: the head/embedding tie
    problem in words, ``tie_problem``, replacing the generic hints)."""
    counts = {n: np.zeros(int(np.prod(shapes[n])), np.int64) for n in numbers}
    owners: dict[str, set] = {n: set() for n in numbers}
    for block, rows in where.items():
        for pi in np.unique(rows[:, 0]):
            owners[numbers[pi]].add(block)
        for pi, flat in rows:
            counts[numbers[pi]][flat] += 1
    problems, unused = [], []
    for n in numbers:
        tied = f" (tied: {', '.join(aliases[n])})" if aliases[n] else ""
        if not owners[n]:
            unused.append(f"{n} {shapes[n]}{tied}")
        elif (counts[n] == 0).any():
            problems.append(f"parameter {n}{tied}: {int((counts[n] == 0).sum())} of "
                            f"{counts[n].size} entries are in no block")
        if (counts[n] > 1).any():
            problems.append(f"parameter {n}{tied} is mapped by more than one block "
                            f"({', '.join(sorted(owners[n]))})" + (
                                f"; {tie}" if tie and aliases[n] else
                                "; the module ties these weights: build the model with "
                                "tie_weights=True" if aliases[n] else ""))
    if unused:
        hint = ""
        if tie:
            hint = f" ({tie})"
        elif any(aliases[n.split(" ")[0]] == [] and "head" in n for n in unused):
            hint = " (an untied output head: build the model with tie_weights=False)"
        problems.append(f"module parameter(s) in no model block: {'; '.join(unused)}{hint}")
    return problems


TIE_FLAGS = ("tie_word_embeddings", "tie_weights", "tie_embeddings")


def module_ties(module: nn.Module, layout: str) -> tuple[bool | None, str]:
    """What the module itself says about tying its output head to its token embedding: its
    config's flag (Hugging Face ``config.tie_word_embeddings``; ``tie_weights`` /
    ``tie_embeddings`` in a config or on the module), or nanoGPT's design (it always ties).

    Returns:
        (True / False / None when it says nothing, the source in words)."""
    cfg = getattr(module, "config", None)
    for flag in TIE_FLAGS:
        for obj, label in ((cfg, "config."), (module, "")):
            v = getattr(obj, flag, None) if obj is not None else None
            if isinstance(v, bool):
                return v, f"the module's {label}{flag}={v}"
    if layout == "nanogpt":
        return True, "nanoGPT ties lm_head to wte"
    return None, ""


def tie_problem(model: Model, module: nn.Module, layout: str, sources: dict, named: dict,
                aliases: dict) -> str:
    """A head/embedding tie that disagrees with the model's (``tie_weights``), in words: a tie
    that the config asks for but the module broke (the head a separate tensor, perhaps a copy
    of the embedding's values), or a tie the module has that the config does not want; "" when
    they agree or the head and embedding are not known.

    Arguments:
        model: the symgrad model (its ``gpt_config.tie_weights``).
        module, layout, sources, named, aliases: as ``plan`` has them.
    Returns:
        One clause naming the tie, both tensors and the fix, or ""."""
    gcfg = getattr(model, "gpt_config", None)
    if gcfg is None:
        return ""
    lay = LAYOUTS.get(layout)
    head = (lay.source("out_head") if lay else None) or (
        (sources["out_head"].label, "") if "out_head" in sources else None)
    emb = (lay.source("tok_emb") if lay else None) or (
        (sources["tok_emb"].label, "") if "tok_emb" in sources else None)
    if not (head and emb and head[0] in named and emb[0] in named):
        return ""
    head, emb = head[0], emb[0]
    same = named[head] is named[emb]
    ties, said = module_ties(module, layout)
    if gcfg.tie_weights and not same:
        a, b = named[head].detach(), named[emb].detach()
        copy = a.shape == b.shape and bool(torch.equal(a, b))
        why = ", though equal in value: a copy" if copy else ""
        if ties is False and not copy:
            return (f"the model ties out_head to tok_emb (tie_weights=True), but the module's "
                    f"{head} is untied by design ({said}): build the model with "
                    "tie_weights=False")
        if ties or copy:
            return (f"the config ties out_head to tok_emb (tie_weights=True"
                    f"{'; ' + said if said else ''}), but "
                    f"the module's {head} is a separate tensor (not the same Parameter as "
                    f"{emb}{why}): the tie is broken; tie them again (module.{head} = "
                    f"module.{emb}; Hugging Face: module.tie_weights())")
        return (f"the model ties out_head to tok_emb (tie_weights=True), but the module's "
                f"{head} is a separate tensor (not the same Parameter as {emb}): if the module "
                f"means to tie them, the tie is broken (make {head} the same Parameter as "
                f"{emb}); if its head is meant to be untied, build the model with "
                "tie_weights=False")
    if not gcfg.tie_weights and same:
        if ties is False:
            return (f"the config does not tie out_head to tok_emb ({said}), but the module's "
                    f"{head} is the same Parameter as {emb}: an unintended tie; give {head} "
                    "its own Parameter (or build the model with tie_weights=True)")
        return (f"the model does not tie out_head to tok_emb (tie_weights=False), but the "
                f"module's {head} is the same Parameter as {emb}"
                + (f" ({said})" if said else "") + ": build the model with tie_weights=True "
                "if the tie is meant, else give the head its own Parameter")
    return ""


def _gathers(where, numbers, shapes) -> dict:
    """Per parameter: the blocks covering it and, for each entry, its position in their
    concatenation (so that assemble is one gather per parameter)."""
    out = {}
    for pi, name in enumerate(numbers):
        order = [b for b, rows in where.items() if (rows[:, 0] == pi).any()]
        positions = np.full(int(np.prod(shapes[name])), -1, np.int64)
        base = 0
        for b in order:
            rows = where[b]
            mine = np.nonzero(rows[:, 0] == pi)[0]
            positions[rows[mine, 1]] = base + mine
            base += len(rows)
        out[name] = (order, torch.as_tensor(positions))
    return out


def _close(name: str, named: dict) -> str:
    near = difflib.get_close_matches(name, list(named), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""


def _message(model, module, layout, problems, named) -> str:
    return (f"module {type(module).__name__} does not match model {model.name!r} "
            f"(layout: {layout}); nothing was derived. {len(problems)} problem(s):\n  - "
            + "\n  - ".join(problems)
            + f"\nModel blocks: {', '.join(b.name for b in model.param_blocks)}"
            + "\nFix the module or the GPT config, or pass module_map={block: 'parameter.name'} to sg.verify.")
