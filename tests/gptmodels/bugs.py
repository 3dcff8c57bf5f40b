"""Realistic gradient bugs, planted in the book-style GPTModel and in Hugging Face GPT-2.

Each bug is a context manager factory ``plant(module)``: inside it the module computes the
buggy thing, afterwards it is restored. ``SITES`` names, per layout, the parameter whose
gradient the bug must be reported on (the parameter at the bug's site), and for the backward bug
the parameters downstream of it, whose gradients a backward-only bug cannot change.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from symgrad.testing import scale_backward

from . import book


def _perturb(x):
    """The planted backward bug: x unchanged, its gradient x (1 + 1e-7)."""
    return scale_backward(x, 1 + 1e-7)



@contextlib.contextmanager
def _book_attr(**changes):
    saved = {k: getattr(book.Bugs, k) for k in changes}
    for k, v in changes.items():
        setattr(book.Bugs, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(book.Bugs, k, v)


def _book(**changes) -> Callable:
    return lambda module: _book_attr(**changes)


def _book_backward(module):
    return _book_attr(backward_hook=_perturb, backward_layer=len(module.trf_blocks) - 1)


# ---------------------------------------------------------------- Hugging Face GPT-2
class _UnbiasedLayerNorm(nn.LayerNorm):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class _Gelu(nn.Module):
    def __init__(self, cubic: float = 0.044715, float32_constant: bool = False) -> None:
        super().__init__()
        self.cubic, self.float32_constant = cubic, float32_constant

    def forward(self, x):
        c = (torch.sqrt(torch.tensor(2.0 / torch.pi)) if self.float32_constant
             else math.sqrt(2.0 / math.pi))
        return 0.5 * x * (1.0 + torch.tanh(c * (x + self.cubic * torch.pow(x, 3.0))))


@contextlib.contextmanager
def _swap(pairs):
    """Set (object, attribute, value) triples; restore them afterwards."""
    saved = [(o, a, getattr(o, a)) for o, a, _ in pairs]
    try:
        for o, a, v in pairs:
            setattr(o, a, v)
        yield
    finally:
        for o, a, v in saved:
            setattr(o, a, v)


def _hf_layer_norm(module):
    return _swap([(ln, "__class__", _UnbiasedLayerNorm) for ln in module.modules()
                  if isinstance(ln, nn.LayerNorm)])


def _hf_gelu(**kw):
    return lambda module: _swap([(h.mlp, "act", _Gelu(**kw)) for h in module.transformer.h])


def _hf_scale(module):
    C = module.config.n_embd
    return _swap([(h.attn, "scaling", C**-0.5) for h in module.transformer.h])


def _hf_mask(module):
    from transformers.models.gpt2 import modeling_gpt2 as m

    def off_by_one(mod, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        T = query.shape[-2]
        w = torch.matmul(query, key.transpose(-1, -2)) * scaling
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=w.device), diagonal=2)
        w = torch.softmax(w.masked_fill(future, float("-inf")), dim=-1)
        return torch.matmul(w, value).transpose(1, 2), w
    return _swap([(m, "eager_attention_forward", off_by_one)])


@contextlib.contextmanager
def _hf_backward(module):
    handle = module.transformer.h[-1].mlp.c_fc.register_forward_hook(
        lambda mod, args, out: _perturb(out))
    try:
        yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class Bug:
    name: str
    description: str
    book: Callable  # module -> context manager
    hf: Callable
    site: dict  # layout -> parameter name pattern ({last} = last layer) reported FAIL
    downstream: dict  # layout -> parameters a backward-only bug cannot change (must pass)


BUGS = (
    Bug("layernorm-unbiased", "LayerNorm with unbiased variance (divides by n-1)",
        _book(unbiased_var=True), _hf_layer_norm,
        {"book": "final_norm.scale", "hf": "transformer.ln_f.weight"}, {}),
    Bug("gelu-0.0447", "GELU cubic constant 0.0447 instead of 0.044715",
        _book(gelu_cubic=0.0447), _hf_gelu(cubic=0.0447),
        {"book": "trf_blocks.{last}.ff.layers.0.weight",
         "hf": "transformer.h.{last}.mlp.c_fc.weight"}, {}),
    Bug("attention-scale", "attention scores scaled by sqrt(emb_dim), not sqrt(head_dim)",
        _book(scale_by_emb=True), _hf_scale,
        {"book": "trf_blocks.{last}.att.W_query.weight",
         "hf": "transformer.h.{last}.attn.c_attn.weight"}, {}),
    Bug("mask-off-by-one", "causal mask off by one (each position also sees the next)",
        _book(mask_diagonal=2), _hf_mask,
        {"book": "trf_blocks.{last}.att.W_value.weight",
         "hf": "transformer.h.{last}.attn.c_attn.weight"}, {}),
    Bug("backward-1e-7", "custom autograd backward x(1 + 1e-7) after the first feed-forward "
        "Linear of the last layer", _book_backward, _hf_backward,
        {"book": "trf_blocks.{last}.ff.layers.0.weight",
         "hf": "transformer.h.{last}.mlp.c_fc.weight"},
        {"book": ("out_head.weight", "final_norm.scale", "final_norm.shift",
                  "trf_blocks.{last}.ff.layers.2.weight"),
         "hf": ("transformer.ln_f.weight", "transformer.ln_f.bias",
                "transformer.h.{last}.mlp.c_proj.weight")}),
    Bug("float32-constant", "GELU's sqrt(2/pi) computed as a float32 tensor in a float64 model",
        _book(float32_constant=True), _hf_gelu(float32_constant=True),
        {"book": "trf_blocks.{last}.ff.layers.0.weight",
         "hf": "transformer.h.{last}.mlp.c_fc.weight"}, {}),
)
