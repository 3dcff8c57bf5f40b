"""The user's nn.Module as a per-sample torch function of symgrad's blocks, and its fail-fast probe.

One sample: the module's parameters are assembled from the blocks (``Plan.assemble``) and loaded
with ``torch.func.functional_call`` (the user's ``register_hook`` hooks on a parameter carried
onto its substitute: ``capture.hooks``); the module is called as ``module(ids[None])`` (with
``targets=`` too when its forward takes ``targets``, as nanoGPT's does, so that it returns every
position's logits); the loss is the mean next-token cross-entropy of the logits (``.logits``
when the output is an object, the first tensor of a tuple), or the user's ``loss(output,
targets)``.

Dropout: the module runs in eval mode by default (dropout off), against the model without
dropout. With ``train=True`` it runs in train mode and symgrad *feeds its keep-masks*: while the
module runs, ``torch.nn.functional.dropout`` (which ``nn.Dropout`` and Hugging Face's functional
attention dropout both call) is replaced by ``x * mask / (1 - p)`` with the model's next mask
in call order — embeddings, then per layer the attention weights, after attention, after the
feed-forward — and restored afterwards. The number of calls, each p and each shape are checked.
Dropout inside ``F.scaled_dot_product_attention`` (``dropout_p > 0``) cannot be fed and is
refused with a clear error.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..backends.torch import TORCH_DTYPES
from ..capture.dropout import running_module
from ..capture.usercode import user_frame
from ..capture.hooks import carry, refuse_post_accumulate, tensor_hooks
from ..errors import SymgradError
from ..model import Model
from .mapping import Plan
from .paths import path_context


@dataclass(frozen=True)
class ModuleConfig:
    """How the module is run for one sample."""

    train: bool = False  # False: eval mode, dropout off; True: train mode, keep-masks fed
    loss: Callable | None = None  # loss(output, targets) -> scalar; None: mean next-token CE
    path: str = "eager"  # "eager", "compile", or "sdpa-<backend>" (symgrad.modules.paths)
    drop_rate: float = 0.0  # the model's dropout rate (checked against each call's p)


def dropout_sites(model: Model) -> list[tuple[str, list[str]]]:
    """The model's keep-mask inputs in the order a GPT calls dropout: (site, block names)."""
    names = {b.name for b in model.input_blocks}
    sites = [("embeddings", ["emb_keep"])] if "emb_keep" in names else []
    layers = sorted({int(m.group(1)) for n in names if (m := re.match(r"h(\d+)_", n))})
    for l in layers:
        heads = sorted((n for n in names if n.startswith(f"h{l}_attn_keep")),
                       key=lambda n: int(n.rsplit("keep", 1)[1]))
        if heads:
            sites.append((f"layer {l} attention weights", heads))
        for key, what in (("drop1", "after attention"), ("drop2", "after the feed-forward")):
            if f"h{l}_{key}" in names:
                sites.append((f"layer {l} {what}", [f"h{l}_{key}"]))
    return sites


@contextlib.contextmanager
def _mode(module: nn.Module, train: bool):
    """module.train(train) for the duration; every submodule's own flag restored after."""
    saved = [(m, m.training) for m in module.modules()]
    module.train(train)
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


class _Intercept:
    """Replaces F.dropout (feeding keep-masks) and wraps F.scaled_dot_product_attention
    (counting calls, refusing dropout_p > 0) while the module runs; restores both."""

    def __init__(self, masks: list[tuple[str, torch.Tensor]], rate: float,
                 train: bool = True, module: nn.Module | None = None) -> None:
        self.masks, self.rate, self.sdpa_calls, self.dropout_calls = list(masks), rate, 0, 0
        self.train, self.module = train, module

    def dropout(self, input, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return input
        self.dropout_calls += 1
        if not self.train:  # eval mode, yet the call asks for dropout: a hard-coded training=
            where = _running_submodule(self.module)
            raise SymgradError(f"module: dropout (or other randomness) is active in eval mode at "
                               f"{where}: it calls F.dropout(p={p}, training=True) on shape "
                               f"{tuple(input.shape)} although the module is in eval mode "
                               "(module.eval()); pass training=self.training (or use "
                               "nn.Dropout) so that eval mode switches it off")
        if not self.masks:
            raise SymgradError(f"module: dropout call {self.dropout_calls} (p={p}, shape "
                               f"{tuple(input.shape)}) has no keep-mask: the model has "
                               f"{self.dropout_calls - 1} dropout site(s); give the module and "
                               "the model the same dropout sites, or verify in eval mode "
                               "(train=False)")
        site, mask = self.masks.pop(0)
        if abs(p - self.rate) > 1e-12:
            raise SymgradError(f"module: dropout at {site} has p={p}, the model's drop_rate is "
                               f"{self.rate}; give both the same rate")
        if mask.numel() != input.numel():
            raise SymgradError(f"module: dropout call {self.dropout_calls} has shape "
                               f"{tuple(input.shape)}, the model's mask for {site} has "
                               f"{tuple(mask.shape)}: the module drops in a different order "
                               "(symgrad expects embeddings, then per layer attention weights, "
                               "after attention, after the feed-forward)")
        return input * mask.reshape(input.shape).to(input.dtype) / (1 - p)

    def sdpa(self, original):
        def wrapped(*args, **kwargs):
            self.sdpa_calls += 1
            if kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0):
                raise SymgradError("module: F.scaled_dot_product_attention is called with "
                                   "dropout_p > 0; its dropout cannot be fed symgrad's keep-masks."
                                   " Verify in eval mode (train=False), or use an attention "
                                   "path with explicit dropout (e.g. nanoGPT's flash=False)")
            return original(*args, **kwargs)
        return wrapped

    @contextlib.contextmanager
    def active(self):
        saved_dropout, saved_sdpa = F.dropout, F.scaled_dot_product_attention
        F.dropout, F.scaled_dot_product_attention = self.dropout, self.sdpa(saved_sdpa)
        try:
            yield self
        finally:
            F.dropout, F.scaled_dot_product_attention = saved_dropout, saved_sdpa

    def check_done(self) -> None:
        if self.masks:
            left = ", ".join(site for site, _ in self.masks)
            raise SymgradError(f"module: called dropout {self.dropout_calls} time(s) in train "
                               f"mode, but the model has keep-masks left for: {left}. Does the "
                               "module use dropout that is not torch.nn.functional.dropout?")


def _running_submodule(root: nn.Module | None) -> str:
    """The innermost submodule of ``root`` whose forward is on the call stack, by its name and
    class ("trf_blocks.0.ff.layers.1 (GELU)"), from the frames' ``self``; "the module" if none."""
    found = running_module(root)
    if found is None:
        return "the module"
    name, me = found
    return f"{name or 'the top module'} ({type(me).__name__})"


def logits_of(output, T: int, V: int) -> torch.Tensor:
    """The (T, V) logits of a module's output: a tensor, ``.logits``, or a tuple's first."""
    logits = output
    if not isinstance(logits, torch.Tensor):
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, dict):
            logits = output.get("logits")
        if logits is None and isinstance(output, (tuple, list)):
            logits = next((o for o in output if isinstance(o, torch.Tensor)), None)
    if not isinstance(logits, torch.Tensor):
        raise SymgradError(f"module returned {type(output).__name__}; symgrad needs logits: a "
                           "tensor, an object with .logits, or a tuple starting with them "
                           "(or pass loss=f(output, targets))")
    if logits.numel() != T * V or logits.shape[-1] != V:
        raise SymgradError(f"module returned logits of shape {tuple(logits.shape)}; expected "
                           f"(1, {T}, {V}): one row of {V} logits per position. (A forward that "
                           "returns only the last position needs targets; or pass loss=)")
    return logits.reshape(T, V)


def module_fn(model: Model, module: nn.Module, plan: Plan, mcfg: ModuleConfig,
              wrap: Callable | None = None) -> Callable:
    """``fn(**blocks) -> loss`` for one sample; ``wrap`` optionally wraps the module call (a
    compiled path) and ``context`` of the path is entered around it."""
    sites = dropout_sites(model) if mcfg.train else []
    blocks = {b.name: b for b in model.input_blocks}
    if "ids" not in blocks:
        raise SymgradError(f"module=: model {model.name!r} has no 'ids' input; the module path "
                           "calls module(ids) (a GPT); for other models pass torch_fn=")
    T = blocks["ids"].shape[0]
    V = next((b.shape[0] for b in model.param_blocks if b.name == "tok_emb"), None)
    takes_targets = _takes(module, "targets")
    refuse_post_accumulate(module.named_parameters(), "verify(module=)")
    hooks = {n: tensor_hooks(p) for n, p in module.named_parameters()}  # the user's own
    #   register_hook hooks, carried onto the assembled substitutes (what .grad would get)

    def forward(params, ids, targets):
        kwargs = {"targets": targets[None]} if takes_targets else {}
        return torch.func.functional_call(module, params, (ids[None],), kwargs)
    call = wrap(forward) if wrap is not None else forward

    def fn(**b):
        params = {n: carry(v, hooks.get(n, [])) for n, v in plan.assemble(b).items()}
        masks = [(site, torch.stack([b[n] for n in names]) if len(names) > 1 else b[names[0]])
                 for site, names in sites]
        icpt = _Intercept(masks, mcfg.drop_rate, mcfg.train, module)
        with _mode(module, mcfg.train), icpt.active(), path_context(mcfg.path):
            out = call(params, b["ids"], b["targets"])
        icpt.check_done()
        fn.sdpa_calls = icpt.sdpa_calls
        if mcfg.loss is not None:
            return mcfg.loss(out, b["targets"])
        vocab = V or (out.logits if hasattr(out, "logits") else out).shape[-1]
        return F.cross_entropy(logits_of(out, T, vocab), b["targets"])
    fn.sdpa_calls = 0
    fn.runs_in_float64 = wrap is None  # every parameter assembled from the blocks, in their
    #   dtype: a float64 re-run (symgrad.backends.float64) decides; compiled: not re-run
    return fn


def _takes(module: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def probe(fn: Callable, model: Model, plan: Plan, *, seed: int, dtype: str,
          device: str, what: str = "module") -> float:
    """Run ``fn`` on one sample and backpropagate: a wrong signature, a detached output, a
    shape error or an unused parameter is reported now, before any derivation. Returns the
    loss value."""
    values = model.draw(1, np.random.default_rng(seed), dtype)
    tensors, params = {}, []
    for b in model.blocks:
        if b.domain.integer:
            tensors[b.name] = torch.tensor(values[b.name][0], dtype=torch.long, device=device)
        else:
            t = torch.tensor(values[b.name][0], dtype=TORCH_DTYPES[dtype], device=device)
            tensors[b.name] = t.requires_grad_(b.is_param)
            if b.is_param:
                params.append(b.name)
    head = f"{what}: on one sample (seed {seed}), before any derivation"
    try:
        loss = fn(**tensors)
    except SymgradError as exc:
        raise SymgradError(f"{head}: {exc}") from None
    except Exception as exc:
        where = user_frame(exc)
        raise SymgradError(f"{head}, the module raised {type(exc).__name__}: "
                           f"{_short(exc)}{f' (at {where})' if where else ''} "
                           f"(symgrad calls module(ids) with ids a LongTensor "
                           f"of shape (1, {tensors['ids'].shape[0]}), parameters as {dtype})"
                           ) from None
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise SymgradError(f"{head}: the loss is {type(loss).__name__} "
                           f"{tuple(getattr(loss, 'shape', ()))}, not a scalar tensor")
    if loss.grad_fn is None:
        raise SymgradError(f"{head}: the loss is detached from the parameters (no grad_fn): "
                           "does forward use .detach(), .data, torch.no_grad() or .item()?")
    if not torch.isfinite(loss).all():
        raise SymgradError(f"{head}: the loss is {loss.item()}, not finite")
    grads = torch.autograd.grad(loss, [tensors[p] for p in params], allow_unused=True)
    unused = [plan.labels.get(p, p) for p, g in zip(params, grads) if g is None]
    if unused:
        raise SymgradError(f"{head}: the loss does not depend on {', '.join(unused)} (the "
                           "module does not use these parameters in forward)")
    return float(loss.detach())


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "…"
